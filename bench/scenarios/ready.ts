/**
 * (1) Ready-notification latency on a real qemu-storage-daemon. Speed-limited mirrors converge and
 * QEMU declares them ready; for each, against QEMU's own BLOCK_JOB_READY timestamp:
 *  - push: a gateway subscriber receives the transition to ready;
 *  - Nova-like poll: `query-block-jobs` every 0.5 s on a second monitor, ready by the `ready` field;
 *  - offset poll: the same replies, acting as soon as offset == len; it really sends job-complete
 *    on its monitor, and QEMU's refusals are counted (a complete before ready fails).
 * Only the gateway runs in this process: QEMU, qemu-img, the oracle and both pollers live in the
 * forked QEMU lab (bench/load/qemu-lab.ts), the push subscriber in the forked subscribers process.
 * The gateway leg is split at the subscriber's socket read, and set beside the transport's floor: a
 * bare `ws` server in this process sending equally sparse frames to the same kind of client.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import type { ReadySample } from '../load/qemu-lab.js';
import { startBenchGateway } from '../lib/gateway.js';
import type { Resources } from '../lib/resources.js';
import { sleep, waitFor } from '../lib/resources.js';
import type { RpcChild } from '../lib/rpc.js';
import { forkLoad, ms, type Scenario } from '../lib/scenario.js';
import { summarize, wallNow } from '../lib/stats.js';

/**
 * One-way latency of a lone `ws` frame from this process to the subscriber process (send to its
 * `message`), frames 20-80 ms apart: both processes idle between frames, as between readies on the
 * ready path: what one idle process sending one frame to another costs on this machine, which no
 * code in the gateway can save.
 */
async function transportFloor(resources: Resources, subscriber: RpcChild, frames: number): Promise<number[]> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  // ws's close() leaves open connections be, and its server waits for them: end the client first.
  resources.defer('floor ws server', () => new Promise<void>((resolve) => (server.clients.forEach((c) => c.terminate()), server.close(() => resolve()))));
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const client = new Promise<WebSocket>((resolve) => server.once('connection', resolve));
  await subscriber.call('watchFloor', { url: `ws://127.0.0.1:${(server.address() as { port: number }).port}` }, 30_000);
  const socket = await client;
  for (let i = 0; i < frames; i++) {
    await sleep(20 + Math.random() * 60);
    socket.send(`{"sent":${wallNow()}}`);
  }
  return waitFor('the floor frames to arrive', async () => {
    const lags = await subscriber.call<number[]>('floorLags');
    return lags.length >= frames ? lags : undefined;
  }, 30_000, 100);
}

export const ready: Scenario = async (context) => {
  const { quick } = context;
  // The issue asks for >= 100 mirrors; quick mode is a smoke run.
  const target = quick ? 4 : 100;
  const concurrency = quick ? 4 : 6;
  const lab = forkLoad(context, 'qemu-lab');
  const subscriber = forkLoad(context, 'subscribers');
  const { address } = await lab.call<{ address: string }>('start', { monitors: ['gw', 'poll', 'oracle'] });
  const { gateway, onTransition } = await startBenchGateway(context.resources, { vm1: address });

  const gatewayReceived = new Map<string, { at: number | undefined; source: string }>();
  onTransition((transition, qmpWall) => {
    if (transition.to.ready === true && transition.from?.ready !== true && !gatewayReceived.has(transition.job.id)) {
      gatewayReceived.set(transition.job.id, { at: qmpWall, source: transition.source });
    }
  });
  await subscriber.call('watchReady', { url: gateway.wsUrl }, 30_000);

  const run = await lab.call<{ samples: ReadySample[]; pollIntervalMs: number; dataMiB: number; speed: number }>('runReady', { target, concurrency }, 30 * 60_000);
  const pushTimes = await waitFor(
    'the push subscriber to have every ready',
    async () => {
      const times = await subscriber.call<Record<string, { recv: number; raw: number }>>('readyTimes');
      return run.samples.every((s) => times[s.id] !== undefined) ? times : undefined;
    },
    30_000,
    100,
  );

  const floor = summarize(await transportFloor(context.resources, subscriber, quick ? 20 : 100));

  const all = run.samples.map((s) => ({ ...s, pushReady: pushTimes[s.id]!.recv, subscriberRead: pushTimes[s.id]!.raw, gatewayReceived: gatewayReceived.get(s.id)?.at, gatewaySource: gatewayReceived.get(s.id)?.source }));
  const lag = (pick: (s: (typeof all)[number]) => number | undefined) => summarize(all.map((s) => pick(s)! - s.qemuReady!));
  const push = lag((s) => s.pushReady);
  const nova = lag((s) => s.novaSeen);
  const qmpLeg = lag((s) => s.gatewayReceived);
  // The rest: the gateway's own work from its QMP receive to the socket write, plus the subscriber's wake-up.
  const gatewayLeg = summarize(all.map((s) => s.pushReady - s.gatewayReceived!));
  const toSocket = summarize(all.map((s) => s.subscriberRead - s.gatewayReceived!));
  const wsParse = summarize(all.map((s) => s.pushReady - s.subscriberRead));
  const offset = lag((s) => s.offsetActed);
  const failedCompletes = all.filter((s) => s.completeRefused).length;
  const actedEarly = all.filter((s) => s.offsetActedEarly).length;
  const ratio = nova.p50 / push.p50;
  // A subscriber completing on push acts at pushReady: before QEMU's ready, its complete would fail.
  const pushEarly = all.filter((s) => s.pushReady < s.qemuReady!).length;
  const line = (s: typeof push) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)} / p99 ${ms(s.p99)} / max ${ms(s.max)} ms`;
  const samples = `${all.length} mirrors`;
  return {
    name: 'ready',
    rows: [
      {
        metric: 'push: QEMU ready -> subscriber',
        value: line(push),
        samples,
        ...(quick ? {} : { goal: 'p50 <= 1 ms, p99 <= 5 ms', met: push.p50 <= 1 && push.p99 <= 5 }),
      },
      { metric: '  of which QEMU -> gateway QMP receive', value: line(qmpLeg), samples },
      { metric: '  of which gateway QMP receive -> subscriber', value: line(gatewayLeg), samples },
      { metric: '    gateway QMP receive -> subscriber socket read', value: line(toSocket), samples },
      { metric: '    subscriber socket read -> ws message', value: line(wsParse), samples },
      { metric: '  transport floor: lone ws frame, this process -> subscriber message', value: line(floor), samples: `${floor.count} frames` },
      { metric: '  gateway leg above the floor at p50 (QMP parse, engine, stream, fan-out)', value: `${ms(gatewayLeg.p50 - floor.p50)} ms`, samples },
      { metric: 'Nova-like poll (0.5 s, ready field)', value: line(nova), samples },
      { metric: 'offset==len poller acted (negative: before ready)', value: line(offset), samples },
      { metric: 'poll/push ratio at p50', value: `${ratio.toFixed(0)}x`, samples, goal: '>= 100x', met: ratio >= 100 },
      { metric: 'push: ready received before QEMU declared it (would-be failed completes)', value: String(pushEarly), samples, goal: '0', met: pushEarly === 0 },
      { metric: 'offset==len poller: completes refused by QEMU', value: `${failedCompletes} of ${all.length} (${actedEarly} acted on a reply with ready=false)`, samples },
    ],
    raw: { samples: all, push, qmpLeg, gatewayLeg, toSocket, wsParse, floor, nova, offset, ratio, failedCompletes, actedEarly, pushEarly, pollIntervalMs: run.pollIntervalMs, dataMiB: run.dataMiB, speedBytesPerSec: run.speed },
  };
};
