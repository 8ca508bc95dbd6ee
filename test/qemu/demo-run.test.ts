/**
 * The `npm start` demo end to end: real qemu-storage-daemons, the driver's job mix seen through the
 * gateway's HTTP snapshot and the engine's transitions, the simulator fallback labelled as such,
 * a busy port answered with one clear line, and nothing left behind after close.
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startDemo, type RunningDemo } from '../../src/demo/run.js';
import type { JobTransition, StreamInput } from '../../src/jobs/types.js';
import { run as runDemoCli } from '../../src/cli/demo.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';

const WAIT_MS = 90_000;
const TEST_MS = 180_000;

/** Collects transitions until `done` holds for the set seen so far. */
function collectUntil(demo: RunningDemo, done: (seen: JobTransition[]) => boolean): Promise<JobTransition[]> {
  const seen: JobTransition[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      subscription.unsubscribe();
      reject(new Error(`not reached within ${WAIT_MS} ms; saw ${seen.map((t) => `${t.job.id}:${t.to.state}/${t.to.outcome ?? ''}`).join(' ')}`));
    }, WAIT_MS);
    const subscription = demo.registry.changes$.subscribe((input: StreamInput) => {
      if (input.kind !== 'transition') return;
      seen.push(input);
      if (done(seen)) {
        clearTimeout(timer);
        subscription.unsubscribe();
        resolve(seen);
      }
    });
  });
}

const reached = (seen: JobTransition[], predicate: (t: JobTransition) => boolean): boolean => seen.some(predicate);

describeQemu('npm start demo on real QEMU', () => {
  cleanupLeftoversAfterAll();
  let demo: RunningDemo | undefined;
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
  });

  it('drives a mix of real jobs: ready and pivoted, failed by blkdebug, cancelled; cleans up on close', async () => {
    const lines: string[] = [];
    demo = await startDemo({ vms: 3, port: 0, print: (line) => lines.push(line), color: false });
    expect(demo.mode).toBe('qemu');

    const seen = await collectUntil(demo, (s) =>
      reached(s, (t) => t.to.state === 'ready') &&
      reached(s, (t) => t.to.outcome === 'completed' && t.job.pivoted === true) &&
      reached(s, (t) => t.to.outcome === 'failed' && /Input\/output error/.test(t.job.error ?? '')) &&
      reached(s, (t) => t.to.outcome === 'cancelled') &&
      reached(s, (t) => t.job.type === 'stream' && t.to.outcome === 'completed') &&
      reached(s, (t) => t.job.type === 'backup' && t.to.outcome === 'completed'),
    );
    // Never a pivot that raced: no command of the driver failed.
    expect(lines.filter((line) => line.startsWith('!'))).toEqual([]);
    expect(seen.length).toBeGreaterThan(10);
    // One terminal line per transition, naming VM, job and the change.
    expect(lines.some((line) => /vm\d\s+mirror-\d+\s+mirror\s+running → ready/.test(line))).toBe(true);

    const response = await fetch(`${demo.url}/v1/info`);
    expect(await response.json()).toMatchObject({ simulated: false, demo: true });
    const snapshot = (await (await fetch(`${demo.url}/v1/jobs`)).json()) as { vms: { vm: string; status: string }[] };
    expect(snapshot.vms.map((v) => v.vm).sort()).toEqual(['vm1', 'vm2', 'vm3']);
    expect((await fetch(`${demo.url}/`)).headers.get('content-type')).toContain('text/html');

    const dirs = demo.fleet.vms.map((vm) => vm.gatewayAddress.replace(/^unix:/, '').replace(/\/[^/]+$/, ''));
    expect(dirs.every((dir) => existsSync(dir))).toBe(true);
    await demo.close();
    demo = undefined;
    expect(dirs.filter((dir) => existsSync(dir))).toEqual([]);
  }, TEST_MS);
});

describe('npm start demo fallback and errors', () => {
  let demo: RunningDemo | undefined;
  let blocker: Server | undefined;
  afterEach(async () => {
    await demo?.close();
    demo = undefined;
    await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    blocker = undefined;
  });

  it('runs on the simulator, labelled simulated in /v1/info, with the same job mix', async () => {
    demo = await startDemo({ vms: 2, port: 0, simulate: true, print: () => undefined });
    expect(demo.mode).toBe('simulated');
    expect(await (await fetch(`${demo.url}/v1/info`)).json()).toMatchObject({ simulated: true });
    await collectUntil(demo, (s) =>
      reached(s, (t) => t.to.state === 'ready') && reached(s, (t) => t.to.outcome === 'completed' && t.job.pivoted === true));
  }, TEST_MS);

  it('the demo command checks its flags', async () => {
    await expect(runDemoCli(['--vms', '0'])).rejects.toThrow(/--vms must be an integer from 1 to 16/);
    await expect(runDemoCli(['--port', 'http'])).rejects.toThrow(/--port must be an integer/);
    await expect(runDemoCli(['--bogus'])).rejects.toThrow(/unknown flag --bogus/);
  }, TEST_MS);

  it('a busy port gives one clear line and exit code 1', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) => blocker!.listen(0, '127.0.0.1', () => resolve((blocker!.address() as { port: number }).port)));
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => {
      errors.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    let code: number;
    try {
      code = await runDemoCli(['--port', String(port), '--simulate', '--vms', '1']);
    } finally {
      process.stderr.write = write;
    }
    expect(code).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use; choose another with --port: npm start -- --port ${port + 1} `));
  }, TEST_MS);
});
