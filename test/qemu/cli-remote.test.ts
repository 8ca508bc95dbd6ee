/**
 * The shipped commands end to end, as separate processes: `serve` in front of a real
 * qemu-storage-daemon, and `wait`, `watch` and `complete` talking to it over WebSocket.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startMirror } from '../../src/lab/jobs.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { serveCli as serve } from '../utils/cli-gateway.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, makeTestDir, startQsd } from '../utils/qsd.js';
import { tokensFile as tokensJson } from '../utils/tokens.js';

const MiB = 1024 * 1024;

/** Subscriptions the gateway behind `ws` holds (its /metrics): a CLI client that counts there gets every later transition live. */
const subscriptions = async (ws: string): Promise<number> =>
  Number(/^blockjob_gateway_ws_subscriptions (\d+)/m.exec(await (await fetch(ws.replace(/^ws(.*)\/v1\/ws$/, 'http$1/metrics'))).text())?.[1] ?? 0);

describeQemu('the command line against a real gateway and QEMU', () => {
  cleanupLeftoversAfterAll();

  describeBuilt('serve, wait, watch, complete', () => {
    it('wait --for ready returns only once QEMU says ready; complete pivots; wait --for concluded on a concluded job answers at once', async () => {
      const qsd = await startQsd();
      const oracle = await qsd.oracle();
      const gateway = await serve(qsd, ['--listen', '127.0.0.1:0']);
      await startMirror(qsd, qsd, { jobId: 'm0', dataMiB: 24, speed: 16 * MiB });

      const waitReady = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--for', 'ready', '--timeout', '60s']);
      expect(await waitReady.exited).toBe(0);
      // The truth test: when wait said ready, QEMU had already announced it.
      expect(oracle.statusSequence('m0')).toContain('ready');
      expect(waitReady.stdout.join('\n')).toMatch(/^ready: vm1\/m0 mirror ready/m);

      const complete = runCli(['complete', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--await', 'concluded', '--json']);
      expect(await complete.exited).toBe(0);
      const result = JSON.parse(complete.stdout.join('\n'));
      expect(result).toMatchObject({ type: 'result', ok: true, job: { id: 'm0', state: 'concluded', outcome: 'completed', pivoted: true } });
      await oracle.waitForStatus('m0', 'null', 30_000);

      // Already over before this wait connected: the snapshot alone answers it.
      const waitDone = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--for', 'concluded', '--timeout', '20s']);
      expect(await waitDone.exited).toBe(0);
      expect(waitDone.stdout.join('\n')).toMatch(/concluded: vm1\/m0 .*outcome=completed pivoted=true/);

      gateway.run.child.kill('SIGTERM');
      expect(await gateway.run.exited).toBe(0);
    });

    it('wait exit codes: 1 when the job ends otherwise, 124 on timeout, 3 when nothing listens, 2 on usage errors', async () => {
      const qsd = await startQsd();
      const gateway = await serve(qsd, ['--listen', '127.0.0.1:0']);
      await startMirror(qsd, qsd, { jobId: 'c0', dataMiB: 64, speed: 4 * MiB });
      const waitReady = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'c0', '--for', 'ready']);
      // Cancelled once wait follows the running job: it learns of the end live, not from a snapshot.
      await expect.poll(() => subscriptions(gateway.ws), { timeout: 20_000, interval: 100 }).toBe(1);
      await qsd.execute('job-cancel', { id: 'c0' });
      expect(await waitReady.exited).toBe(1);
      expect(waitReady.stderr.join('\n')).toMatch(/ended before it was ready to complete \(outcome cancelled\)/);

      const timeout = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'never', '--for', 'ready', '--timeout', '1s']);
      expect(await timeout.exited).toBe(124);

      gateway.run.child.kill('SIGTERM');
      expect(await gateway.run.exited).toBe(0);
      const unreachable = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'c0', '--for', 'ready', '--connect-timeout', '1s']);
      expect(await unreachable.exited).toBe(3);

      const usage = runCli(['wait', gateway.ws, '--vm', 'vm1', '--for', 'ready']);
      expect(await usage.exited).toBe(2);
      expect(usage.stderr.join('\n')).toContain('--job is required');
    });

    it('wait survives a gateway restart by resuming; a token comes from the environment; a wrong one exits 3', async () => {
      const qsd = await startQsd();
      const dir = makeTestDir();
      const tokensFile = join(dir, 'tokens.json');
      writeFileSync(tokensFile, JSON.stringify(tokensJson([{ name: 'ops', secret: 's3cret-token', scopes: ['read', 'control'] }])));
      const first = await serve(qsd, ['--listen', '127.0.0.1:0', '--tokens', tokensFile]);
      await startMirror(qsd, qsd, { jobId: 'r0', dataMiB: 16, speed: 8 * MiB });

      const env = { BLOCKJOB_GATEWAY_TOKEN: 's3cret-token' };
      const waitDone = runCli(['wait', first.ws, '--vm', 'vm1', '--job', 'r0', '--for', 'concluded', '--timeout', '90s'], env);
      const wrong = runCli(['wait', first.ws, '--vm', 'vm1', '--job', 'r0', '--for', 'ready'], { BLOCKJOB_GATEWAY_TOKEN: 'nope' });
      expect(await wrong.exited).toBe(3);
      expect(wrong.stderr.join('\n')).toMatch(/4401/);

      // Restart the gateway on the same port while the job runs, once wait is subscribed; it reconnects and resumes.
      await expect.poll(() => subscriptions(first.ws), { timeout: 20_000, interval: 100 }).toBe(1);
      first.run.child.kill('SIGTERM');
      expect(await first.run.exited).toBe(0);
      const second = await serve(qsd, ['--listen', `127.0.0.1:${first.port}`, '--tokens', tokensFile]);
      const complete = runCli(['complete', second.ws, '--vm', 'vm1', '--job', 'r0'], env);
      expect(await complete.exited).toBe(0);
      expect(await waitDone.exited).toBe(0);
      expect(waitDone.stderr.join('\n')).toMatch(/connection lost \(1001\), resuming/);
      second.run.child.kill('SIGTERM');
      expect(await second.run.exited).toBe(0);
    });

    it('watch, piped, prints one JSON line per protocol message: welcome, snapshot, live transitions', async () => {
      const qsd = await startQsd();
      const gateway = await serve(qsd, ['--listen', '127.0.0.1:0']);
      const watch = runCli(['watch', gateway.ws, '--vm', 'vm1']);
      await watch.line(/"type":"synced"/);
      await startMirror(qsd, qsd, { jobId: 'w0', dataMiB: 8, speed: 0 });
      await watch.line(/"type":"event".*"to":"ready"/);
      const messages = watch.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      expect(messages[0].type).toBe('welcome');
      const events = messages.filter((m) => m.type === 'event' && m.job.id === 'w0');
      const order = ['created', 'running', 'ready'];
      const seen = events.map((m) => order.indexOf(m.transition.to));
      expect(seen.at(-1)).toBe(2);
      // The engine polls as soon as a job appears, so even its first transition names its type.
      expect(events[0].job.type).toBe('mirror');
      expect(seen.every((index, i) => index >= 0 && (i === 0 || index > seen[i - 1]!))).toBe(true);
      for (let i = 1; i < events.length; i++) expect(events[i].prev).toBe(events[i - 1].offset);
      watch.child.kill('SIGTERM');
      expect(await watch.exited).toBe(0);
      gateway.run.child.kill('SIGTERM');
      await gateway.run.exited;
    });
  });
});
