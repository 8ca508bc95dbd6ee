/**
 * The client library against real gateways on loopback (real ws, real HTTP): failover from a dead URL,
 * resume across a gateway restart without a duplicate, waitFor, and the browser build the gateway
 * serves at /lib/ (exactly the client's module graph, no Node import, nothing else of dist/).
 */
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayClient, type EventMessage } from '../../src/client/index.js';
import { nodeWebSocket } from '../../src/client/node.js';
import { browserModules, DIST_DIR } from '../../src/gateway/client-build.js';
import { describeBuilt } from '../utils/built-cli.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { Leftovers } from '../utils/gateway-support.js';

const dashboardDir = fileURLToPath(new URL('../fixtures/dashboard/', import.meta.url));

async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return `ws://127.0.0.1:${port}`;
}

describe('the client library against a real gateway', () => {
  const leftovers = new Leftovers();
  afterEach(() => leftovers.dispose());

  it('fails over from a dead URL, waits for ready and, across a gateway restart, for the conclusion; no transition twice', async () => {
    const source = new FakeJobSource(['vm1']);
    source.set({ id: 'j0', state: 'running', ready: false });
    const first = await leftovers.gateway({ source });
    const port = Number(new URL(first.url).port);
    const client = new GatewayClient({ urls: [await deadUrl(), first.url], socket: nodeWebSocket, backoff: { initialDelayMs: 20, maxDelayMs: 200 } });
    leftovers.add(async () => client.close());
    const transitions: EventMessage[] = [];
    client.on('transition', (e) => transitions.push(e));
    client.start();
    await client.synced({ timeoutMs: 20_000 });
    expect(client.job('vm1', 'j0')?.state).toBe('running');

    const ready = client.waitFor('vm1', 'j0', 'ready', { timeoutMs: 20_000 });
    source.transition('vm1', 'j0', 'ready', { ready: true });
    await expect(ready).resolves.toMatchObject({ id: 'j0', state: 'ready' });

    // Restart on the same port with the same source (same epoch and history): the client resumes.
    await first.close({ graceMs: 0 });
    source.transition('vm1', 'j0', 'standby', { ready: true, pauseReason: 'user' });
    const second = await leftovers.gateway({ source, listen: { host: '127.0.0.1', port } });
    void second;
    const concluded = client.waitFor('vm1', 'j0', 'concluded', { timeoutMs: 20_000 });
    source.transition('vm1', 'j0', 'concluded', { ready: false, outcome: 'completed', pivoted: true });
    await expect(concluded).resolves.toMatchObject({ outcome: 'completed', pivoted: true });
    const offsets = transitions.map((e) => `${e.epoch}:${e.offset}`);
    expect(new Set(offsets).size).toBe(offsets.length);
    expect(transitions.map((e) => e.transition.to)).toContain('ready');
    // A new gateway process has a new epoch: the resume came as a snapshot, and the map holds the end.
    expect(client.job('vm1', 'j0')).toMatchObject({ state: 'concluded', outcome: 'completed' });
  });

  describeBuilt('the browser build at /lib/', () => {
    it('serves exactly the modules the client entry reaches, as JavaScript; not the Node adapter, not the rest of dist', async () => {
      const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), dashboardDir });
      const modules = browserModules(DIST_DIR);
      expect(modules).toContain('client/index.js');
      expect(modules).toContain('protocol/codes.js');
      for (const module of modules) {
        const response = await fetch(`${gateway.url}/lib/${module}`);
        expect(response.status, module).toBe(200);
        expect(response.headers.get('content-type')).toMatch(/^text\/javascript/);
      }
      for (const other of ['client/node.js', 'cli/main.js', 'gateway/http.js', '../package.json', '%2e%2e/package.json']) {
        expect((await fetch(`${gateway.url}/lib/${other}`)).status, other).toBe(404);
      }
    });
  });

  it('refuses a build whose modules import a package or node: (it would not load in a browser)', () => {
    const root = mkdtempSync(join(tmpdir(), 'bjg-lib-'));
    mkdirSync(join(root, 'client'));
    writeFileSync(join(root, 'client/index.js'), "export * from './a.js';\n");
    writeFileSync(join(root, 'client/a.js'), "/* import x from 'comment'; */\nimport { readFileSync } from 'node:fs';\nexport const a = 1;\n");
    expect(() => browserModules(root)).toThrow(/client\/a\.js imports 'node:fs'/);
    writeFileSync(join(root, 'client/a.js'), "// import x from 'comment';\nexport const a = 1;\n");
    expect(browserModules(root)).toEqual(['client/a.js', 'client/index.js']);
  });
});
