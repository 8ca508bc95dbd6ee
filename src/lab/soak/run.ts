/**
 * The chaos soak: real qemu-storage-daemons, the real gateway CLI as a child process, jobs of every
 * kind driven through the gateway, and an oracle on a second monitor of each daemon. See
 * docs/reliability.md for what it checks; `runSoak` returns the figures and every mismatch.
 *
 * VMs: `vm1` lives for the whole run; `vm2`'s daemon is killed with SIGKILL now and then and
 * restarted (its running jobs must end pushed as concluded with outcome unknown). The gateway is
 * killed with SIGKILL now and then and restarted on the same port; the subscribers resume.
 */
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { startQsd } from '../qsd.js';
import { JobDriver } from './drive.js';
import { GatewayProcess, freePort } from './gateway-process.js';
import { judgeRun } from './judge.js';
import type { JobRun, SoakReport, StreamClientSummary, VmLab } from './model.js';
import { SoakOracle } from './oracle.js';
import { planJob } from './plan.js';
import { PushedJobs } from './pushed.js';
import { Random } from './random.js';
import { StreamClient } from './stream-client.js';

export type { SoakReport } from './model.js';

export interface SoakOptions {
  seed: number;
  /** Stop after this many jobs (whichever of jobs/durationMs comes first). */
  jobs: number;
  durationMs: number;
  /** Jobs running at once. @default 6 */
  concurrency?: number;
  /** Gateway SIGKILL + restart about this often (0 = never). @default 90_000 */
  gatewayKillEveryMs?: number;
  /** vm2's daemon SIGKILL + restart about this often (0 = never). @default 120_000 */
  qemuKillEveryMs?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const rng = new Random(options.seed);
  // Chaos and driver timing draw from their own generators, so the plans depend on the seed alone as far as timing allows.
  const chaosRng = new Random(options.seed ^ 0x5eed);
  const concurrency = options.concurrency ?? 6;
  const report: SoakReport = {
    seed: options.seed, jobs: 0, byKind: {}, byEnding: {}, transitionsCompared: 0, outcomesChecked: 0, mismatches: [], interrupted: 0,
    qemuKilledJobs: 0, rescued: 0, stuckWaits: 0, pauseAttributionDiffers: 0, completeOnReady: { sent: 0, failed: 0 }, completeEarly: { sent: 0, ok: 0 }, commands: 0, gatewayKills: 0, qemuKills: 0,
    sigtermDrainMs: 0, subscribers: undefined as never, samples: [], durationMs: 0,
  };
  const mismatch = (run: JobRun, text: string): void => {
    report.mismatches.push(`${run.lab.vm}/${run.plan.id} [${run.plan.key} ${run.plan.kind} ${run.plan.ending}${run.plan.fault ? ` fault=${run.plan.fault}` : ''}${run.plan.pause ? ` pause=${run.plan.pause}` : ''}${run.plan.manual ? ' manual' : ''}]: ${text}`);
    log(`MISMATCH ${report.mismatches[report.mismatches.length - 1]}`);
  };

  const labs: VmLab[] = [];
  for (const vm of ['vm1', 'vm2']) {
    const qsd = await startQsd({ monitors: ['gw', 'oracle'] });
    const oracle = new SoakOracle();
    await oracle.connect(qsd.path('oracle'));
    labs.push({ vm, qsd, oracle, live: new Set(), killedAt: [], kills: 0 });
  }
  const gateway = new GatewayProcess(await freePort(), Object.fromEntries(labs.map((l) => [l.vm, l.qsd.address('gw')])));
  const pushed = new PushedJobs();
  /** The gateway's monitor of each VM as pushed: a job started while it is down is not seen from its start. */
  const vmConnected = new Map<string, boolean>();
  await gateway.start();

  const main = new StreamClient({
    url: gateway.wsUrl,
    onMessage: (msg) => {
      if (msg.type === 'vm') vmConnected.set(msg.vm, msg.status === 'connected');
      if (msg.type === 'welcome') for (const v of msg.vms) vmConnected.set(v.vm, v.status === 'connected');
      if (msg.type === 'event') pushed.record(msg.vm, msg.job, false);
      else if (msg.type === 'state') pushed.record(msg.vm, msg.job, true);
    },
    onSnapshot: (vm) => pushed.lost(vm),
  });
  const resumer = new StreamClient({ url: gateway.wsUrl });
  main.start();
  resumer.start();
  await main.whenConnected();
  await resumer.whenConnected();

  let stopping = false;
  /** From a gateway kill until the main subscriber is subscribed again: a job started meanwhile was not seen from its start. */
  let gatewayDown = false;
  const halt = new AbortController();
  /** Sleeps that end early (resolving false) when the run stops. */
  const pause = (ms: number): Promise<boolean> => sleep(ms, true, { signal: halt.signal }).catch(() => false);
  const timers: Promise<void>[] = [];
  // The resumer drops its connection every 0.5-3 s and resumes with since.
  timers.push((async () => {
    while (!stopping) {
      if (await pause(chaosRng.int(500, 3_000))) resumer.bounce();
    }
  })());
  timers.push((async () => {
    while (!stopping) {
      if (!(await pause(5_000))) break;
      const sample = await gateway.sample(Date.now() - started);
      if (sample) report.samples.push(sample);
    }
  })());
  // Waiters whose condition is a matter of time (an end QEMU reported while the gateway was down).
  const poker = setInterval(() => pushed.poke(), 500);
  const gatewayKillEvery = options.gatewayKillEveryMs ?? 90_000;
  if (gatewayKillEvery > 0) {
    timers.push((async () => {
      while (!stopping) {
        if (!(await pause(chaosRng.int(gatewayKillEvery / 2, (gatewayKillEvery * 3) / 2)))) break;
        log(`chaos: gateway SIGKILL (life ${gateway.life})`);
        gatewayDown = true;
        for (const lab of labs) vmConnected.set(lab.vm, false);
        await gateway.kill();
        report.gatewayKills++;
        pushed.life++;
        await gateway.start();
        await main.whenConnected();
        gatewayDown = false;
      }
    })());
  }
  const qemuKillEvery = options.qemuKillEveryMs ?? 120_000;
  const vm2 = labs[1]!;
  if (qemuKillEvery > 0) {
    timers.push((async () => {
      while (!stopping) {
        if (!(await pause(chaosRng.int(qemuKillEvery / 2, (qemuKillEvery * 3) / 2)))) break;
        log(`chaos: ${vm2.vm} qemu-storage-daemon SIGKILL with ${vm2.live.size} jobs`);
        for (const run of vm2.live) if (run.labJob) run.qemuKilled = true;
        vmConnected.set(vm2.vm, false);
        vm2.killedAt.push(Date.now());
        vm2.kills++;
        await vm2.qsd.kill();
        report.qemuKills++;
        await vm2.qsd.restart({ reAddNodes: false });
        await vm2.oracle.connect(vm2.qsd.path('oracle'));
      }
    })());
  }

  const release = async (run: JobRun): Promise<void> => {
    if (run.labJob && !run.qemuKilled) {
      for (const node of run.labJob.nodes) await run.lab.qsd.removeNode(node).catch(() => {});
    }
    for (const suffix of ['src', 'dst', 'base', 'mid', 'top']) rmSync(run.lab.qsd.imagePath(`${run.plan.key}-${suffix}`), { force: true });
    run.lab.oracle.forget(run.plan.id);
    pushed.forget(run.lab.vm, run.plan.id);
  };

  const driver = new JobDriver({ main, pushed, report, mismatch, rng: chaosRng });
  const freeIds: Record<string, string[]> = { vm1: [], vm2: [] };
  let nextKey = 0;
  const runOne = async (): Promise<void> => {
    const lab = rng.chance(0.75) ? labs[0]! : vm2;
    const key = `k${nextKey++}`;
    // Id reuse: a finished job's id, now and then.
    const id = freeIds[lab.vm]!.length > 0 && rng.chance(0.3) ? freeIds[lab.vm]!.splice(rng.int(0, freeIds[lab.vm]!.length - 1), 1)[0]! : `j${key}`;
    const plan = planJob(rng, id, key);
    const run: JobRun = { plan, lab, startedAt: Date.now(), oracleMark: lab.oracle.mark(id), pushedMark: pushed.mark(lab.vm, id), life: pushed.life, qemuKilled: false, sent: { pauses: [], resumes: [], cancels: [] } };
    report.jobs++;
    report.byKind[plan.kind] = (report.byKind[plan.kind] ?? 0) + 1;
    report.byEnding[plan.ending] = (report.byEnding[plan.ending] ?? 0) + 1;
    lab.live.add(run);
    try {
      const killsBefore = lab.kills;
      try {
        const unseen = (): boolean => gatewayDown || vmConnected.get(lab.vm) === false;
        if (unseen()) run.life = -1;
        await driver.start(run);
        if (unseen()) run.life = -1;
      } catch (error) {
        if (run.qemuKilled || !lab.qsd.running || lab.kills !== killsBefore) return; // the daemon died under the start
        throw error;
      }
      await driver.drive(run);
      // QEMU's own end (null) must have been seen by the oracle too, unless the daemon died.
      if (!run.qemuKilled) {
        const deadline = Date.now() + 10_000;
        while (!lab.oracle.events(plan.id, run.oracleMark).some((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null') && Date.now() < deadline) await sleep(20);
      }
      judgeRun(run, pushed, report, mismatch);
    } catch (error) {
      mismatch(run, `driver failed: ${(error as Error).message}`);
    } finally {
      lab.live.delete(run);
      await release(run);
      if (!run.qemuKilled) freeIds[lab.vm]!.push(id);
    }
  };

  const workers: Promise<void>[] = [];
  let launched = 0;
  const deadline = started + options.durationMs;
  for (let w = 0; w < concurrency; w++) {
    workers.push((async () => {
      while (launched < options.jobs && Date.now() < deadline) {
        launched++;
        await runOne();
        if (report.jobs % 50 === 0) log(`${report.jobs} jobs, ${report.mismatches.length} mismatches, ${Math.round((Date.now() - started) / 1000)} s`);
      }
    })());
  }
  await Promise.all(workers);
  stopping = true;
  halt.abort();
  await Promise.all(timers);
  clearInterval(poker);
  pushed.poke();
  main.stop();
  resumer.stop();
  report.sigtermDrainMs = await gateway.stop();
  for (const lab of labs) {
    await lab.oracle.close();
    await lab.qsd.dispose();
  }
  const summary = (c: StreamClient): StreamClientSummary => ({
    numbered: c.stats.numbered, gaps: c.stats.gaps, duplicates: c.stats.duplicates, lostResumes: c.stats.lostResumes, resumes: c.stats.resumes, problems: c.stats.problems,
  });
  report.subscribers = { main: summary(main), resumer: summary(resumer) };
  report.durationMs = Date.now() - started;
  return report;
}
