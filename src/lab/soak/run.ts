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
import { startBackup, startCommit, startMirror, startStream, type LabJob } from '../jobs.js';
import { startQsd, type Qsd } from '../qsd.js';
import { GatewayProcess, freePort, type Sample } from './gateway-process.js';
import { expectedOutcome, expectedStates, isSubsequence, SoakOracle, type SentVerbs } from './oracle.js';
import { planJob, type JobPlan } from './plan.js';
import { PushedJobs } from './pushed.js';
import { Random } from './random.js';
import { StreamClient } from './stream-client.js';

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

export interface SoakReport {
  seed: number;
  jobs: number;
  byKind: Record<string, number>;
  byEnding: Record<string, number>;
  transitionsCompared: number;
  outcomesChecked: number;
  mismatches: string[];
  /** Jobs whose stream was cut by a gateway kill (judged as a subsequence) or whose daemon was killed. */
  interrupted: number;
  qemuKilledJobs: number;
  /** Jobs a plan left alive (e.g. a soft cancel refused after a user pause), ended by force. */
  rescued: number;
  /** Driver steps whose moment never came (the job went another way). */
  stuckWaits: number;
  /** Jobs with a user pause or error stop whose pushed pause details differ from the oracle's attribution, all else equal. */
  pauseAttributionDiffers: number;
  completeOnReady: { sent: number; failed: number };
  completeEarly: { sent: number; ok: number };
  commands: number;
  gatewayKills: number;
  qemuKills: number;
  sigtermDrainMs: number;
  subscribers: { main: StreamClientSummary; resumer: StreamClientSummary };
  samples: Sample[];
  durationMs: number;
}

interface StreamClientSummary {
  numbered: number;
  gaps: number;
  duplicates: number;
  lostResumes: number;
  resumes: number;
  problems: string[];
}

interface VmLab {
  vm: string;
  qsd: Qsd;
  oracle: SoakOracle;
  /** Jobs running on it now (killed with the daemon). */
  live: Set<JobRun>;
  killedAt: number[];
  kills: number;
}

interface JobRun {
  plan: JobPlan;
  lab: VmLab;
  startedAt: number;
  oracleMark: number;
  pushedMark: number;
  /** Gateway life when it started; a kill since makes the stream a subsequence. */
  life: number;
  qemuKilled: boolean;
  /** User pauses, resumes and cancels sent through the gateway (send times). */
  sent: SentVerbs;
  labJob?: LabJob;
}

const WAIT_MS = 120_000;

/** The sequences without their pauses (and the repeats that removing them leaves). */
function sameSkeleton(a: readonly string[], b: readonly string[]): boolean {
  const skeleton = (seq: readonly string[]): string =>
    seq.filter((s) => s !== 'paused' && s !== 'standby').filter((s, i, all) => i === 0 || s !== all[i - 1]).join('>');
  return skeleton(a) === skeleton(b) && a.some((s) => s === 'paused' || s === 'standby');
}
/** A driver step that waits longer for its moment gives up (the plan was overtaken, e.g. a refused cancel). */
const STEP_WAIT_MS = 45_000;

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

  /** A command through the main subscriber; retried on a new connection if the gateway went away. */
  const command = async (run: JobRun, fields: Record<string, unknown>): Promise<Record<string, any> | undefined> => {
    for (let attempt = 0; attempt < 3; attempt++) {
      await main.whenConnected();
      if (fields.action === 'resume') run.sent.resumes.push(Date.now());
      if (fields.action === 'cancel') run.sent.cancels.push(Date.now());
      report.commands++;
      try {
        return await main.command({ vm: run.lab.vm, job: run.plan.id, ...fields });
      } catch {
        run.life = -1; // the stream was cut too: judged as a subsequence
      }
    }
    return undefined;
  };

  const segmentsOf = (run: JobRun) => pushed.since(run.lab.vm, run.plan.id, run.pushedMark);
  const pushedState = (run: JobRun) => pushed.latest(run.lab.vm, run.plan.id, run.pushedMark);
  const ended = (run: JobRun): boolean => {
    const job = pushedState(run);
    return job !== undefined && (job.state === 'dismissed' || (job.state === 'concluded' && (run.qemuKilled || job.outcome === 'unknown')));
  };
  /** Waits until the pushed job satisfies `predicate`; undefined if it ends first. */
  const when = (run: JobRun, predicate: (job: Record<string, any>) => boolean, what: string): Promise<Record<string, any> | undefined> =>
    pushed
      .waitFor(() => {
        const job = pushedState(run);
        if (job && predicate(job)) return { job };
        if (ended(run) || run.qemuKilled || (oracleEndAt(run) !== undefined && run.life !== pushed.life)) return { job: undefined };
        return undefined;
      }, STEP_WAIT_MS, `${run.plan.id}: ${what}`)
      .then((r) => r.job, () => {
        report.stuckWaits++;
        return undefined; // the end (waitEnd) sorts it out, and the judge says whether the gateway lied
      });

  const startJob = async (run: JobRun): Promise<void> => {
    const { plan, lab } = run;
    const common = { jobId: plan.id, dataMiB: plan.dataMiB, speed: plan.speed, autoFinalize: !plan.manual, autoDismiss: !plan.manual };
    // Node and file names carry the unique key, so a reused job id never meets its predecessor's nodes.
    const named = { ...common, jobId: plan.key };
    const qmp = { execute: (command: string, args?: Record<string, unknown>) => lab.qsd.execute(command, args && 'job-id' in args ? { ...args, 'job-id': plan.id } : args) };
    switch (plan.kind) {
      case 'mirror':
        run.labJob = await startMirror(qmp, lab.qsd, { ...named, ...(plan.fault ? { targetFault: 'first-write' as const, onTargetError: plan.fault } : {}) });
        break;
      case 'backup':
      case 'backup-none':
        run.labJob = await startBackup(qmp, lab.qsd, { ...named, sync: plan.kind === 'backup' ? 'full' : 'none', ...(plan.fault ? { targetFault: 'first-write' as const, onTargetError: plan.fault } : {}) });
        break;
      case 'commit':
      case 'active-commit':
        run.labJob = await startCommit(qmp, lab.qsd, { ...named, active: plan.kind === 'active-commit' });
        break;
      case 'stream':
        run.labJob = await startStream(qmp, lab.qsd, { ...named, ...(plan.fault ? { baseFault: 'first-read' as const, onError: plan.fault } : {}) });
        break;
    }
  };

  const driveJob = async (run: JobRun): Promise<void> => {
    const { plan } = run;
    const tasks: Promise<unknown>[] = [];
    if (plan.ending === 'complete-early') {
      report.completeEarly.sent++;
      const early = async (): Promise<Record<string, any> | undefined> => {
        const result = await command(run, { action: 'complete', when: 'ready', timeoutMs: WAIT_MS });
        // A gateway restarted under the start may not know the job yet: a service would ask again.
        if (result?.error?.code !== 'unknown_job' || run.life >= 0) return result;
        await sleep(1_000);
        return command(run, { action: 'complete', when: 'ready', timeoutMs: WAIT_MS });
      };
      tasks.push(early().then((result) => {
        if (result?.ok) report.completeEarly.ok++;
        else if (!run.qemuKilled && run.life >= 0 && result?.error?.code !== 'job_ended') mismatch(run, `complete (when: ready) right after the start failed: ${JSON.stringify(result?.error)}`);
      }));
    }
    if (plan.fault === 'stop') {
      tasks.push(when(run, (job) => job.pauseReason === 'error', 'an error pause').then(async (job) => {
        if (job) await command(run, { action: 'resume' });
      }));
    }
    if (plan.pause) {
      const where = plan.pause;
      tasks.push(when(run, (job) => job.state === where, `pushed ${where} for the pause`).then(async (job) => {
        if (!job) return;
        const sentAt = Date.now();
        run.sent.pauses.push(sentAt);
        const paused = await command(run, { action: 'pause' });
        if (!paused?.ok) {
          // Refused (e.g. already error-paused, or past running): nothing was paused by it.
          run.sent.pauses.splice(run.sent.pauses.indexOf(sentAt), 1);
          return;
        }
        await when(run, (j) => j.state === 'paused' || j.state === 'standby', 'the user pause');
        await sleep(chaosRng.int(50, 400));
        await command(run, { action: 'resume' });
      }));
    }
    if (plan.ending === 'complete-on-ready') {
      tasks.push(when(run, (job) => job.state === 'ready', 'pushed ready').then(async (job) => {
        if (!job) return;
        report.completeOnReady.sent++;
        const result = await command(run, { action: 'complete', when: 'now' });
        if (!result?.ok && !run.qemuKilled && run.life >= 0) {
          report.completeOnReady.failed++;
          mismatch(run, `complete sent on a pushed ready failed: ${JSON.stringify(result?.error)}`);
        }
      }));
    }
    if (plan.ending.includes('cancel')) {
      const afterReady = plan.ending.endsWith('after-ready');
      tasks.push(when(run, (job) => job.state === (afterReady ? 'ready' : 'running'), afterReady ? 'pushed ready' : 'pushed running').then(async (job) => {
        if (job) await command(run, { action: 'cancel', force: plan.ending.startsWith('force') });
      }));
    }
    if (plan.manual) {
      tasks.push(when(run, (job) => job.state === 'pending', 'pushed pending').then(async (job) => {
        if (job) await command(run, { action: 'finalize' });
      }));
      tasks.push(when(run, (job) => job.state === 'concluded', 'pushed concluded').then(async (job) => {
        if (job && !run.qemuKilled) await command(run, { action: 'dismiss' });
      }));
    }
    await Promise.all(tasks);
    await waitEnd(run);
  };

  const oracleEndAt = (run: JobRun): number | undefined =>
    run.lab.oracle.events(run.plan.id, run.oracleMark).find((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null')?.receivedAt;

  /**
   * The job's end as pushed: dismissed (concluded for a killed daemon's job). A job QEMU ended while
   * the gateway was down is never pushed again: its end is QEMU's. A job a plan left alive (e.g. a
   * soft cancel refused because a user pause came first) is force-cancelled, and the run says so.
   */
  const waitEnd = async (run: JobRun): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const done = await pushed
        .waitFor(() => {
          const job = pushedState(run);
          if (job?.state === 'dismissed' || (job?.state === 'concluded' && (run.qemuKilled || job.outcome === 'unknown'))) return true;
          // Killed with its daemon while the gateway was restarting too: no gateway will ever speak of it again.
          if (run.qemuKilled && run.life !== pushed.life) return true;
          const end = oracleEndAt(run);
          if (end !== undefined && (run.life !== pushed.life || run.life < 0) && Date.now() - end > 3_000) return true;
          return undefined;
        }, 20_000, `${run.plan.id}: the end`)
        .catch(() => false);
      if (done) return;
      if (attempt >= 3) throw new Error(`${run.plan.id} did not end (pushed: ${segmentsOf(run).flatMap((s) => s.trail).join(' ')}; QEMU: ${run.lab.oracle.events(run.plan.id, run.oracleMark).map((e) => (e.event === 'JOB_STATUS_CHANGE' ? e.data.status : e.event)).join(' ')}; qemuKilled ${run.qemuKilled})`);
      const job = pushedState(run);
      report.rescued++;
      if (job?.state === 'pending') await command(run, { action: 'finalize' });
      else if (job?.state === 'concluded') await command(run, { action: 'dismiss' });
      else await command(run, { action: 'cancel', force: true });
    }
  };

  const judge = async (run: JobRun): Promise<void> => {
    const { plan, lab } = run;
    const segments = segmentsOf(run);
    const interrupted = run.life !== pushed.life || segments.length > 1 || segments.some((s) => s.partial);
    // A restarted gateway's snapshot repeats the state the old one last pushed.
    const states = segments.flatMap((s) => s.states).filter((state, i, all) => i === 0 || state !== all[i - 1] || !interrupted);
    const last = pushedState(run);
    if (run.qemuKilled) {
      report.qemuKilledJobs++;
      const events = lab.oracle.events(plan.id, run.oracleMark);
      const oracleEnded = events.some((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null');
      // A job QEMU ended before it died (auto-dismiss off: concluded, not yet gone) keeps QEMU's outcome.
      const endedAs = expectedOutcome(events);
      const cut = run.life !== pushed.life;
      if (oracleEnded || cut) return;
      if (endedAs !== undefined) {
        report.outcomesChecked++;
        if (last?.state !== 'concluded' || last.outcome !== endedAs) mismatch(run, `daemon killed after the job ended: pushed ${last?.state}/${last?.outcome}, QEMU says concluded/${endedAs}`);
      } else if (!(last?.state === 'concluded' && last.outcome === 'unknown')) {
        mismatch(run, `daemon killed mid-job: pushed ${last?.state}/${last?.outcome}, expected concluded/unknown`);
      }
      return;
    }
    const events = lab.oracle.events(plan.id, run.oracleMark);
    const expected = expectedStates(events, run.sent);
    report.transitionsCompared += expected.length;
    if (interrupted) {
      report.interrupted++;
      if (!isSubsequence(states, expected)) mismatch(run, `pushed ${states.join('>')} is not a subsequence of QEMU's ${expected.join('>')}`);
    } else if (states.join('>') !== expected.join('>') && (plan.pause !== undefined || plan.fault === 'stop') && sameSkeleton(states, expected)) {
      // QEMU does not say which pause is the user's when a drain blips next to it: the pause details
      // differ, everything else is equal. Counted and reported, not hidden.
      report.pauseAttributionDiffers++;
    } else if (states.join('>') !== expected.join('>')) {
      const t0 = run.startedAt;
      const qemu = events.map((e) => `${e.event === 'JOB_STATUS_CHANGE' ? e.data.status : e.event}@${e.receivedAt % 100_000}`).join(' ');
      const pauses = `pause@${run.sent.pauses.map((t) => t % 100_000).join(',')} resume@${run.sent.resumes.map((t) => t % 100_000).join(',')} cancel@${run.sent.cancels.map((t) => t % 100_000).join(',')}`;
      const trail = segments.flatMap((s) => s.trail).join(' ');
      mismatch(run, `pushed ${states.join('>')} but QEMU went ${expected.join('>')} (QEMU: ${qemu}; pauses ${pauses}; pushed: ${trail})`);
    }
    const outcome = expectedOutcome(events);
    const concluded = segments.flatMap((s) => (s.last.state === 'concluded' || s.last.state === 'dismissed' ? [s.last] : []));
    const final = concluded[concluded.length - 1];
    if (outcome && final && final.outcome !== undefined) {
      report.outcomesChecked++;
      if (final.outcome !== outcome) mismatch(run, `outcome pushed ${final.outcome}, QEMU says ${outcome}`);
      const pivotExpected = outcome === 'completed' && plan.ending.startsWith('complete') && (plan.kind === 'mirror' || plan.kind === 'active-commit');
      if ((plan.kind === 'mirror' || plan.kind === 'active-commit') && outcome === 'completed' && !interrupted && final.pivoted !== pivotExpected) {
        mismatch(run, `pivoted ${final.pivoted}, expected ${pivotExpected}`);
      }
    } else if (!interrupted && outcome) {
      mismatch(run, `no concluded state pushed (QEMU: ${outcome})`);
    }
  };

  const release = async (run: JobRun): Promise<void> => {
    if (run.labJob && !run.qemuKilled) {
      for (const node of run.labJob.nodes) await run.lab.qsd.removeNode(node).catch(() => {});
    }
    for (const suffix of ['src', 'dst', 'base', 'mid', 'top']) rmSync(run.lab.qsd.imagePath(`${run.plan.key}-${suffix}`), { force: true });
    run.lab.oracle.forget(run.plan.id);
    pushed.forget(run.lab.vm, run.plan.id);
  };

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
        await startJob(run);
        if (unseen()) run.life = -1;
      } catch (error) {
        if (run.qemuKilled || !lab.qsd.running || lab.kills !== killsBefore) return; // the daemon died under the start
        throw error;
      }
      await driveJob(run);
      // QEMU's own end (null) must have been seen by the oracle too, unless the daemon died.
      if (!run.qemuKilled) {
        const deadline = Date.now() + 10_000;
        while (!lab.oracle.events(plan.id, run.oracleMark).some((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null') && Date.now() < deadline) await sleep(20);
      }
      await judge(run);
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
