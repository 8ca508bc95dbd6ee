/**
 * Job control: turns a `command` message into at most one accepted verb and exactly one `result`.
 *
 * The pivot cannot race: `complete` goes to QEMU only once the engine's authoritative state says the
 * job accepts it (ready; standby too on QEMU >= 6.0), never on offset == len. `when: ready` waits for
 * that on `changes$`, across monitor reconnects; `when: now` answers not_ready without calling QEMU.
 * Everything backend-specific (which command, whether it could be written now, telling the engine
 * first, what the reply means) is the source's control port (src/jobs/control-port.ts).
 *
 * One command's life:
 *
 *   authorize -> idempotency cache -> vm/job known? -> may touch? -> [complete: wait until acceptable]
 *     -> port.check (refuse before QEMU) -> port.execute -> [await concluded] -> result
 */
import type { CommandMessage, ResultFailure } from '../../generated/schema-types.js';
import type { ControlArgs, ControlPort, SendCheck, Verdict } from '../../jobs/control-port.js';
import { mayBecomeReady } from '../../jobs/qemu-rules.js';
import type { JobSource, JobState } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { validateClientMessage, wasValidated } from '../../protocol/validate.js';
import { commandDefaults } from '../../protocol/messages.js';
import { canControl, type Principal } from '../auth.js';
import { CommandBudget, isStopReason, type StopReason } from './budget.js';
import { CommandCache, type CommandCacheOptions } from './command-cache.js';
import { JobWatch } from './job-watch.js';
import { failed, succeeded, type CommandResult } from './results.js';

export interface CommandContext {
  /** undefined: no tokens file, every client may control (as every client may read). */
  principal: Principal | undefined;
  /** Scope of command ids: a repeated id on the same connection gets the same answer. */
  connectionId: string;
  /** Aborts when the client is gone: a pending command is dropped with a clear answer. */
  signal: AbortSignal;
}

export type CommandHandler = (message: CommandMessage, context: CommandContext) => Promise<CommandResult>;

export interface JobControllerOptions {
  /** Budget of a command that names none. @default the schema's (msg-command timeoutMs) */
  defaultTimeoutMs?: number;
  /** Upper bound of any command's budget. @default 86_400_000 */
  maxTimeoutMs?: number;
  /** Reply timeout of one QMP verb (capped by the command's remaining budget). @default 10_000 */
  qmpTimeoutMs?: number;
  /** A `complete` refused in standby (QEMU < 6.0) is retried at most this often. @default 20 */
  maxStandbyRetries?: number;
  /** Idempotency cache bounds. */
  cache?: Partial<CommandCacheOptions>;
}

export interface JobControllerDeps {
  source: JobSource;
  /** The source's control port (for several sources: combineSources). */
  control: ControlPort;
  logger: Logger;
  options?: JobControllerOptions;
}

export interface JobController {
  /** Answers one command message (WebSocket `command` or the HTTP mirror). Never rejects. */
  readonly handle: CommandHandler;
  /** Commands not answered yet. */
  readonly pendingCommands: number;
  /** Drops every pending command with an answer (nothing more is sent to QEMU) and refuses new ones. */
  close(): void;
}

/** What an absent field of a command means: the schema's defaults, the one home of those values. */
const COMMAND = commandDefaults();

const DEFAULTS = {
  defaultTimeoutMs: COMMAND.timeoutMs,
  maxTimeoutMs: 86_400_000,
  qmpTimeoutMs: 10_000,
  maxStandbyRetries: 20,
  cache: { maxEntries: 10_000, ttlMs: 600_000 },
} as const;

/** Longest wait for an announced job to be published: above the engine's identify and start holds (250 + 300 ms by default). */
const ANNOUNCED_WAIT_MS = 2_000;
/** Longest wait for a VM's first reconcile before a job it does not list counts as unknown. */
const SETTLE_WAIT_MS = 10_000;

/** How often a waiting complete re-checks facts that change without a transition (stale, monitor up). */
const RECHECK_MS = 250;

/** One command in flight. */
interface Run {
  message: CommandMessage;
  context: CommandContext;
  watch: JobWatch;
  budget: CommandBudget;
  /** QEMU accepted the verb; only the wait for the job's end (await: concluded) may remain. */
  accepted: boolean;
}

export function makeJobController(deps: JobControllerDeps): JobController {
  return new Controller(deps.source, deps.control, deps.logger, deps.options ?? {});
}

class Controller implements JobController {
  private readonly options: Required<Omit<JobControllerOptions, 'cache'>>;
  private readonly cache: CommandCache<CommandResult>;
  private readonly shutdown = new AbortController();
  /** Answers repeats must not see: given without acting, so a retry is worth running. */
  private readonly uncached = new WeakSet<CommandResult>();

  constructor(
    private readonly source: JobSource,
    private readonly control: ControlPort,
    private readonly logger: Logger,
    options: JobControllerOptions,
  ) {
    this.options = {
      defaultTimeoutMs: options.defaultTimeoutMs ?? DEFAULTS.defaultTimeoutMs,
      maxTimeoutMs: options.maxTimeoutMs ?? DEFAULTS.maxTimeoutMs,
      qmpTimeoutMs: options.qmpTimeoutMs ?? DEFAULTS.qmpTimeoutMs,
      maxStandbyRetries: options.maxStandbyRetries ?? DEFAULTS.maxStandbyRetries,
    };
    this.cache = new CommandCache({ ...DEFAULTS.cache, ...options.cache });
  }

  readonly handle: CommandHandler = (message, context) => {
    const refusal = authorize(message, context.principal) ?? validate(message);
    if (refusal) {
      this.logger.info({ ...who(message, context), ok: false, code: refusal.error.code }, 'job command refused');
      return Promise.resolve(refusal);
    }
    if (this.shutdown.signal.aborted) {
      return Promise.resolve(failed(message.id, 'internal', 'the gateway is shutting down; nothing was sent to QEMU'));
    }
    const key = `${context.connectionId}\u0000${message.id}`;
    const fingerprint = fingerprintOf(message);
    const cached = this.cache.lookup(key, fingerprint);
    if (cached.kind === 'hit') return cached.answer;
    if (cached.kind === 'conflict') {
      return Promise.resolve(
        failed(message.id, 'invalid_message', `command id '${message.id}' was already used on this connection for a different command`, {
          details: [{ path: '/id', message: 'reuse an id only to repeat the identical command' }],
        }),
      );
    }
    const answer = this.cache.add(key, fingerprint, () => this.run(message, context), (result) => !this.uncached.has(result));
    return (
      answer ??
      Promise.resolve(failed(message.id, 'too_many_commands', `${this.cache.pending} commands are pending; try again when some have been answered`))
    );
  };

  get pendingCommands(): number {
    return this.cache.pending;
  }

  close(): void {
    this.shutdown.abort('shutdown' satisfies StopReason);
  }

  private async run(message: CommandMessage, context: CommandContext): Promise<CommandResult> {
    let result: CommandResult;
    try {
      result = await this.runChecked(message, context);
    } catch (error) {
      this.logger.error({ err: error, ...who(message, context) }, 'job command failed unexpectedly');
      result = failed(message.id, 'internal', `internal error while handling the command: ${(error as Error).message}`);
    }
    this.logger.info(
      { ...who(message, context), ok: result.ok, ...(result.ok ? { state: result.job.state } : { code: result.error.code }) },
      'job command answered',
    );
    return result;
  }

  private async runChecked(message: CommandMessage, context: CommandContext): Promise<CommandResult> {
    if (!this.source.vms().includes(message.vm)) return failed(message.id, 'unknown_vm', `no VM named '${message.vm}'`);
    // A job QEMU announced a moment ago may still be held by the engine (its type unknown yet):
    // wait for it rather than refuse a pivot asked for right after the start.
    const waitMs = Math.min(ANNOUNCED_WAIT_MS, message.timeoutMs ?? ANNOUNCED_WAIT_MS);
    let watch = await JobWatch.whenPublished(this.source, message.vm, message.job, context.signal, waitMs);
    if (watch === undefined && this.source.settle) {
      // The client may have started the job on its own monitor a moment ago, ahead of our events;
      // or the VM is not reconciled yet (a gateway just started), and its job list proves nothing.
      await this.source.settle(message.vm, Math.min(SETTLE_WAIT_MS, message.timeoutMs ?? SETTLE_WAIT_MS));
      watch = await JobWatch.whenPublished(this.source, message.vm, message.job, context.signal, waitMs);
    }
    if (watch === undefined) return failed(message.id, 'unknown_job', `VM '${message.vm}' has no job '${message.job}'`);
    const touch = this.control.mayTouch(message.vm, watch.job);
    if (!touch.ok) {
      watch.close();
      return failed(message.id, 'not_supported', `${touch.why}; nothing was sent`, { job: watch.latest() });
    }
    const timeoutMs = Math.min(message.timeoutMs ?? this.options.defaultTimeoutMs, this.options.maxTimeoutMs);
    const budget = new CommandBudget(timeoutMs, context.signal, this.shutdown.signal);
    const run: Run = { message, context, watch, budget, accepted: false };
    try {
      return await (message.action === 'complete' ? this.complete(run) : this.applyVerb(run));
    } catch (reason) {
      if (isStopReason(reason)) return this.stopped(run, reason);
      throw reason;
    } finally {
      budget.dispose();
      watch.close();
    }
  }

  /** Every verb but complete: judged on the state as it is now, sent at once. */
  private async applyVerb(run: Run): Promise<CommandResult> {
    const { message, watch } = run;
    const job = watch.latest();
    const check = this.control.check(message.vm, job, message.action, argsOf(message));
    if (!check.ok) return this.refuse(run, check);
    return this.answerSent(run, await this.send(run, job));
  }

  /**
   * complete: sent only while the engine says QEMU accepts it. `when: ready` waits for that moment
   * (and waits again after a standby refusal on QEMU < 6.0, or when the monitor was down).
   */
  private async complete(run: Run): Promise<CommandResult> {
    const { message, watch, budget } = run;
    const waitForReady = (message.when ?? COMMAND.when) === 'ready';
    const check = (job: JobState): SendCheck => this.control.check(message.vm, job, 'complete', {});
    const worthALook = (job: JobState, ended: boolean): boolean => {
      if (ended || !mayBecomeReady(job.state)) return true;
      const verdict = check(job);
      return verdict.ok || verdict.reason === 'not-supported';
    };
    const endedAtArrival = watch.ended;
    let standbyRefusals = 0;
    let holdOffMs: number | undefined;
    for (;;) {
      if (holdOffMs !== undefined) {
        await watch.until(worthALook, budget.signal, { holdOffMs, recheckMs: RECHECK_MS });
        holdOffMs = undefined;
      }
      const job = watch.latest();
      if (watch.ended) return this.jobEnded(run, !endedAtArrival);
      const verdict = check(job);
      if (verdict.ok) {
        const sent = await this.send(run, job);
        const standbyRefusal = sent.kind === 'refused' && sent.transient;
        const retry = waitForReady && ((standbyRefusal && standbyRefusals < this.options.maxStandbyRetries) || sent.kind === 'not-sent');
        if (!retry) return this.answerSent(run, sent);
        // QEMU did nothing. A standby blip may be too short for the engine to publish, so the retry
        // waits for the next change or a growing pause, whichever comes first.
        holdOffMs = standbyRefusal ? Math.min(50 * 2 ** standbyRefusals++, 1_000) : RECHECK_MS;
        continue;
      }
      if (verdict.reason === 'not-supported') return this.refuse(run, verdict);
      if (!mayBecomeReady(job.state)) return this.refuseVerb(run, `job '${job.id}' is ${job.state} and can no longer become ready`);
      if (!waitForReady) {
        if (verdict.reason === 'disconnected') return this.disconnected(run, verdict.why);
        return failed(message.id, 'not_ready', `job '${job.id}' is ${job.state} (ready: ${String(job.ready)}); nothing was sent (when: now)`, {
          job,
        });
      }
      // recheck: after a reconnect, `stale` clears when the reconcile confirms the state, with no transition.
      await watch.until(worthALook, budget.signal, { recheckMs: RECHECK_MS });
    }
  }

  /** Has the port write the verb (it tells the engine first); logs who sent what and what the backend said. */
  private async send(run: Run, job: JobState): Promise<Verdict> {
    const { message, context, budget } = run;
    const timeoutMs = Math.min(this.options.qmpTimeoutMs, budget.remainingMs());
    const sent = await this.control.execute(message.vm, job, message.action, argsOf(message), { timeoutMs });
    const reply = sent.kind === 'accepted' ? 'return' : sent.kind === 'refused' ? sent.refusal : sent.why;
    const written = sent.kind !== 'not-sent' && sent.kind !== 'busy';
    this.logger.info(
      { ...who(message, context), ...(sent.wire ? { qmp: sent.wire.command, arguments: sent.wire.arguments } : {}), reply },
      written ? 'job verb sent' : 'job verb not sent',
    );
    return sent;
  }

  private async answerSent(run: Run, sent: Verdict): Promise<CommandResult> {
    const { message, watch } = run;
    switch (sent.kind) {
      case 'accepted':
        run.accepted = true;
        if ((message.await ?? COMMAND.await) === 'accepted') return succeeded(message.id, watch.latest());
        await watch.until((_job, ended) => ended, run.budget.signal);
        return succeeded(message.id, watch.final());
      case 'refused':
        return failed(message.id, 'qmp_error', `QEMU refused ${message.action}: ${sent.refusal.desc}`, { job: watch.latest(), qmp: sent.refusal });
      case 'not-sent':
        return this.disconnected(run);
      case 'busy':
        return failed(message.id, 'too_many_commands', `${sent.why}; nothing was sent`, { job: watch.latest() });
      case 'outcome-unknown':
        return failed(
          message.id,
          'outcome_unknown',
          `${sent.why}: QEMU may or may not have run ${message.action}; the job's state after the reconcile shows what happened`,
          { job: watch.latest() },
        );
    }
  }

  /** The budget ran out, the client left, or the gateway is closing. */
  private stopped(run: Run, reason: StopReason): CommandResult {
    const { message, watch, budget } = run;
    const job = watch.latest();
    if (run.accepted) {
      // Only the wait for the job's end is cut short.
      if (reason === 'timeout') {
        return failed(message.id, 'timeout', `${message.action} was accepted, but the job had not concluded within ${budget.timeoutMs} ms`, { job });
      }
      return succeeded(message.id, job);
    }
    const nothingSent = 'nothing was sent to QEMU';
    let result: CommandResult;
    if (reason === 'timeout') {
      result = failed(message.id, 'timeout', `job '${job.id}' did not become ready within ${budget.timeoutMs} ms (it is ${job.state}); ${nothingSent}`, {
        job,
      });
    } else if (reason === 'client-gone') {
      result = failed(message.id, 'not_ready', `dropped: the client went away before job '${job.id}' became ready; ${nothingSent}`, { job });
    } else {
      result = failed(message.id, 'internal', `dropped: the gateway is shutting down; ${nothingSent}`, { job });
    }
    // Nothing happened: a retry of this id should run, not replay the drop.
    if (reason !== 'timeout') this.uncached.add(result);
    return result;
  }

  /** The job is over (concluded, dismissed, or replaced by a new incarnation of its id). */
  private jobEnded(run: Run, endedWhileWaiting: boolean): CommandResult {
    const job = run.watch.job;
    const when = endedWhileWaiting ? 'ended before it became ready' : 'has ended';
    return failed(run.message.id, 'job_ended', `job '${job.id}' ${when} (outcome: ${job.outcome ?? 'unknown'}); ${run.message.action} was not sent`, {
      job,
    });
  }

  /** The port said no before anything was written. */
  private refuse(run: Run, check: Exclude<SendCheck, { ok: true }>): CommandResult {
    switch (check.reason) {
      case 'not-supported':
        return failed(run.message.id, 'not_supported', `${check.why}; nothing was sent`, { job: run.watch.latest() });
      case 'disconnected':
        return this.disconnected(run, check.why);
      case 'not-allowed':
        return this.refuseVerb(run, check.why);
    }
  }

  private refuseVerb(run: Run, reason: string): CommandResult {
    if (run.watch.ended) return this.jobEnded(run, false);
    return failed(run.message.id, 'verb_not_allowed', `${reason}; nothing was sent to QEMU`, { job: run.watch.latest() });
  }

  /** `why` is the port's account (e.g. "the monitor of VM 'vm1' is not connected"); asked afresh when absent. */
  private disconnected(run: Run, why?: string): CommandResult {
    const { message, watch } = run;
    const check = why === undefined ? this.control.check(message.vm, watch.latest(), message.action, argsOf(message)) : undefined;
    const account = why ?? (check && !check.ok && check.reason === 'disconnected' ? check.why : `VM '${message.vm}' is not connected`);
    return failed(message.id, 'vm_disconnected', `${account}; ${message.action} was not sent`, { job: watch.latest() });
  }
}

function argsOf(message: CommandMessage): ControlArgs {
  return {
    ...(message.force !== undefined ? { force: message.force } : {}),
    ...(message.speed !== undefined ? { speed: message.speed } : {}),
  };
}

/** Read-only tokens and tokens for other VMs are refused before anything else (no VM probing). */
export function authorize(message: CommandMessage, principal: Principal | undefined): ResultFailure | undefined {
  if (principal === undefined || canControl(principal, message.vm)) return undefined;
  const why = principal.scopes.has('control') ? `may not control VM '${message.vm}'` : 'has no control scope (read-only)';
  return failed(message.id, 'forbidden', `token '${principal.name}' ${why}`);
}

/**
 * A command that reaches the handler without passing a parser (the demo's driver, a fleet host's
 * stream, a library caller) is checked against msg-command.schema.json, its single source, cross-field
 * rules included; one the WebSocket or HTTP parser validated is not checked twice.
 */
function validate(message: CommandMessage): ResultFailure | undefined {
  if (wasValidated(message)) return undefined;
  const checked = validateClientMessage(message);
  if (checked.ok) return undefined;
  return failed(message.id, 'invalid_message', checked.error.message, { details: checked.error.details });
}

/** What makes two commands with the same id the same command (defaults filled in). */
function fingerprintOf(message: CommandMessage): string {
  const { vm, job, action, force, speed, when, timeoutMs } = message;
  return JSON.stringify([vm, job, action, force ?? COMMAND.force, speed ?? null, when ?? null, timeoutMs ?? null, message.await ?? COMMAND.await]);
}

/** Who asked for what, for the log. Never a token: only the principal's name. */
function who(message: CommandMessage, context: CommandContext): Record<string, unknown> {
  return {
    vm: message.vm,
    job: message.job,
    action: message.action,
    commandId: message.id,
    connectionId: context.connectionId,
    principal: context.principal?.name ?? 'anonymous',
    ...(message.action === 'cancel' ? { force: message.force ?? COMMAND.force } : {}),
    ...(message.action === 'set-speed' ? { speed: message.speed } : {}),
    ...(message.action === 'complete' ? { when: message.when ?? COMMAND.when } : {}),
  };
}
