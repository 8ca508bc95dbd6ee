/**
 * Drives one job of the soak through the gateway, as a service would: starts it on its daemon, then
 * sends the plan's verbs when the pushed state says their moment has come (a pause on running, a
 * complete on ready, a finalize on pending, ...), and waits for its end as pushed. A command goes
 * through the main subscriber and is retried on a new connection if the gateway went away.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { startBackup, startCommit, startMirror, startStream } from '../jobs.js';
import { oracleEndAt, pushedSegments, pushedState, type JobRun, type Mismatch, type SoakReport } from './model.js';
import type { PushedJobs } from './pushed.js';
import type { Random } from './random.js';
import type { StreamClient } from './stream-client.js';

/** How long a `complete` sent with `when: ready` right after the start may wait for the ready. */
const WAIT_MS = 120_000;
/** A driver step that waits longer for its moment gives up (the plan was overtaken, e.g. a refused cancel). */
const STEP_WAIT_MS = 45_000;

export interface DriverContext {
  /** The subscriber that sends the verbs and records what was pushed. */
  main: StreamClient;
  pushed: PushedJobs;
  report: SoakReport;
  mismatch: Mismatch;
  /** Draws the driver's timing (the chaos generator, so the plans depend on the seed alone). */
  rng: Random;
}

export class JobDriver {
  private readonly main: StreamClient;
  private readonly pushed: PushedJobs;
  private readonly report: SoakReport;
  private readonly mismatch: Mismatch;
  private readonly rng: Random;

  constructor(context: DriverContext) {
    ({ main: this.main, pushed: this.pushed, report: this.report, mismatch: this.mismatch, rng: this.rng } = context);
  }

  /** A command through the main subscriber; retried on a new connection if the gateway went away. */
  async command(run: JobRun, fields: Record<string, unknown>): Promise<Record<string, any> | undefined> {
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.main.whenConnected();
      if (fields.action === 'resume') run.sent.resumes.push(Date.now());
      if (fields.action === 'cancel') run.sent.cancels.push(Date.now());
      this.report.commands++;
      try {
        return await this.main.command({ vm: run.lab.vm, job: run.plan.id, ...fields });
      } catch {
        run.life = -1; // the stream was cut too: judged as a subsequence
      }
    }
    return undefined;
  }

  /** Waits until the pushed job satisfies `predicate`; undefined if it ends first. */
  private when(run: JobRun, predicate: (job: Record<string, any>) => boolean, what: string): Promise<Record<string, any> | undefined> {
    return this.pushed
      .waitFor(() => {
        const job = pushedState(this.pushed, run);
        if (job && predicate(job)) return { job };
        if (this.ended(run) || run.qemuKilled || (oracleEndAt(run) !== undefined && run.life !== this.pushed.life)) return { job: undefined };
        return undefined;
      }, STEP_WAIT_MS, `${run.plan.id}: ${what}`)
      .then((r) => r.job, () => {
        this.report.stuckWaits++;
        return undefined; // the end (waitEnd) sorts it out, and the judge says whether the gateway lied
      });
  }

  async start(run: JobRun): Promise<void> {
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
  }

  async drive(run: JobRun): Promise<void> {
    const { plan } = run;
    const tasks: Promise<unknown>[] = [];
    if (plan.ending === 'complete-early') {
      this.report.completeEarly.sent++;
      const early = async (): Promise<Record<string, any> | undefined> => {
        const result = await this.command(run, { action: 'complete', when: 'ready', timeoutMs: WAIT_MS });
        // A gateway restarted under the start may not know the job yet: a service would ask again.
        if (result?.error?.code !== 'unknown_job' || run.life >= 0) return result;
        await sleep(1_000);
        return this.command(run, { action: 'complete', when: 'ready', timeoutMs: WAIT_MS });
      };
      tasks.push(early().then((result) => {
        if (result?.ok) this.report.completeEarly.ok++;
        else if (!run.qemuKilled && run.life >= 0 && result?.error?.code !== 'job_ended') this.mismatch(run, `complete (when: ready) right after the start failed: ${JSON.stringify(result?.error)}`);
      }));
    }
    if (plan.fault === 'stop') {
      tasks.push(this.when(run, (job) => job.pauseReason === 'error', 'an error pause').then(async (job) => {
        if (job) await this.command(run, { action: 'resume' });
      }));
    }
    if (plan.pause) {
      const where = plan.pause;
      tasks.push(this.when(run, (job) => job.state === where, `pushed ${where} for the pause`).then(async (job) => {
        if (!job) return;
        const sentAt = Date.now();
        run.sent.pauses.push(sentAt);
        const paused = await this.command(run, { action: 'pause' });
        if (!paused?.ok) {
          // Refused (e.g. already error-paused, or past running): nothing was paused by it.
          run.sent.pauses.splice(run.sent.pauses.indexOf(sentAt), 1);
          return;
        }
        await this.when(run, (j) => j.state === 'paused' || j.state === 'standby', 'the user pause');
        await sleep(this.rng.int(50, 400));
        await this.command(run, { action: 'resume' });
      }));
    }
    if (plan.ending === 'complete-on-ready') {
      tasks.push(this.when(run, (job) => job.state === 'ready', 'pushed ready').then(async (job) => {
        if (!job) return;
        this.report.completeOnReady.sent++;
        const result = await this.command(run, { action: 'complete', when: 'now' });
        if (!result?.ok && !run.qemuKilled && run.life >= 0) {
          this.report.completeOnReady.failed++;
          this.mismatch(run, `complete sent on a pushed ready failed: ${JSON.stringify(result?.error)}`);
        }
      }));
    }
    if (plan.ending.includes('cancel')) {
      const afterReady = plan.ending.endsWith('after-ready');
      tasks.push(this.when(run, (job) => job.state === (afterReady ? 'ready' : 'running'), afterReady ? 'pushed ready' : 'pushed running').then(async (job) => {
        if (job) await this.command(run, { action: 'cancel', force: plan.ending.startsWith('force') });
      }));
    }
    if (plan.manual) {
      tasks.push(this.when(run, (job) => job.state === 'pending', 'pushed pending').then(async (job) => {
        if (job) await this.command(run, { action: 'finalize' });
      }));
      tasks.push(this.when(run, (job) => job.state === 'concluded', 'pushed concluded').then(async (job) => {
        if (job && !run.qemuKilled) await this.command(run, { action: 'dismiss' });
      }));
    }
    await Promise.all(tasks);
    await this.waitEnd(run);
  }

  /**
   * The job's end as pushed: dismissed (concluded for a killed daemon's job). A job QEMU ended while
   * the gateway was down is never pushed again: its end is QEMU's. A job a plan left alive (e.g. a
   * soft cancel refused because a user pause came first) is force-cancelled, and the run says so.
   */
  private async waitEnd(run: JobRun): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const done = await this.pushed
        .waitFor(() => {
          const job = pushedState(this.pushed, run);
          if (job?.state === 'dismissed' || (job?.state === 'concluded' && (run.qemuKilled || job.outcome === 'unknown'))) return true;
          // Killed with its daemon while the gateway was restarting too: no gateway will ever speak of it again.
          if (run.qemuKilled && run.life !== this.pushed.life) return true;
          const end = oracleEndAt(run);
          if (end !== undefined && (run.life !== this.pushed.life || run.life < 0) && Date.now() - end > 3_000) return true;
          return undefined;
        }, 20_000, `${run.plan.id}: the end`)
        .catch(() => false);
      if (done) return;
      if (attempt >= 3) throw new Error(`${run.plan.id} did not end (pushed: ${pushedSegments(this.pushed, run).flatMap((s) => s.trail).join(' ')}; QEMU: ${run.lab.oracle.events(run.plan.id, run.oracleMark).map((e) => (e.event === 'JOB_STATUS_CHANGE' ? e.data.status : e.event)).join(' ')}; qemuKilled ${run.qemuKilled})`);
      const job = pushedState(this.pushed, run);
      this.report.rescued++;
      if (job?.state === 'pending') await this.command(run, { action: 'finalize' });
      else if (job?.state === 'concluded') await this.command(run, { action: 'dismiss' });
      else await this.command(run, { action: 'cancel', force: true });
    }
  }

  /** Whether the job's end was pushed: dismissed, or concluded for a killed daemon's job or an unknown outcome. */
  private ended(run: JobRun): boolean {
    const job = pushedState(this.pushed, run);
    return job !== undefined && (job.state === 'dismissed' || (job.state === 'concluded' && (run.qemuKilled || job.outcome === 'unknown')));
  }
}
