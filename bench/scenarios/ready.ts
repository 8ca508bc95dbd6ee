/**
 * (1) Ready-notification latency on a real qemu-storage-daemon. Speed-limited mirrors converge and
 * QEMU declares them ready; for each, against QEMU's own BLOCK_JOB_READY timestamp:
 *  - push: a gateway subscriber receives the transition to ready;
 *  - Nova-like poll: `query-block-jobs` every 0.5 s on a second monitor, ready by the `ready` field;
 *  - offset poll: the same replies, acting as soon as offset == len; it really sends job-complete
 *    on its monitor, and QEMU's refusals are counted (a complete before ready fails).
 */
import { rm } from 'node:fs/promises';
import WebSocket from 'ws';
import { MiB, releaseJobNodes, startMirror, type LabJob } from '../../dist/lab/jobs.js';
import { startQsd } from '../../dist/lab/qsd.js';
import { startBenchGateway } from '../lib/gateway.js';
import { sleep, waitFor } from '../lib/resources.js';
import { ms, type Scenario } from '../lib/scenario.js';
import { summarize, wallNow } from '../lib/stats.js';

const POLL_INTERVAL_MS = 500;
const DATA_MIB = 8;
const SPEED = 8 * MiB;
const JOB_TIMEOUT_MS = 90_000;

interface Sample {
  job: LabJob;
  qemuReady?: number;
  pushReady?: number;
  /** When the gateway's QMP client received the message that revealed ready. */
  gatewayReceived?: number;
  /** What revealed ready to the gateway: a QMP event, a poll or a reconcile. */
  gatewaySource?: string;
  novaSeen?: number;
  offsetActed?: number;
  /** The reply the offset poller acted on still said ready=false. */
  offsetActedEarly?: boolean;
  completeRefused?: boolean;
  completeSent?: Promise<unknown>;
  polling?: boolean;
}

interface BlockJobInfo {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
}

export const ready: Scenario = async ({ quick, resources, log }) => {
  const target = quick ? 8 : 30;
  const concurrency = quick ? 4 : 6;
  const qsd = await startQsd({ monitors: ['gw', 'poll', 'oracle'] });
  resources.defer('qemu-storage-daemon', () => qsd.dispose());
  const oracle = await qsd.raw('oracle', { maxEvents: 50_000 });
  resources.defer('oracle monitor', () => oracle.close());
  const poller = await qsd.raw('poll', { maxEvents: 50_000 });
  resources.defer('poller monitor', () => poller.close());
  const { gateway, onTransition } = await startBenchGateway(resources, { vm1: qsd.address('gw') });

  const samples = new Map<string, Sample>();
  // QEMU declares ready twice, microseconds apart: JOB_STATUS_CHANGE(ready), then BLOCK_JOB_READY. The first counts.
  oracle.onEvent((event) => {
    const isReady = event.event === 'BLOCK_JOB_READY' || (event.event === 'JOB_STATUS_CHANGE' && event.data.status === 'ready');
    const sample = isReady ? samples.get(String(event.data.id ?? event.data.device)) : undefined;
    const at = event.timestamp.seconds * 1000 + event.timestamp.microseconds / 1000;
    if (sample && (sample.qemuReady === undefined || at < sample.qemuReady)) sample.qemuReady = at;
  });

  onTransition((transition, qmpWall) => {
    const sample = transition.to.ready === true && transition.from?.ready !== true ? samples.get(transition.job.id) : undefined;
    if (sample && sample.gatewayReceived === undefined) {
      sample.gatewayReceived = qmpWall;
      sample.gatewaySource = transition.source;
    }
  });

  const subscriber = new WebSocket(gateway.wsUrl, { perMessageDeflate: false });
  resources.defer('push subscriber', () => subscriber.terminate());
  let synced = false;
  subscriber.on('message', (data) => {
    const recv = wallNow();
    const message = JSON.parse(data.toString());
    if (message.type === 'welcome') subscriber.send(JSON.stringify({ type: 'subscribe', id: '1', sub: 'ready', progress: { intervalMs: 0 } }));
    else if (message.type === 'synced') synced = true;
    else if (message.type === 'event' && message.job.ready === true) {
      const sample = samples.get(message.job.id);
      if (sample && sample.pushReady === undefined) sample.pushReady = recv;
    }
  });
  await waitFor('the push subscriber to be synced', () => synced, 30_000);

  // Each job gets its own 0.5 s poll loop at a random phase (as a per-instance poller would), on one
  // second monitor; both pollers read the same replies.
  const pollTimers = new Set<NodeJS.Timeout>();
  resources.defer('poll timers', () => pollTimers.forEach((timer) => clearTimeout(timer)));
  const pollJob = (sample: Sample): void => {
    const timer = setTimeout(() => {
      pollTimers.delete(timer);
      if (sample.novaSeen !== undefined && sample.offsetActed !== undefined) return;
      pollJob(sample);
      poller.execute<BlockJobInfo[]>('query-block-jobs').then((jobs) => {
        const seen = wallNow();
        const info = jobs.find((job) => job.device === sample.job.id);
        if (!info) return;
        if (info.ready && sample.novaSeen === undefined) sample.novaSeen = seen;
        if (info.len > 0 && info.offset === info.len && sample.offsetActed === undefined) {
          sample.offsetActed = seen;
          sample.offsetActedEarly = !info.ready;
          sample.completeSent = poller.execute('job-complete', { id: info.device }).then(
            () => (sample.completeRefused = false),
            () => (sample.completeRefused = true),
          );
        }
      }, () => undefined);
    }, sample.novaSeen === undefined && sample.offsetActed === undefined && !sample.polling ? Math.random() * POLL_INTERVAL_MS : POLL_INTERVAL_MS);
    sample.polling = true;
    pollTimers.add(timer);
  };

  const qmp = { execute: (command: string, args?: Record<string, unknown>) => qsd.execute(command, args) };
  for (let round = 0; samples.size < target; round++) {
    const batch: Sample[] = [];
    for (let i = 0; i < concurrency && samples.size < target; i++) {
      // Staggered starts: each job meets the 0.5 s poll at a different phase.
      await sleep(Math.random() * 150);
      const jobId = `r${round}j${i}`;
      const sample: Sample = { job: { id: jobId, type: 'mirror', device: '', nodes: [] } };
      samples.set(jobId, sample);
      sample.job = await startMirror(qmp, qsd, { jobId, dataMiB: DATA_MIB, speed: SPEED });
      batch.push(sample);
      pollJob(sample);
    }
    await waitFor(
      `round ${round}: every job ready for QEMU, the subscriber and both pollers`,
      () => batch.every((s) => s.qemuReady !== undefined && s.pushReady !== undefined && s.novaSeen !== undefined && s.offsetActed !== undefined),
      JOB_TIMEOUT_MS,
    );
    for (const sample of batch) {
      await sample.completeSent;
      // A refused complete left the mirror ready: complete it now, then free its nodes and images.
      if (sample.completeRefused) await qsd.execute('job-complete', { id: sample.job.id });
      await oracle.waitForEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === sample.job.id && e.data.status === 'null', JOB_TIMEOUT_MS);
      await releaseJobNodes(qsd, sample.job);
      await Promise.all(sample.job.nodes.map((node) => rm(qsd.imagePath(node), { force: true })));
    }
    log(`ready: ${samples.size}/${target} samples`);
  }

  const all = [...samples.values()];
  const lag = (pick: (s: Sample) => number | undefined) => summarize(all.map((s) => pick(s)! - s.qemuReady!));
  const push = lag((s) => s.pushReady);
  const nova = lag((s) => s.novaSeen);
  const qmpLeg = lag((s) => s.gatewayReceived);
  const offset = lag((s) => s.offsetActed);
  const failedCompletes = all.filter((s) => s.completeRefused).length;
  const actedEarly = all.filter((s) => s.offsetActedEarly).length;
  const ratio = nova.p50 / push.p50;
  // A subscriber completing on push acts at pushReady: before QEMU's ready, its complete would fail.
  const pushEarly = all.filter((s) => s.pushReady! < s.qemuReady!).length;
  const line = (s: typeof push) => `p50 ${ms(s.p50)} / p95 ${ms(s.p95)} / p99 ${ms(s.p99)} / max ${ms(s.max)} ms`;
  return {
    name: 'ready',
    rows: [
      { metric: `push: QEMU ready -> subscriber (${push.count} mirrors)`, value: line(push) },
      { metric: '  of which QEMU -> gateway QMP receive', value: line(qmpLeg) },
      { metric: 'Nova-like poll (0.5 s, ready field)', value: line(nova) },
      { metric: 'offset==len poller acted (negative: before ready)', value: line(offset) },
      { metric: 'poll/push ratio at p50', value: `${ratio.toFixed(0)}x`, goal: '>= 100x', met: ratio >= 100 },
      { metric: 'push: ready received before QEMU declared it (would-be failed completes)', value: String(pushEarly), goal: '0', met: pushEarly === 0 },
      {
        metric: 'offset==len poller: completes refused by QEMU',
        value: `${failedCompletes} of ${all.length} (${actedEarly} acted on a reply with ready=false)`,
      },
    ],
    raw: {
      samples: all.map(({ job, completeSent: _sent, polling: _polling, ...times }) => ({ id: job.id, ...times })),
      push,
      qmpLeg,
      nova,
      offset,
      ratio,
      failedCompletes,
      actedEarly,
      pushEarly,
      pollIntervalMs: POLL_INTERVAL_MS,
      dataMiB: DATA_MIB,
      speedBytesPerSec: SPEED,
    },
  };
};
