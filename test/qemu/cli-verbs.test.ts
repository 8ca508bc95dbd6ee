/**
 * `set-speed`, `finalize` and `dismiss` from the command line, on a real qemu-storage-daemon behind
 * `serve` (separate processes, as users run them). QEMU's own query-block-jobs / query-jobs, read on a
 * lab monitor, is the judge; the gateway's view is awaited through the client library before a verb
 * that needs a state, so no verb races the state it asks for.
 */
import { afterEach, expect, it } from 'vitest';
import { GatewayClient } from '../../src/client/gateway-client.js';
import { nodeWebSocket } from '../../src/client/node.js';
import { startMirror, startStream } from '../../src/lab/jobs.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { serveCli, type ServedGateway } from '../utils/cli-gateway.js';
import { waitUntil } from '../utils/job-scenarios.js';
import type { JobInfoRow } from '../utils/job-scenarios-qmp.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd, type Qsd } from '../utils/qsd.js';

const MiB = 1024 * 1024;

/** QEMU's speed limit of a block job (query-block-jobs). */
async function qemuSpeed(qsd: Qsd, id: string): Promise<number | undefined> {
  const rows = (await qsd.execute('query-block-jobs')) as Array<{ device: string; speed: number }>;
  return rows.find((row) => row.device === id)?.speed;
}

async function qemuStatus(qsd: Qsd, id: string): Promise<string> {
  const rows = (await qsd.execute('query-jobs')) as JobInfoRow[];
  return rows.find((row) => row.id === id)?.status ?? 'null';
}

/** Runs the built CLI to its end: exit code and output. */
async function cli(args: string[]): Promise<{ code: number | string; out: string; err: string }> {
  const run = runCli(args);
  const code = await run.exited;
  return { code, out: run.stdout.join('\n'), err: run.stderr.join('\n') };
}

describeQemu('job verbs from the command line (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let gateway: ServedGateway | undefined;
  let client: GatewayClient | undefined;
  afterEach(async () => {
    client?.close();
    client = undefined;
    if (gateway) {
      gateway.run.child.kill('SIGTERM');
      await gateway.run.exited;
      gateway = undefined;
    }
  });

  async function stack(): Promise<{ qsd: Qsd; ws: string; state: (id: string) => string | undefined }> {
    const qsd = await startQsd();
    gateway = await serveCli(qsd, ['--listen', '127.0.0.1:0']);
    const watcher = await GatewayClient.connect({ urls: gateway.ws, socket: nodeWebSocket }, { timeoutMs: 30_000 });
    client = watcher;
    return { qsd, ws: gateway.ws, state: (id) => watcher.job('vm1', id)?.state };
  }

  describeBuilt('set-speed, finalize, dismiss', () => {
    it('set-speed changes the limit QEMU applies (binary units, 0 = unlimited); a bad or missing --speed is a usage error', async () => {
      const { qsd, ws, state } = await stack();
      await startMirror(qsd, qsd, { jobId: 's0', dataMiB: 64, speed: 1 * MiB });
      await waitUntil('the gateway sees s0 running', () => state('s0') === 'running');

      const slower = await cli(['set-speed', ws, '--vm', 'vm1', '--job', 's0', '--speed', '512KiB']);
      expect(slower, slower.err).toMatchObject({ code: 0 });
      expect(slower.out).toMatch(/^set-speed: ok: vm1\/s0/);
      expect(await qemuSpeed(qsd, 's0')).toBe(512 * 1024);

      const json = await cli(['set-speed', ws, '--vm', 'vm1', '--job', 's0', '--speed', '0', '--json']);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.out)).toMatchObject({ type: 'result', ok: true, job: { id: 's0' } });
      expect(await qemuSpeed(qsd, 's0')).toBe(0);
      // Unlimited, the mirror catches up: the limit really was lifted.
      await waitUntil('s0 ready once unlimited', () => state('s0') === 'ready', 60_000);

      const missing = await cli(['set-speed', ws, '--vm', 'vm1', '--job', 's0']);
      expect([missing.code, missing.err.split('\n')[0]]).toEqual([2, 'set-speed: --speed is required']);
      const bad = await cli(['set-speed', ws, '--vm', 'vm1', '--job', 's0', '--speed', 'fast']);
      expect([bad.code, bad.err.split('\n')[0]]).toEqual([2, "set-speed: --speed: 'fast' is not a speed in bytes/s (e.g. 0, 1048576, 8M, 512KiB)"]);
      expect(await qemuSpeed(qsd, 's0')).toBe(0);
    });

    it('finalize a pending job, then dismiss the concluded one; a verb the job is not in the state for exits 1 with its code, QEMU untouched', async () => {
      const { qsd, ws, state } = await stack();
      await startStream(qsd, qsd, { jobId: 'f0', autoFinalize: false, autoDismiss: false, speed: 0 });

      await waitUntil('the gateway sees f0 pending', () => state('f0') === 'pending', 60_000);
      const early = await cli(['dismiss', ws, '--vm', 'vm1', '--job', 'f0']);
      expect(early.code).toBe(1);
      expect(early.err).toMatch(/^dismiss: verb_not_allowed: /);
      expect(await qemuStatus(qsd, 'f0')).toBe('pending');

      const finalized = await cli(['finalize', ws, '--vm', 'vm1', '--job', 'f0', '--await', 'concluded']);
      expect(finalized, finalized.err).toMatchObject({ code: 0 });
      expect(finalized.out).toMatch(/^finalize: ok: vm1\/f0/);
      expect(await qemuStatus(qsd, 'f0')).toBe('concluded');

      await waitUntil('the gateway sees f0 concluded', () => state('f0') === 'concluded');
      const dismissed = await cli(['dismiss', ws, '--vm', 'vm1', '--job', 'f0']);
      expect(dismissed, dismissed.err).toMatchObject({ code: 0 });
      expect(await qemuStatus(qsd, 'f0')).toBe('null');
      await waitUntil('the gateway sees f0 dismissed', () => state('f0') === 'dismissed');
    });
  });
});
