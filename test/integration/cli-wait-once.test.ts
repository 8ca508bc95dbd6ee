/**
 * Issue 13 bug 3: `wait` printed its result twice when another transition followed the awaited one
 * within a few ms. A scripted gateway sends the two transitions in the same tick (what a real one does
 * only by chance); exactly one result must come out, on the stream the exit code implies.
 */
import { afterAll, expect, it } from 'vitest';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { scriptedJob, startScriptedGateway, type ScriptedGateway } from '../utils/scripted-gateway.js';

/** A gateway where j0 is running, then turns ready and standby (or concluded and dismissed) at once. */
function twoTransitionsAtOnce(first: Record<string, unknown>, second: Record<string, unknown>): Promise<ScriptedGateway> {
  return startScriptedGateway({
    onMessage: (message, peer) => {
      if (message.type !== 'subscribe') return;
      const sub = message.sub;
      const running = scriptedJob();
      peer.send(
        { type: 'subscribed', id: message.id, sub, streams: { vm1: { mode: 'snapshot', epoch: 'E1', offset: 1 } } },
        { type: 'state', sub, vm: 'vm1', epoch: 'E1', offset: 1, job: running },
        { type: 'synced', sub, vm: 'vm1', epoch: 'E1', offset: 1, status: 'connected' },
      );
      setTimeout(() => {
        const ts = '2026-11-25T00:00:01.000Z';
        const a = scriptedJob(first);
        const b = scriptedJob(second);
        peer.send(
          { type: 'event', sub, vm: 'vm1', epoch: 'E1', offset: 2, prev: 1, ts, job: a, transition: { from: 'running', to: a.state }, source: 'event' },
          { type: 'event', sub, vm: 'vm1', epoch: 'E1', offset: 3, prev: 2, ts, job: b, transition: { from: a.state, to: b.state }, source: 'event' },
        );
      }, 50);
    },
  });
}

describeBuilt('wait prints exactly one result', () => {
  cleanupLeftoversAfterAll();
  const gateways: ScriptedGateway[] = [];
  afterAll(async () => {
    for (const g of gateways) await g.close();
  });

  it('ready then standby in the same tick: one JSON object, one line, exit 0 (several runs)', async () => {
    const gateway = await twoTransitionsAtOnce({ state: 'ready', ready: true }, { state: 'standby', ready: true, pauseReason: 'user' });
    gateways.push(gateway);
    const runs = Array.from({ length: 4 }, (_, i) =>
      runCli(['wait', gateway.url, '--vm', 'vm1', '--job', 'j0', '--for', 'ready', '--timeout', '30s', ...(i % 2 ? ['--json'] : [])]),
    );
    for (const [i, run] of runs.entries()) {
      expect(await run.exited).toBe(0);
      const out = run.stdout.filter((l) => l.trim() !== '');
      if (i % 2) {
        expect(out).toHaveLength(1);
        expect(JSON.parse(out[0]!)).toMatchObject({ id: 'j0', state: 'ready' });
      } else {
        expect(out).toHaveLength(1);
        expect(out[0]).toMatch(/^ready: vm1\/j0 mirror ready/);
      }
      // --json puts the one human line on stderr; text mode prints nothing else there.
      expect(run.stderr.filter((l) => /^(ready|concluded|standby|job )/.test(l))).toHaveLength(i % 2);
    }
  });

  it('concluded then dismissed in the same tick: one result, exit 0', async () => {
    const gateway = await twoTransitionsAtOnce(
      { state: 'concluded', ready: false, outcome: 'completed', pivoted: true },
      { state: 'dismissed', ready: false, outcome: 'completed', pivoted: true },
    );
    gateways.push(gateway);
    const runs = Array.from({ length: 3 }, () => runCli(['wait', gateway.url, '--vm', 'vm1', '--job', 'j0', '--for', 'concluded', '--timeout', '30s', '--json']));
    for (const run of runs) {
      expect(await run.exited).toBe(0);
      const out = run.stdout.filter((l) => l.trim() !== '');
      expect(out).toHaveLength(1);
      expect(JSON.parse(out[0]!)).toMatchObject({ id: 'j0', state: 'concluded' });
      expect(run.stderr.filter((l) => /concluded|dismissed/.test(l))).toHaveLength(1);
    }
  });
});
