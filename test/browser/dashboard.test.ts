/**
 * The dashboard in a real browser (headless Debian chromium via playwright-core) against the real
 * demo stack: qemu-storage-daemon, job engine, job control and gateway. A speed-limited mirror
 * appears, the gateway restarts under the page (it must reconnect and resume without duplicates),
 * the job reaches ready live, the Complete button pivots it, and the row ends completed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type RunningDemo } from '../../src/demo/run.js';
import { startGateway, type RunningGateway } from '../../src/gateway/server.js';
import { makeJobController } from '../../src/gateway/control/index.js';
import { MiB, startMirror } from '../../src/lab/jobs.js';
import { silentLogger } from '../../src/log.js';
import { welcomeVmLimit } from '../../src/protocol/messages.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { describeQemu, inCi } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { testTokens } from '../utils/tokens.js';

const CHROMIUM = '/usr/bin/chromium';
// A test run must not rewrite tracked files: the README's picture is refreshed only on request.
const SCREENSHOT = fileURLToPath(
  new URL(process.env.UPDATE_SCREENSHOT === '1' ? '../../docs/dashboard.png' : '../../test-results/dashboard.png', import.meta.url),
);
const WAIT_MS = 60_000;
/** A test waits for several conditions of WAIT_MS each on a loaded machine. */
const TEST_MS = 180_000;

async function launchBrowser(): Promise<{ context: BrowserContext; profile: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'bjg-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1440, height: 860 },
    colorScheme: 'light',
  });
  return { context, profile };
}

/**
 * Like describeQemu, and the browser too: outside CI a missing chromium skips the suite with a
 * name that says what to install; in CI it fails (beforeAll throws).
 */
function describeBrowser(name: string, fn: () => void): void {
  if (existsSync(CHROMIUM) || inCi) describeQemu(name, fn);
  else describe.skip(`${name} [skipped: needs the Debian package chromium]`, fn);
}

/** Text of the state badge in a job's row. */
function rowState(page: Page, job: string): Promise<string | null> {
  return page.locator(`tr.job-row[data-job="${job}"] .state-cell .badge`).textContent({ timeout: WAIT_MS });
}

describeBrowser('dashboard in a real browser', () => {
  cleanupLeftoversAfterAll();
  let demo: RunningDemo | undefined;
  let restarted: RunningGateway | undefined;
  let context: BrowserContext | undefined;
  let profile: string | undefined;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install the Debian package chromium`);
    ({ context, profile } = await launchBrowser());
  });

  const openPage = async (): Promise<Page> => context!.pages()[0] ?? (await context!.newPage());

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await restarted?.close({ graceMs: 0 });
    await demo?.close();
  });

  it('shows a real mirror live, survives a gateway restart, and completes it from the Complete button', async () => {
    demo = await startDemo({ vms: 1, port: 0, drive: false, print: () => undefined });
    const page = await openPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));

    // The page runs the package's own client (blockjob-gateway/client), served by the gateway.
    const sharedClient = page.waitForResponse((response) => response.url() === `${demo!.url}/lib/client/index.js` && response.ok(), { timeout: WAIT_MS });
    await page.goto(`${demo.url}/`);
    await sharedClient;
    await page.locator('#conn-text', { hasText: 'Live' }).waitFor({ timeout: WAIT_MS });
    expect(await page.locator('table#jobs caption').textContent()).toContain('Block jobs');

    const vm = demo.fleet.vms[0]!;
    // 24 MiB at 3 MiB/s: about 8 s to ready, time enough for a gateway restart on the way.
    await startMirror(vm.qmp, vm.lab, { jobId: 'mirror-ui', speed: 3 * MiB, dataMiB: 24 });
    await page.locator('tr.job-row[data-job="mirror-ui"][data-state="running"]').waitFor({ timeout: WAIT_MS });

    // Restart the gateway on the same port while the job runs; the page must come back by itself.
    const port = demo.gateway.port;
    await demo.gateway.close({ graceMs: 0 });
    await page.locator('#conn.conn-reconnecting, #conn.conn-connecting').waitFor({ timeout: WAIT_MS });
    const controller = makeJobController({ source: demo.registry, control: demo.registry.control, logger: silentLogger });
    restarted = await startGateway({
      source: demo.registry,
      commandHandler: controller.handle,
      listen: { host: '127.0.0.1', port },
      dashboardDir: fileURLToPath(new URL('../../demo/dashboard/', import.meta.url)),
      logger: silentLogger,
    });
    await page.locator('#conn.conn-live').waitFor({ timeout: WAIT_MS });

    // Ready arrives live, after the resume, on the one and only row of the job.
    await page.locator('tr.job-row[data-job="mirror-ui"][data-state="ready"]').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('tr.job-row[data-job="mirror-ui"]').count()).toBe(1);
    expect(await page.locator('tr.job-row[data-job="mirror-ui"] .ready-yes').textContent()).toContain('ready');
    const readyEntries = page.locator('#timeline li', { hasText: 'vm1/mirror-ui' }).filter({ hasText: 'ready' });
    expect(await readyEntries.count()).toBe(1);

    await page.locator('tr.job-row[data-job="mirror-ui"] button[data-action="complete"]').click();
    // Once concluded the row moves to the finished jobs, collapsed by default: open them.
    await page.locator('#toggle-finished').click({ timeout: WAIT_MS });
    await page.locator('tr.job-row[data-job="mirror-ui"] .row-result.ok').waitFor({ timeout: WAIT_MS });
    await page.locator('tr.job-row[data-job="mirror-ui"] .badge.oc-completed').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('tr.job-row[data-job="mirror-ui"] .pivot').textContent()).toBe('pivoted');
    expect(await rowState(page, 'mirror-ui')).toMatch(/concluded|dismissed/);
    expect(demo.registry.job('vm1', 'mirror-ui')?.pivoted).toBe(true);
    expect(pageErrors).toEqual([]);
    controller.close();
  }, TEST_MS);

  it('renders the running demo legibly (screenshot for the README)', async () => {
    await restarted?.close({ graceMs: 0 });
    restarted = undefined;
    await demo?.close();
    demo = await startDemo({ vms: 3, port: 0, print: () => undefined });
    const page = await openPage();
    await page.goto(`${demo.url}/`);
    await page.locator('#conn.conn-live').waitFor({ timeout: WAIT_MS });
    // Wait until the driver shows a spread of states: several jobs active, one ready, one failed.
    await page.waitForFunction(
      `(() => {
        const rows = [...document.querySelectorAll('tr.job-row')];
        const active = rows.filter((r) => !['concluded', 'dismissed'].includes(r.dataset.state));
        return active.length >= 3 && rows.some((r) => r.dataset.state === 'ready') && document.querySelector('.badge.oc-failed') !== null;
      })()`,
      undefined,
      { timeout: WAIT_MS, polling: 200 },
    );
    expect(await page.locator('tbody.vm-group').count()).toBe(3);
    expect(await page.locator('#sim-badge').isVisible()).toBe(false);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
    expect(existsSync(SCREENSHOT)).toBe(true);

    // Filters: one VM, then only finished jobs of any VM. (Browser-side checks as strings: no DOM types here.)
    await page.selectOption('#filter-vm', 'vm2');
    await page.waitForFunction(
      `[...document.querySelectorAll('tbody.vm-group')].every((b) => b.hidden === (b.dataset.vm !== 'vm2'))`,
      undefined,
      { timeout: WAIT_MS },
    );
    await page.selectOption('#filter-vm', '');
    await page.selectOption('#filter-state', 'dismissed');
    await page.waitForFunction(
      `(() => { const rows = [...document.querySelectorAll('tr.job-row')]; return rows.length > 0 && rows.every((r) => r.dataset.state === 'dismissed'); })()`,
      undefined,
      { timeout: WAIT_MS },
    );
  }, TEST_MS);

  it('a read-only token (from the URL fragment) sees the jobs but no actions; a control token gets them', async () => {
    await demo?.close();
    demo = await startDemo({ vms: 1, port: 0, simulate: true, drive: false, print: () => undefined });
    const controller = makeJobController({ source: demo.registry, control: demo.registry.control, logger: silentLogger });
    restarted = await startGateway({
      source: demo.registry,
      commandHandler: controller.handle,
      listen: { host: '127.0.0.1', port: 0 },
      dashboardDir: fileURLToPath(new URL('../../demo/dashboard/', import.meta.url)),
      tokens: testTokens({ name: 'viewer', scopes: ['read'] }, { name: 'operator', scopes: ['read', 'control'] }),
      logger: silentLogger,
    });
    const vm = demo.fleet.vms[0]!;
    await startMirror(vm.qmp, vm.lab, { jobId: 'watched', speed: 1 * MiB, dataMiB: 32 });

    const page = await openPage();
    await page.goto(`${restarted.url}/#token=viewer-secret`);
    await page.locator('tr.job-row[data-job="watched"]').waitFor({ timeout: WAIT_MS });
    expect(await page.locator('#role').textContent()).toBe('read-only access');
    expect(await page.locator('tr.job-row[data-job="watched"] button[data-action="cancel"]').isVisible()).toBe(false);
    expect(page.url()).not.toContain('viewer-secret'); // the token left the address bar

    // Without a token the page asks for one; the control token brings the actions.
    await page.evaluate('sessionStorage.clear()');
    await page.goto(`${restarted.url}/`);
    await page.locator('#token-form').waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.fill('#token-input', 'operator-secret');
    await page.click('#token-form button[type="submit"]');
    await page.locator('tr.job-row[data-job="watched"] button[data-action="cancel"]').waitFor({ state: 'visible', timeout: WAIT_MS });
    expect(await page.locator('#role').textContent()).toBe('control access');
    // Cancel asks for a confirming second click; the first alone sends nothing.
    const cancel = page.locator('tr.job-row[data-job="watched"] button[data-action="cancel"]');
    await cancel.click();
    expect(await cancel.textContent()).toBe('Confirm cancel');
    expect(demo.registry.job('vm1', 'watched')?.state).toBe('running');
    await cancel.click();
    await page.locator('#toggle-finished').click({ timeout: WAIT_MS });
    await page.locator('tr.job-row[data-job="watched"] .badge.oc-cancelled').waitFor({ timeout: WAIT_MS });
    await restarted.close({ graceMs: 0 });
    restarted = undefined;
    controller.close();
  }, TEST_MS);

  it('at 900 px keeps every column on screen, lists all active jobs before any finished one, and fills Recent transitions from the history', async () => {
    await demo?.close();
    demo = await startDemo({ vms: 3, port: 0, simulate: true, print: () => undefined });
    const page = await openPage();
    await page.setViewportSize({ width: 900, height: 800 });
    try {
      await page.goto(`${demo.url}/`);
      // Wait for a spread: active jobs on at least two VMs and finished jobs (the driver makes both).
      await page.waitForFunction(
        `(() => {
          const rows = [...document.querySelectorAll('tr.job-row')];
          const activeVms = new Set(rows.filter((r) => r.closest('tbody.vm-group')).map((r) => r.dataset.vm));
          return activeVms.size >= 2 && document.querySelectorAll('tbody.vm-finished tr.job-row').length >= 2;
        })()`,
        undefined,
        { timeout: WAIT_MS, polling: 200 },
      );
      const layout = (await page.evaluate(`(() => {
        const panel = document.querySelector('.jobs-panel');
        const visible = [...document.querySelectorAll('tr.job-row')].filter((r) => r.offsetParent !== null);
        const edge = (selector) => Math.max(...visible.map((r) => r.querySelector(selector).getBoundingClientRect().right));
        return {
          overflow: panel.scrollWidth - panel.clientWidth,
          page: document.documentElement.scrollWidth,
          panelRight: panel.getBoundingClientRect().right,
          stateRight: edge('.state-cell'),
          actionsRight: edge('.actions-cell'),
          finishedVisible: [...document.querySelectorAll('tbody.vm-finished')].some((b) => !b.hidden),
          order: [...document.querySelectorAll('tbody.vm-group, tbody.finished-toggle, tbody.vm-finished')].map((b) => b.className),
        };
      })()`)) as { overflow: number; page: number; panelRight: number; stateRight: number; actionsRight: number; finishedVisible: boolean; order: string[] };
      // Nothing scrolls sideways and the state and action columns end inside the panel.
      expect(layout.overflow).toBeLessThanOrEqual(0);
      expect(layout.page).toBeLessThanOrEqual(900);
      expect(layout.stateRight).toBeLessThanOrEqual(layout.panelRight);
      expect(layout.actionsRight).toBeLessThanOrEqual(layout.panelRight);
      // Every VM's active group comes before the toggle and the finished groups, which start collapsed.
      const firstFinished = layout.order.findIndex((c) => c !== 'vm-group');
      expect(layout.order.slice(0, firstFinished).every((c) => c === 'vm-group')).toBe(true);
      expect(layout.order[firstFinished]).toBe('finished-toggle');
      expect(layout.order.slice(firstFinished + 1).every((c) => c === 'vm-finished')).toBe(true);
      expect(layout.finishedVisible).toBe(false);
      await page.click('#toggle-finished');
      await page.waitForFunction(`[...document.querySelectorAll('tbody.vm-finished')].some((b) => !b.hidden)`, undefined, { timeout: WAIT_MS });
      expect(await page.locator('#toggle-finished').getAttribute('aria-expanded')).toBe('true');

      // 100% copied but not ready yet is "converging", never an ETA of 0 (the page's own module).
      const converging = await page.evaluate(`import('/view.js').then((m) => [
        m.isConverging({ state: 'running', ready: false, progress: { current: 64, total: 64 } }),
        m.isConverging({ state: 'ready', ready: true, progress: { current: 64, total: 64 } }),
        m.isConverging({ state: 'running', ready: false, progress: { current: 32, total: 64 } }),
      ])`);
      expect(converging).toEqual([true, false, false]);

      // A reload starts with the gateway's recent transitions (from before the reload), not an empty list.
      const reloadedAt = Date.now();
      await page.reload();
      await page.waitForFunction(
        `[...document.querySelectorAll('#timeline li time')].filter((t) => Date.parse(t.dateTime) < ${reloadedAt}).length >= 3`,
        undefined,
        { timeout: WAIT_MS },
      );
    } finally {
      await page.setViewportSize({ width: 1440, height: 860 });
    }
  }, TEST_MS);

  it('fills Recent transitions on a fleet with more VMs than a welcome lists, the busiest VMs first', async () => {
    await restarted?.close({ graceMs: 0 });
    await demo?.close();
    demo = undefined;
    // More VMs than a welcome lists (it then lists none): the in-memory source of the gateway tests,
    // since a thousand monitors are not the point here; gateway, ws, dashboard and browser are real.
    const count = welcomeVmLimit() + 200;
    const source = new FakeJobSource(Array.from({ length: count }, (_, i) => `vm${i}`));
    restarted = await startGateway({
      source,
      listen: { host: '127.0.0.1', port: 0 },
      dashboardDir: fileURLToPath(new URL('../../demo/dashboard/', import.meta.url)),
      logger: silentLogger,
    });
    // More VMs with history (a monitor blip) than the page reads back, then transitions on VMs spread
    // over the name range: the page must pick the VMs whose jobs moved last, not the first names.
    for (let i = 0; i < count; i += 4) {
      source.setStatus(`vm${i}`, 'disconnected');
      source.setStatus(`vm${i}`, 'connected');
    }
    const busy = ['vm3', 'vm640', 'vm1187'];
    for (const vm of busy) {
      source.transition(vm, 'm', 'running');
      source.transition(vm, 'm', 'ready', { ready: true });
    }
    // A page of its own: the shared one still tries to reach the demo closed above.
    const page = await context!.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const wsUrl = restarted.url.replace(/^http/, 'ws');
    const welcome = page.waitForEvent('websocket', { predicate: (ws) => ws.url().startsWith(wsUrl), timeout: WAIT_MS }).then((ws) =>
      ws.waitForEvent('framereceived', { predicate: (frame) => String(frame.payload).includes('"welcome"'), timeout: WAIT_MS }),
    );
    await page.goto(`${restarted.url}/`);
    expect(JSON.parse(String((await welcome).payload))).toMatchObject({ vms: [], vmCount: count });
    await page.locator('#conn.conn-live').waitFor({ timeout: WAIT_MS });
    // Each busy VM's ready, read back from the history (nothing happens live after the load).
    for (const vm of busy) {
      await page.locator('#timeline li', { hasText: `${vm}/m` }).filter({ hasText: 'ready' }).first().waitFor({ timeout: WAIT_MS });
    }
    expect(await page.locator('#timeline li', { hasText: 'monitor' }).count()).toBeGreaterThan(0);
    expect(await page.locator('#summary').textContent()).toContain(`${count} VMs`);
    expect(pageErrors).toEqual([]);
    await page.close();
    await restarted.close({ graceMs: 0 });
    restarted = undefined;
  }, TEST_MS);

  it('labels the simulator fallback as simulated', async () => {
    await demo?.close();
    demo = await startDemo({ vms: 1, port: 0, simulate: true, drive: false, print: () => undefined });
    const page = await openPage();
    await page.goto(`${demo.url}/`);
    await page.locator('#sim-badge', { hasText: 'Simulated QEMU' }).waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.locator('tbody.vm-group[data-vm="vm1"] .vm-status.connected').waitFor({ timeout: WAIT_MS });
  }, TEST_MS);
});
