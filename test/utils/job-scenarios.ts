/**
 * The oracle for the job engine's real-QEMU scenarios.
 *
 * A raw monitor on the same qemu-storage-daemon (RawQmp, independent of src/qmp and src/jobs) records
 * QEMU's own JOB_STATUS_CHANGE sequence for a job; the engine's transitions for that job must list the
 * same states in the same order, with `null` as `dismissed`, and without internal pause blips (a pause
 * nobody asked for that QEMU undid by itself, e.g. the drain at backup start).
 *
 * Control verbs go through `JobControl`, which tells the engine (noteVerb) before QEMU hears them, as
 * the gateway's job control will, and remembers them so the oracle can tell asked-for pauses apart.
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Subscription } from 'rxjs';
import { expect } from 'vitest';
import { JobRegistry, type MonitorJobsOptions } from '../../src/jobs/index.js';
import { QmpClient } from '../../src/qmp/client.js';
import type { JobSource, JobStatusName, JobTransition, JobVerb, StreamInput } from '../../src/jobs/types.js';
import type { QmpAddress } from '../../src/qmp/types.js';
import type { QmpExecutor } from '../../src/lab/jobs.js';
import type { RawQmpEvent } from '../../src/lab/raw-qmp.js';
import { startQsd, type JobOracle, type Qsd } from '../../src/lab/qsd.js';

/**
 * Resolves with the first value of `check` other than undefined/false; re-checks every 10 ms (after the
 * previous check settled, so async checks never overlap). `what` may be a function, to describe the
 * last thing seen in the timeout error.
 */
export async function waitUntil<T>(
  what: string | (() => string),
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Every transition the engine emitted, per job id (one VM), in order. */
export class TransitionRecorder {
  readonly inputs: StreamInput[] = [];
  private readonly subscription: Subscription;

  constructor(engine: JobSource, readonly vm: string) {
    this.subscription = engine.changes$.subscribe((input) => {
      if (input.vm === vm) this.inputs.push(input);
    });
  }

  transitions(jobId: string): JobTransition[] {
    return this.inputs.filter((input): input is JobTransition => input.kind === 'transition' && input.job.id === jobId);
  }

  states(jobId: string): JobStatusName[] {
    return this.transitions(jobId).map((transition) => transition.to.state);
  }

  /** Waits until the engine has emitted a transition of `jobId` into `state`; returns it. */
  waitForState(jobId: string, state: JobStatusName, timeoutMs = 30_000): Promise<JobTransition> {
    return waitUntil(() => `engine transition of ${jobId} to ${state} (seen: ${this.states(jobId).join(' > ')})`, () =>
      this.transitions(jobId).find((transition) => transition.to.state === state),
      timeoutMs,
    );
  }

  /** The VM's monitor statuses the engine reported, in order. */
  vmStatuses(): string[] {
    return this.inputs.flatMap((input) => (input.kind === 'vm' ? [input.status] : []));
  }

  stop(): void {
    this.subscription.unsubscribe();
  }
}

/** QEMU >= 2.12 ready truth: every transition says ready exactly while the job is ready or standby. */
export function expectReadyTruth(transitions: readonly JobTransition[]): void {
  for (const transition of transitions) {
    const readyState = transition.to.state === 'ready' || transition.to.state === 'standby';
    expect(transition.to.ready, `ready flag of the transition to ${transition.to.state}`).toBe(readyState);
  }
}

const PAUSE_RETURN: Partial<Record<string, string>> = { paused: 'running', standby: 'ready' };

/**
 * What the engine must emit for a job, derived from the raw monitor's events: the JOB_STATUS_CHANGE
 * statuses with `null` as `dismissed`, minus internal pause blips. A pause is internal when nobody asked
 * for it (no `pause` verb sent by JobControl since the job's previous status) and no BLOCK_JOB_ERROR with
 * action `stop` caused it, and QEMU returned to the previous state right after.
 */
export function expectedEngineStates(events: readonly RawQmpEvent[], jobId: string, control?: JobControl): JobStatusName[] {
  const expected: JobStatusName[] = [];
  let errorStopSinceLastStatus = false;
  let lastStatusAt = 0;
  let heldInternalPause: string | undefined;
  for (const event of events) {
    const data = event.data;
    if (data.id !== jobId && data.device !== jobId) continue;
    if (event.event === 'BLOCK_JOB_ERROR' && data.action === 'stop') errorStopSinceLastStatus = true;
    if (event.event !== 'JOB_STATUS_CHANGE') continue;
    const status = String(data.status);
    if (heldInternalPause !== undefined) {
      const previous = heldInternalPause;
      heldInternalPause = undefined;
      if (PAUSE_RETURN[previous] === status) {
        lastStatusAt = event.receivedAt;
        continue; // the blip and its return both vanish
      }
      expected.push(previous as JobStatusName);
    }
    const asked = errorStopSinceLastStatus || (control?.pauseSentBetween(jobId, lastStatusAt, event.receivedAt) ?? false);
    if (PAUSE_RETURN[status] && !asked) heldInternalPause = status;
    else expected.push(status === 'null' ? 'dismissed' : (status as JobStatusName));
    errorStopSinceLastStatus = false;
    lastStatusAt = event.receivedAt;
  }
  if (heldInternalPause !== undefined) expected.push(heldInternalPause as JobStatusName);
  return expected;
}

/** The QMP command behind each verb (the job-* family; soft cancel has only block-job-cancel). */
function verbCommand(verb: JobVerb, jobId: string, extra: Record<string, unknown>): [string, Record<string, unknown>] {
  switch (verb) {
    case 'complete':
      return ['job-complete', { id: jobId }];
    case 'cancel':
      return ['block-job-cancel', { device: jobId, force: false }];
    case 'force-cancel':
      return ['job-cancel', { id: jobId }];
    case 'pause':
      return ['job-pause', { id: jobId }];
    case 'resume':
      return ['job-resume', { id: jobId }];
    case 'set-speed':
      return ['block-job-set-speed', { device: jobId, speed: extra.speed ?? 0 }];
    case 'finalize':
      return ['job-finalize', { id: jobId }];
    case 'dismiss':
      return ['job-dismiss', { id: jobId }];
  }
}

/** Verbs remembered per scenario; a scenario sends a handful. */
const MAX_REMEMBERED_VERBS = 1000;

/** Sends job verbs on a lab monitor (not the engine's), telling the engine first (as the gateway's job control does). */
export class JobControl {
  private readonly sent: { jobId: string; verb: JobVerb; at: number }[] = [];

  constructor(
    private readonly qmp: QmpExecutor,
    private readonly engine: JobRegistry | undefined,
    private readonly vm: string,
  ) {}

  async verb(jobId: string, verb: JobVerb, extra: Record<string, unknown> = {}): Promise<void> {
    this.engine?.engine(this.vm)?.noteVerb(jobId, verb);
    this.sent.push({ jobId, verb, at: Date.now() });
    if (this.sent.length > MAX_REMEMBERED_VERBS) this.sent.shift();
    const [command, args] = verbCommand(verb, jobId, extra);
    await this.qmp.execute(command, args);
  }

  /** Whether a pause for the job was sent in [fromMs, toMs] (local wall clock). */
  pauseSentBetween(jobId: string, fromMs: number, toMs: number): boolean {
    return this.sent.some((entry) => entry.jobId === jobId && entry.verb === 'pause' && entry.at >= fromMs && entry.at <= toMs);
  }
}

/**
 * A transport for the engine's QmpClient that the test can cut: `cut()` drops the current connection
 * and makes new connects fail (the client keeps retrying), `restore()` lets them through again. This is
 * "the gateway's monitor went away" without touching QEMU, which keeps running the jobs meanwhile.
 */
export class CuttableLink {
  private open = true;
  private current: Socket | undefined;

  readonly connect = (address: QmpAddress): Duplex => {
    if (address.kind !== 'unix') throw new Error('CuttableLink serves unix sockets only');
    const socket = connect({ path: this.open ? address.path : `${address.path}.cut` });
    this.current = socket;
    return socket;
  };

  cut(): void {
    this.open = false;
    this.current?.destroy();
  }

  restore(): void {
    this.open = true;
  }
}

/** One real scenario: its own daemon, the engine on monitor `gw`, the oracle on `oracle`, verbs on the helper's monitor. */
export interface Scenario {
  readonly qsd: Qsd;
  readonly oracle: JobOracle;
  readonly control: JobControl;
  readonly vm: string;
  readonly engine: JobRegistry;
  /** The engine's QMP client (its transport goes through `link`). */
  readonly client: QmpClient;
  readonly link: CuttableLink;
  readonly recorder: TransitionRecorder;
  /** What the engine must emit for `jobId`, derived from QEMU's own events (see expectedEngineStates). */
  expectedStates(jobId: string): JobStatusName[];
  /**
   * Waits until the engine's states for `jobId` equal the oracle's expectation (the engine may trail the
   * oracle's monitor by a few ms), then asserts equality (a readable diff on timeout); returns the
   * engine's transitions.
   */
  expectEngineMatchesOracle(jobId: string, timeoutMs?: number): Promise<JobTransition[]>;
  /** With SCENARIO_LOG=1, prints QEMU's and the engine's sequences for `jobId` (for the closing notes). */
  log(jobId: string): void;
  dispose(): Promise<void>;
}

export interface ScenarioOptions {
  vm?: string;
  /** Engine options (poll cadence, hold times...). */
  engine?: MonitorJobsOptions;
  /** Wraps the engine's transport (the cuttable link's connect), e.g. to hold QEMU's bytes on cue. */
  wrapConnect?: (connect: (address: QmpAddress) => Duplex) => (address: QmpAddress) => Duplex;
}

function describeKey(transition: JobTransition): string {
  const { state, outcome, pauseReason } = transition.to;
  const details = [outcome, pauseReason, transition.job.pivoted === undefined ? undefined : `pivoted=${transition.job.pivoted}`].filter(Boolean);
  return details.length > 0 ? `${state}(${details.join(', ')})` : state;
}

function logSequences(jobId: string, qemu: string[], transitions: JobTransition[]): void {
  console.log(`[scenario ${jobId}] QEMU: ${qemu.join(' > ')}\n[scenario ${jobId}] engine: ${transitions.map(describeKey).join(' > ')}`);
}

/** Starts a daemon and an engine that is connected (and has seen its first session) before it returns. */
export async function openScenario(options: ScenarioOptions = {}): Promise<Scenario> {
  const vm = options.vm ?? 'vm1';
  const qsd = await startQsd({ monitors: ['gw', 'oracle'] });
  const oracle = await qsd.oracle('oracle');
  const link = new CuttableLink();
  const client = new QmpClient({
    address: qsd.address('gw'),
    name: vm,
    connect: options.wrapConnect ? options.wrapConnect(link.connect) : link.connect,
    // Quick, bounded retries: tests cut and restore the link and restart the daemon.
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
  });
  const engine = new JobRegistry();
  const recorder = new TransitionRecorder(engine, vm);
  engine.add(vm, client, options.engine ?? {});
  client.start();
  const control = new JobControl(qsd, engine, vm);
  const expectedStates = (jobId: string): JobStatusName[] => expectedEngineStates(oracle.raw.events, jobId, control);
  const log = (jobId: string): void => {
    if (process.env.SCENARIO_LOG) logSequences(jobId, oracle.statusSequence(jobId), recorder.transitions(jobId));
  };
  const dispose = async (): Promise<void> => {
    recorder.stop();
    await engine.close();
    await client.close();
    await oracle.close();
    await qsd.dispose();
  };
  try {
    await waitUntil(`engine connected to ${qsd.address('gw')}`, () => recorder.vmStatuses().includes('connected'));
  } catch (error) {
    await dispose();
    throw error;
  }
  return {
    qsd,
    oracle,
    control,
    vm,
    engine,
    client,
    link,
    recorder,
    expectedStates,
    async expectEngineMatchesOracle(jobId, timeoutMs = 10_000) {
      const same = (): boolean => JSON.stringify(recorder.states(jobId)) === JSON.stringify(expectedStates(jobId));
      await waitUntil(`engine states of ${jobId} to equal the oracle's`, same, timeoutMs).catch(() => undefined);
      const raw = oracle.statusSequence(jobId).join(' > ');
      const detail = recorder
        .transitions(jobId)
        .map((t) => `${t.to.state}#${t.job.incarnation}/${t.source}`)
        .join(' > ');
      expect(recorder.states(jobId), `engine transitions of ${jobId} (${detail}) vs QEMU's JOB_STATUS_CHANGE (${raw})`).toEqual(
        expectedStates(jobId),
      );
      log(jobId);
      return recorder.transitions(jobId);
    },
    log,
    dispose,
  };
}
