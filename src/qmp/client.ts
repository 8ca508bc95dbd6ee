/**
 * QmpClient: one QMP monitor, kept connected.
 *
 *   idle ──start()──> connecting ──socket up──> negotiating ──qmp_capabilities ok──> ready
 *                        ^                          │ no greeting in time: busy         │ EOF, error,
 *                        │                          │ bad greeting / refused caps       │ protocol error
 *                        └──── backoff timer ── disconnected <──────────────────────────┘
 *   any state ──close()──> closed (final)
 *
 * One connection at a time (monitor-connection.ts: socket, phase timers, negotiation, routing) feeds
 * it; the client keeps what outlives a connection: the session, state and streams, the reconnect
 * policy, and the commands awaiting replies, matched by id (never by order; QEMU may write the
 * events a command causes before its reply). Everything a message triggers (state changes, the new
 * session, events) is dispatched synchronously before the next message is read, which gives
 * consumers wire order for free.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { BehaviorSubject, Subject, type Observable } from 'rxjs';
import {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpError,
  QmpOutcomeUnknownError,
  QmpTimeoutError,
  QmpTooManyPendingError,
  StateError,
} from '../errors.js';
import { formatQmpAddress, parseQmpAddress } from './address.js';
import { ReconnectBackoff, resolveReconnectPolicy } from '../backoff.js';
import { deliver } from '../deliver.js';
import { silentLogger, ThrottledLog, type Logger } from '../log.js';
import { deadlineLane } from '../deadlines.js';
import { greetingsMatch, isPlainObject } from './messages.js';
import { MAX_TIMER_MS, resolveOptions, type QmpClientOptions, type ResolvedOptions } from './client-options.js';
import { MonitorConnection, type ConnectionContext, type ConnectionHost, type EventMessage, type Loss, type Reply } from './monitor-connection.js';
import { nextCommandId, PendingCommand, PendingCommands, type CommandOwner, type SentCommand } from './pending.js';
import { waitForClose } from './transport.js';
import type {
  ExecuteOptions,
  QmpAddress,
  QmpEvent,
  QmpGreeting,
  QmpMonitor,
  QmpReply,
  QmpRunState,
  QmpSession,
} from './types.js';

export { COMMAND_ID_PREFIX } from './pending.js';

export class QmpClient implements QmpMonitor, CommandOwner, ConnectionHost {
  private sentCommands = 0;

  get commandsSent(): number {
    return this.sentCommands;
  }

  readonly name: string;
  readonly address: QmpAddress;
  private readonly addressText: string;
  private readonly options: ResolvedOptions;
  private readonly log: Logger;
  private readonly dropped: ThrottledLog;
  /** Names this client in a log line about a subscriber. */
  private readonly who: { monitor: string };
  /** Shared with each connection: names, limits, and the counters that run across connections. */
  private readonly context: ConnectionContext;

  private readonly stateSubject = new BehaviorSubject<QmpRunState>('idle');
  private readonly sessionSubject = new Subject<QmpSession>();
  private readonly eventSubject = new Subject<QmpEvent>();
  private readonly errorSubject = new Subject<QmpError>();
  readonly state$: Observable<QmpRunState> = this.stateSubject.asObservable();
  readonly sessions$: Observable<QmpSession> = this.sessionSubject.asObservable();
  readonly events$: Observable<QmpEvent> = this.eventSubject.asObservable();
  readonly errors$: Observable<QmpError> = this.errorSubject.asObservable();

  private connection: MonitorConnection | undefined;
  private currentSession: QmpSession | undefined;
  private lastSession: QmpSession | undefined;
  private sessionCount = 0;
  private readonly pending = new PendingCommands();
  /** Failed attempts and short-lived sessions since the last healthy session: the delay before the next attempt. */
  private readonly backoff: ReconnectBackoff;
  private closing: Promise<void> | undefined;

  constructor(options: QmpClientOptions) {
    this.address = typeof options.address === 'string' ? parseQmpAddress(options.address, 'address') : options.address;
    this.addressText = formatQmpAddress(this.address);
    this.name = options.name ?? this.addressText;
    this.log = options.logger ?? silentLogger;
    this.who = { monitor: this.name };
    this.dropped = new ThrottledLog(this.log);
    this.options = resolveOptions(options);
    this.backoff = new ReconnectBackoff(resolveReconnectPolicy(options.reconnect));
    this.context = { name: this.name, addressText: this.addressText, log: this.log, dropped: this.dropped, options: this.options, inboundSeq: 0, commandCount: 0 };
  }

  get state(): QmpRunState {
    return this.stateSubject.value;
  }

  /** The current session; undefined unless ready. */
  get session(): QmpSession | undefined {
    return this.currentSession;
  }

  /** The greeting of the latest negotiated session (kept across disconnects). */
  get greeting(): QmpGreeting | undefined {
    return this.lastSession?.greeting;
  }

  /** Commands awaiting a reply. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Begin connecting; the client then keeps reconnecting per the reconnect policy until close().
   * Allowed when idle, or when disconnected (connects now instead of waiting for the backoff timer).
   */
  start(): void {
    const state = this.state;
    if (state === 'closed') throw new QmpClosedError(`${this.name}: the QMP client is closed`);
    if (state !== 'idle' && state !== 'disconnected') {
      throw new StateError(`${this.name}: start() while ${state}`, state, ['idle', 'disconnected']);
    }
    this.backoff.cancel();
    this.connectNow();
  }

  /**
   * Close for good (idempotent). Pending commands reject with QmpOutcomeUnknownError (they were
   * written; QEMU may run them); state$ emits 'closed', then every stream completes. Resolves once
   * the transport is closed.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.backoff.cancel();
    const connection = this.connection;
    this.connection = undefined;
    this.currentSession = undefined;
    connection?.end();
    this.failPending((sent) => new QmpOutcomeUnknownError(sent, { cause: new QmpClosedError(`${this.name}: closed while waiting for the reply`) }));
    this.setState('closed');
    this.log.info({ monitor: this.name }, 'closed');
    this.stateSubject.complete();
    this.sessionSubject.complete();
    this.eventSubject.complete();
    this.errorSubject.complete();
    this.closing = connection ? waitForClose(connection.socket) : Promise.resolve();
    return this.closing;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, options?: ExecuteOptions): Promise<T> {
    return this.executeWithMeta<T>(command, args, options).then((reply) => reply.value);
  }

  executeWithMeta<T = unknown>(command: string, args?: Record<string, unknown>, options: ExecuteOptions = {}): Promise<QmpReply<T>> {
    if (typeof command !== 'string' || command === '') {
      return Promise.reject(new TypeError(`${this.name}: the command name must be a non-empty string, got ${JSON.stringify(command)}`));
    }
    if (args !== undefined && !isPlainObject(args)) {
      return Promise.reject(new TypeError(`${this.name}: ${command}: arguments must be an object, got ${JSON.stringify(args)}`));
    }
    const timeoutMs = options.timeoutMs ?? this.options.defaultTimeoutMs;
    if (!(timeoutMs > 0) || timeoutMs > MAX_TIMER_MS) {
      return Promise.reject(new RangeError(`${this.name}: ${command}: timeoutMs must be in (0, ${MAX_TIMER_MS}], got ${timeoutMs}`));
    }
    const sent: SentCommand = args === undefined ? { execute: command } : { execute: command, arguments: args };
    const state = this.state;
    const connection = this.connection;
    if (state === 'closed') return Promise.reject(new QmpClosedError(`${this.name}: ${command}: the QMP client is closed`));
    if (state !== 'ready' || !connection) {
      return Promise.reject(new StateError(`${this.name}: cannot execute ${command}: the monitor is ${state}, not ready`, state, ['ready']));
    }
    if (this.pending.size >= this.options.maxPendingCommands) {
      return Promise.reject(new QmpTooManyPendingError(sent, this.options.maxPendingCommands));
    }
    const id = nextCommandId(this.context);
    let text: string;
    try {
      // By hand without arguments (the idle polls): no object spread per command.
      text = args === undefined ? `{"execute":${JSON.stringify(command)},"id":"${id}"}` : JSON.stringify({ ...sent, id });
    } catch (err) {
      return Promise.reject(new TypeError(`${this.name}: ${command}: arguments are not serializable: ${(err as Error).message}`, { cause: err }));
    }
    return new Promise<QmpReply<T>>((resolve, reject) => {
      const lane = deadlineLane(timeoutMs);
      const pending = new PendingCommand(this, id, sent, timeoutMs, resolve as (reply: QmpReply<unknown>) => void, reject, lane);
      this.pending.add(pending);
      pending.handle = lane.add(pending);
      connection.write(text);
      this.sentCommands++;
    });
  }

  /** @internal The lane's verdict on a command still pending: a late reply will be dropped. */
  timedOut(command: PendingCommand): void {
    if (this.pending.get(command.id) !== command) return;
    this.pending.delete(command.id);
    this.log.warn({ monitor: this.name, id: command.id, command: command.sent.execute, timeoutMs: command.timeoutMs }, 'command timed out; a late reply will be dropped');
    command.reject(new QmpTimeoutError(command.sent, command.timeoutMs));
  }

  // ---- connection lifecycle -------------------------------------------------------------------

  private connectNow(): void {
    this.setState('connecting');
    let socket: Duplex;
    try {
      socket = this.options.connect(this.address);
    } catch (err) {
      this.logProblem({ monitor: this.name, err }, 'connect threw');
      this.emitProblem(new QmpConnectError(this.addressText, `connect failed: ${(err as Error).message}`, { cause: err }));
      this.afterLoss();
      return;
    }
    const connection = new MonitorConnection(this, this.context, socket);
    this.connection = connection;
    connection.open();
  }

  /** @internal The transport is up; the greeting is awaited. */
  connectionUp(connection: MonitorConnection): void {
    if (this.connection === connection) this.setState('negotiating');
  }

  /** @internal A connection ended (it is torn down already): fail its pending commands, then reconnect per policy. */
  connectionLost(connection: MonitorConnection, loss: Loss): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    this.currentSession = undefined;
    const fields = { monitor: this.name, pending: this.pending.size, reason: loss.message };
    if (loss.problem) this.logProblem(fields, 'connection lost');
    else this.log.info(fields, 'connection lost');
    this.failPending((sent) => new QmpOutcomeUnknownError(sent, { cause: loss.cause ?? loss.problem ?? new Error(loss.message) }));
    if (loss.problem) this.emitProblem(loss.problem);
    this.afterLoss();
  }

  private afterLoss(): void {
    if (this.state === 'closed') return;
    this.setState('disconnected');
    if (this.state !== 'disconnected') return; // a subscriber closed or restarted the client
    this.scheduleReconnect();
  }

  /**
   * A monitor that stays down must not log on every retry: the first failure of a streak at warn,
   * then a summary each time the streak doubles (2, 4, 8, ... failed attempts), the rest at debug.
   */
  private logProblem(fields: Record<string, unknown>, message: string): void {
    const streak = this.backoff.streakIfLostNow + 1;
    if (streak === 1) this.log.warn(fields, message);
    else if ((streak & (streak - 1)) === 0) this.log.warn({ ...fields, failedAttempts: streak }, 'monitor still down; retrying (logged again when the failures double)');
    else this.log.debug({ ...fields, failedAttempts: streak }, message);
  }

  private scheduleReconnect(): void {
    const delayMs = this.backoff.schedule(() => {
      if (this.state === 'disconnected') this.connectNow();
    });
    if (delayMs !== undefined) this.log.debug({ monitor: this.name, delayMs, attempt: this.backoff.streak }, 'reconnect scheduled');
  }

  // ---- inbound (wire order) ------------------------------------------------------------------

  /** @internal qmp_capabilities succeeded: a new session. */
  sessionNegotiated(connection: MonitorConnection, greeting: QmpGreeting, seq: number): void {
    const previous = this.lastSession;
    const session: QmpSession = Object.freeze({
      number: ++this.sessionCount,
      greeting,
      sameProcess: previous === undefined ? 'first' : greetingsMatch(previous.greeting, greeting) ? 'unknown' : false,
      startedAt: Date.now(),
      seq,
    });
    this.currentSession = session;
    this.lastSession = session;
    const failedBefore = this.backoff.streak;
    this.backoff.sessionUp();
    const { major, minor, micro } = greeting.version.qemu;
    this.log.info(
      {
        monitor: this.name,
        session: session.number,
        qemu: `${major}.${minor}.${micro}`,
        sameProcess: session.sameProcess,
        ...(failedBefore > 0 ? { failedAttempts: failedBefore } : {}),
      },
      'session ready',
    );
    // Ready first, so session subscribers can execute right away; both before the next message.
    this.setState('ready');
    if (this.connection === connection) deliver(this.sessionSubject, session, 'sessions$', this.log, this.who);
  }

  /** @internal An event of the negotiated session. */
  eventReceived(inbound: EventMessage, seq: number): void {
    const event: QmpEvent = {
      event: inbound.event,
      data: inbound.data,
      qemuTimestamp: inbound.qemuTimestamp,
      receivedAt: Date.now(),
      receivedMono: performance.now(),
      seq,
      session: this.currentSession!.number,
    };
    deliver(this.eventSubject, event, 'events$', this.log, this.who);
  }

  /** @internal A reply to one of our commands (qmp_capabilities' is the connection's). */
  replyReceived(reply: Reply, seq: number): void {
    const command = typeof reply.id === 'string' ? this.pending.get(reply.id) : undefined;
    if (!command) {
      this.dropped.warn({ monitor: this.name, seq, id: reply.id }, 'reply for an unknown or timed-out id dropped');
      return;
    }
    this.pending.delete(reply.id as string);
    command.cancelTimeout();
    if (reply.kind === 'error') {
      command.reject(new QmpCommandError(reply.qmpClass, reply.desc, command.sent));
    } else {
      command.resolve({ value: reply.value, seq, receivedAt: Date.now(), session: this.currentSession?.number ?? this.sessionCount });
    }
  }

  // ---- helpers --------------------------------------------------------------------------------

  private failPending(toError: (sent: SentCommand) => Error): void {
    if (this.pending.size === 0) return;
    const commands = this.pending.takeAll();
    for (const command of commands) {
      command.cancelTimeout();
      command.reject(toError(command.sent));
    }
  }

  private setState(state: QmpRunState): void {
    if (this.stateSubject.value === state || this.stateSubject.closed) return;
    this.log.debug({ monitor: this.name, from: this.stateSubject.value, to: state }, 'runstate');
    deliver(this.stateSubject, state, 'state$', this.log, this.who);
  }

  private emitProblem(error: QmpError): void {
    deliver(this.errorSubject, error, 'errors$', this.log, this.who);
  }
}
