/**
 * Load generator (forked): a real qemu-storage-daemon and everything around it that is not the
 * gateway: `qemu-img` spawns, the oracle monitor (QEMU's own ready timestamps), the Nova-like and
 * offset==len pollers on a second monitor. Kept out of the bench host so the gateway's event loop,
 * CPU and latencies are its own. The gateway gets the `gw` monitor's address.
 *
 * `runReady`: speed-limited mirrors, `concurrency` at a time, staggered; for each, QEMU's ready time,
 * when a 0.5 s poller of the `ready` field saw it, and when a poller trusting offset == len acted
 * (it really sends job-complete; QEMU's refusals are counted).
 */
import { rm } from 'node:fs/promises';
import { MiB, releaseJobNodes, startMirror, type LabJob } from '../../dist/lab/jobs.js';
import { startQsd, type Qsd } from '../../dist/lab/qsd.js';
import { serveRpc } from '../lib/rpc.js';
import { sleep, waitFor } from '../lib/resources.js';
import { wallNow } from '../lib/stats.js';

const POLL_INTERVAL_MS = 500;
const DATA_MIB = 8;
const SPEED = 8 * MiB;
const JOB_TIMEOUT_MS = 90_000;

/** What one mirror's run tells; times are wall ms (comparable across processes on one machine). */
export interface ReadySample {
  id: string;
  qemuReady?: number;
  novaSeen?: number;
  offsetActed?: number;
  /** The reply the offset poller acted on still said ready=false. */
  offsetActedEarly?: boolean;
  completeRefused?: boolean;
}

interface BlockJobInfo {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
}

let qsd: Qsd | undefined;
let cleanups: Array<() => unknown> = [];

function daemon(): Qsd {
  if (!qsd) throw new Error('the QEMU lab is not started');
  return qsd;
}

async function close(): Promise<null> {
  for (const cleanup of cleanups.splice(0).reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
  // A frozen daemon must be thawed to exit.
  if (qsd && qsd.pid > 0) {
    try {
      process.kill(qsd.pid, 'SIGCONT');
    } catch {
      // already gone
    }
  }
  await qsd?.dispose();
  qsd = undefined;
  return null;
}

async function runReady({ target, concurrency }: { target: number; concurrency: number }): Promise<{ samples: ReadySample[]; pollIntervalMs: number; dataMiB: number; speed: number }> {
  const lab = daemon();
  const oracle = await lab.raw('oracle', { maxEvents: 50_000 });
  cleanups.push(() => oracle.close());
  const poller = await lab.raw('poll', { maxEvents: 50_000 });
  cleanups.push(() => poller.close());
  const samples = new Map<string, ReadySample & { job?: LabJob; completeSent?: Promise<unknown>; polling?: boolean }>();
  // QEMU declares ready twice, microseconds apart: JOB_STATUS_CHANGE(ready), then BLOCK_JOB_READY. The first counts.
  oracle.onEvent((event) => {
    const isReady = event.event === 'BLOCK_JOB_READY' || (event.event === 'JOB_STATUS_CHANGE' && event.data.status === 'ready');
    const sample = isReady ? samples.get(String(event.data.id ?? event.data.device)) : undefined;
    const at = event.timestamp.seconds * 1000 + event.timestamp.microseconds / 1000;
    if (sample && (sample.qemuReady === undefined || at < sample.qemuReady)) sample.qemuReady = at;
  });

  // Each job gets its own 0.5 s poll loop at a random phase (as a per-instance poller would), on one
  // second monitor; both pollers read the same replies.
  const pollTimers = new Set<NodeJS.Timeout>();
  cleanups.push(() => pollTimers.forEach((timer) => clearTimeout(timer)));
  type Sample = typeof samples extends Map<string, infer S> ? S : never;
  const pollJob = (sample: Sample): void => {
    const first = sample.novaSeen === undefined && sample.offsetActed === undefined && !sample.polling;
    const timer = setTimeout(() => {
      pollTimers.delete(timer);
      if (sample.novaSeen !== undefined && sample.offsetActed !== undefined) return;
      pollJob(sample);
      poller.execute<BlockJobInfo[]>('query-block-jobs').then((jobs) => {
        const seen = wallNow();
        const info = jobs.find((job) => job.device === sample.id);
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
    }, first ? Math.random() * POLL_INTERVAL_MS : POLL_INTERVAL_MS);
    sample.polling = true;
    pollTimers.add(timer);
  };

  const qmp = { execute: (command: string, args?: Record<string, unknown>) => lab.execute(command, args) };
  for (let round = 0; samples.size < target; round++) {
    const batch: Sample[] = [];
    for (let i = 0; i < concurrency && samples.size < target; i++) {
      // Staggered starts: each job meets the 0.5 s poll at a different phase.
      await sleep(Math.random() * 150);
      const id = `r${round}j${i}`;
      const sample: Sample = { id };
      samples.set(id, sample);
      sample.job = await startMirror(qmp, lab, { jobId: id, dataMiB: DATA_MIB, speed: SPEED });
      batch.push(sample);
      pollJob(sample);
    }
    await waitFor(
      `round ${round}: every job ready for QEMU and both pollers`,
      () => batch.every((s) => s.qemuReady !== undefined && s.novaSeen !== undefined && s.offsetActed !== undefined),
      JOB_TIMEOUT_MS,
    );
    for (const sample of batch) {
      await sample.completeSent;
      // A refused complete left the mirror ready: complete it now, then free its nodes and images.
      if (sample.completeRefused) await lab.execute('job-complete', { id: sample.id });
      await oracle.waitForEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === sample.id && e.data.status === 'null', JOB_TIMEOUT_MS);
      await releaseJobNodes(lab, sample.job!);
      await Promise.all(sample.job!.nodes.map((node) => rm(lab.imagePath(node), { force: true })));
    }
    process.stderr.write(`  ready: ${samples.size}/${target} mirrors\n`);
  }
  const result = [...samples.values()].map(({ job: _job, completeSent: _sent, polling: _polling, ...times }) => times);
  return { samples: result, pollIntervalMs: POLL_INTERVAL_MS, dataMiB: DATA_MIB, speed: SPEED };
}

serveRpc({
  async start({ monitors }: { monitors: string[] }) {
    if (qsd) throw new Error('the QEMU lab is already started');
    qsd = await startQsd({ monitors });
    return { address: qsd.address(monitors[0]!), pid: qsd.pid };
  },
  runReady,
  /** The daemon stops answering (SIGSTOP): its sockets stay open, as with a QEMU stuck in I/O. */
  freeze() {
    process.kill(daemon().pid, 'SIGSTOP');
    return null;
  },
  thaw() {
    process.kill(daemon().pid, 'SIGCONT');
    return null;
  },
  close,
});

process.once('SIGINT', () => void close().finally(() => process.exit(130)));
process.once('SIGTERM', () => void close().finally(() => process.exit(143)));
