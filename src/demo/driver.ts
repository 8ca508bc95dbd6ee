/**
 * The demo driver: keeps a realistic mix of block jobs going on every VM so that every state shows
 * up within a minute: speed-limited mirrors that reach ready and are completed (through the
 * gateway's own job control, with `when: ready`, so the pivot can never race), a stream, a backup,
 * active and non-active commits, a mirror paused and resumed, and now and then a job that fails
 * (blkdebug EIO) or is cancelled.
 *
 * Jobs start through the lab helpers (src/lab/jobs.ts) on the driver's own monitor; the driver
 * learns what happened from the job engine (JobSource), exactly as a gateway client would, and
 * releases each job's nodes and images once QEMU has dismissed it.
 */
import { filter, firstValueFrom, fromEvent, takeUntil, timeout } from 'rxjs';
import type { CommandMessage } from '../generated/schema-types.js';
import type { CommandHandler } from '../gateway/control/index.js';
import type { JobSource, JobState, StreamInput } from '../jobs/types.js';
import {
  MiB,
  releaseJobNodes,
  startBackup,
  startCommit,
  startMirror,
  startStream,
  type LabJob,
} from '../lab/jobs.js';
import type { FleetVm } from './fleet.js';

export interface DriverOptions {
  vms: readonly FleetVm[];
  source: JobSource;
  control: CommandHandler;
  /** Jobs kept running per VM. @default 2 */
  jobsPerVm?: number;
  /** How long a ready mirror stays ready before the driver completes it, ms. @default 5000 */
  holdReadyMs?: number;
  /** Problems worth a line in the terminal (a scenario that failed to start, a timeout). */
  warn?: (text: string) => void;
}

/** One kind of job and what the driver does with it. */
interface Scenario {
  name: string;
  run(ctx: ScenarioContext): Promise<void>;
}

interface ScenarioContext {
  vm: FleetVm;
  jobId: string;
  start(starter: () => Promise<LabJob>): Promise<LabJob>;
  /** Resolves with the job's state once `predicate` holds (checked now and on every transition). */
  until(predicate: (job: JobState) => boolean, what: string): Promise<JobState>;
  command(action: CommandMessage['action'], extra?: Partial<CommandMessage>): Promise<void>;
  sleep(ms: number): Promise<void>;
  holdReadyMs: number;
}

// 32 MiB at 4 MiB/s: about 8 s per job, so several overlap on every VM and each state stays visible.
const SPEED = 4 * MiB;
const DATA_MIB = 32;
const WAIT_LIMIT_MS = 180_000;

const isReady = (job: JobState): boolean => job.ready === true;
const isOver = (job: JobState): boolean => job.state === 'dismissed' || (job.state === 'concluded' && job.outcome === 'unknown');

/** Waits for ready, stays there `holdMs` (visible in the dashboard), then pivots. */
async function pivotOnceReady(ctx: ScenarioContext, holdMs: number): Promise<void> {
  await ctx.until(isReady, 'ready');
  await ctx.sleep(holdMs);
  await ctx.command('complete', { when: 'ready' });
}

/** A mirror that reaches ready, stays there a moment (visible in the dashboard), then pivots. */
const mirrorComplete: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB }));
    await pivotOnceReady(ctx, ctx.holdReadyMs);
  },
};

/** Complete asked for at once: the gateway holds it until QEMU says ready (no verb error, ever). */
const mirrorCompleteEarly: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB }));
    await ctx.command('complete', { when: 'ready' });
  },
};

const stream: Scenario = {
  name: 'stream',
  async run(ctx) {
    await ctx.start(() => startStream(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB }));
  },
};

const backup: Scenario = {
  name: 'backup',
  async run(ctx) {
    await ctx.start(() => startBackup(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB }));
  },
};

const activeCommit: Scenario = {
  name: 'commit',
  async run(ctx) {
    await ctx.start(() => startCommit(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, active: true, speed: SPEED, dataMiB: DATA_MIB }));
    await pivotOnceReady(ctx, ctx.holdReadyMs / 2);
  },
};

const commit: Scenario = {
  name: 'commit',
  async run(ctx) {
    await ctx.start(() => startCommit(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, active: false, speed: SPEED, dataMiB: DATA_MIB }));
  },
};

/** A mirror whose first write to the target fails (blkdebug), with QEMU's on-target-error policy. */
const startFaultyMirror = (ctx: ScenarioContext, onTargetError: 'report' | 'stop'): Promise<LabJob> =>
  ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB, targetFault: 'first-write', onTargetError }));

/** on-target-error=report ends the job failed. */
const mirrorFails: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await startFaultyMirror(ctx, 'report');
  },
};

/** An EIO with on-target-error=stop pauses the job (pauseReason error) until resumed. */
const mirrorErrorStop: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await startFaultyMirror(ctx, 'stop');
    await ctx.until((job) => job.pauseReason === 'error' || isReady(job), 'paused by the I/O error');
    await ctx.sleep(3000);
    await ctx.command('resume');
    await ctx.until(isReady, 'ready');
    await ctx.command('complete', { when: 'ready' });
  },
};

const mirrorCancelled: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED / 2, dataMiB: DATA_MIB }));
    await ctx.sleep(2500);
    await ctx.command('cancel', { force: true });
  },
};

const mirrorPaused: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED / 2, dataMiB: DATA_MIB }));
    await ctx.sleep(1500);
    await ctx.command('pause');
    await ctx.sleep(3000);
    await ctx.command('resume');
    await pivotOnceReady(ctx, ctx.holdReadyMs / 2);
  },
};

/** Paused while ready (standby, still ready), completed there: QEMU >= 6.0 takes it and pivots on resume. */
const mirrorStandby: Scenario = {
  name: 'mirror',
  async run(ctx) {
    await ctx.start(() => startMirror(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, speed: SPEED, dataMiB: DATA_MIB }));
    await ctx.until(isReady, 'ready');
    await ctx.command('pause');
    await ctx.until((job) => job.state === 'standby', 'standby');
    await ctx.sleep(3000);
    await ctx.command('complete', { when: 'ready' });
    await ctx.command('resume');
  },
};

/** backup sync=none copies only what the guest overwrites: it runs until cancelled. */
const backupUntilCancelled: Scenario = {
  name: 'backup',
  async run(ctx) {
    await ctx.start(() => startBackup(ctx.vm.qmp, ctx.vm.lab, { jobId: ctx.jobId, sync: 'none', dataMiB: DATA_MIB }));
    await ctx.sleep(5000);
    await ctx.command('cancel', { force: true });
  },
};

/** The rotation: the first six (two per VM on three VMs) already show most states; all twelve within a minute or so. */
const ROTATION: readonly Scenario[] = [
  mirrorComplete,
  stream,
  backup,
  mirrorFails,
  activeCommit,
  mirrorCancelled,
  mirrorPaused,
  commit,
  mirrorCompleteEarly,
  mirrorErrorStop,
  backupUntilCancelled,
  mirrorStandby,
];

export class DemoDriver {
  private readonly jobsPerVm: number;
  private readonly holdReadyMs: number;
  private readonly stopper = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private next = 0;
  private counter = 0;

  constructor(private readonly options: DriverOptions) {
    this.jobsPerVm = options.jobsPerVm ?? 2;
    this.holdReadyMs = options.holdReadyMs ?? 5000;
  }

  start(): void {
    for (const vm of this.options.vms) {
      for (let slot = 0; slot < this.jobsPerVm; slot++) this.loops.push(this.loop(vm, slot));
    }
  }

  /** Stops starting jobs and abandons waits; the jobs still running die with their daemons. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await Promise.allSettled(this.loops);
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  private async loop(vm: FleetVm, slot: number): Promise<void> {
    // Stagger the slots so the table fills row by row instead of all at once.
    await this.sleep(slot * 1200 + this.options.vms.indexOf(vm) * 400);
    while (!this.stopped) {
      const scenario = ROTATION[this.next++ % ROTATION.length]!;
      const jobId = `${scenario.name}-${++this.counter}`;
      let job: LabJob | undefined;
      try {
        await scenario.run(this.context(vm, jobId, (started) => (job = started)));
        if (job) await this.waitFor(vm, jobId, isOver, 'the end');
      } catch (error) {
        if (this.stopped) break; // the daemons go down with everything on them
        this.options.warn?.(`${vm.name}/${jobId}: ${(error as Error).message}`);
        if (job) await this.forceCancel(vm, jobId);
      }
      if (job && !this.stopped) await this.release(vm, job);
      await this.sleep(1000 + Math.random() * 1500);
    }
  }

  private context(vm: FleetVm, jobId: string, started: (job: LabJob) => void): ScenarioContext {
    return {
      vm,
      jobId,
      holdReadyMs: this.holdReadyMs,
      start: async (starter) => {
        const job = await starter();
        started(job);
        // Commands go through the engine, which learns of the job from its own monitor a moment later.
        await this.waitFor(vm, jobId, () => true, 'the job on the gateway monitor');
        return job;
      },
      until: (predicate, what) => this.waitFor(vm, jobId, predicate, what),
      command: async (action, extra = {}) => {
        if (this.stopped) throw new Error('stopped');
        const result = await this.options.control(
          { type: 'command', id: `demo-${jobId}-${action}`, vm: vm.name, job: jobId, action, ...extra },
          { principal: undefined, connectionId: 'demo-driver', signal: this.stopper.signal },
        );
        if (!result.ok && result.error.code !== 'job_ended') {
          throw new Error(`${action}: ${result.error.code}: ${result.error.message}`);
        }
      },
      sleep: (ms) => this.sleep(ms),
    };
  }

  private async waitFor(vm: FleetVm, jobId: string, predicate: (job: JobState) => boolean, what: string): Promise<JobState> {
    const current = this.options.source.job(vm.name, jobId);
    if (current && predicate(current)) return current;
    const change = await firstValueFrom(
      this.options.source.changes$.pipe(
        filter((input: StreamInput): input is Extract<StreamInput, { kind: 'transition' }> =>
          input.kind === 'transition' && input.vm === vm.name && input.job.id === jobId && predicate(input.job)),
        timeout({ first: WAIT_LIMIT_MS, with: () => { throw new Error(`no ${what} within ${WAIT_LIMIT_MS / 1000} s`); } }),
        takeUntil(fromEvent(this.stopper.signal, 'abort')),
      ),
    ).catch((error: unknown) => {
      throw this.stopped ? new Error('stopped') : error;
    });
    return change.job;
  }

  private async forceCancel(vm: FleetVm, jobId: string): Promise<void> {
    await vm.qmp.execute('job-cancel', { id: jobId }).catch(() => undefined);
    await this.waitFor(vm, jobId, isOver, 'the end after cancel').catch(() => undefined);
  }

  /** Nodes (and their image files) go once QEMU has let go of them. */
  private async release(vm: FleetVm, job: LabJob): Promise<void> {
    try {
      await releaseJobNodes(vm.lab, job);
      await vm.deleteImages(job.nodes);
    } catch (error) {
      if (!this.stopped) this.options.warn?.(`${vm.name}/${job.id}: could not release nodes: ${(error as Error).message}`);
    }
  }

  private sleep(ms: number): Promise<void> {
    const signal = this.stopper.signal;
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
