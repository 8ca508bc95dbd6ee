/**
 * QmpClient: one QMP monitor, kept connected.
 *
 *   idle ──start()──> connecting ──socket up──> negotiating ──qmp_capabilities ok──> ready
 *                        ^                          │ no greeting in time: busy         │ EOF, error,
 *                        │                          │ bad greeting / refused caps       │ protocol error
 *                        └──── backoff timer ── disconnected <──────────────────────────┘
 *   any state ──close()──> closed (final)
 *
 * Inbound bytes go through the JSON framer; each message gets the next `seq` and is routed by a
 * light peek: greeting, event, or a reply matched to its command by id (never by order; QEMU may
 * write the events a command causes before its reply). Everything a message triggers (state
 * changes, the new session, events) is dispatched synchronously before the next message is read,
 * which gives consumers wire order for free.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { BehaviorSubject, Subject, type Observable } from 'rxjs';
import {
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpError,
  QmpMonitorBusyError,
  QmpOutcomeUnknownError,
  QmpProtocolError,
  QmpTimeoutError,
  QmpTooManyPendingError,
  StateError,
} from '../errors.js';
import { formatQmpAddress, parseQmpAddress } from './address.js';
import { ReconnectBackoff, resolveReconnectPolicy } from '../backoff.js';
import { JsonObjectFramer, evidence, type FramedMessage } from './framing.js';
import { debugEnabled, silentLogger, ThrottledLog, type Logger } from '../log.js';
import { deadlineLane } from '../deadlines.js';
import { classifyMessage, greetingsMatch, isPlainObject, type InboundMessage } from './messages.js';
import { MAX_TIMER_MS, resolveOptions, type QmpClientOptions, type ResolvedOptions } from './client-options.js';
import { PendingCommand, PendingCommands, type CommandOwner, type SentCommand } from './pending.js';
import { READ_BURST_BYTES, resetBurstAfterTurn, waitForClose, type Connection } from './transport.js';
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

/** Ids of our commands; callers cannot collide with them because they never choose ids. */
export const COMMAND_ID_PREFIX = '__bjg#';

/** Why a connection ended: `problem` goes to errors$ (non-fatal news); `cause` to pending commands. */
interface Loss {
  message: string;
  problem?: QmpError;
  cause?: unknown;
}

export class QmpClient implements QmpMonitor, CommandOwner {
  private sentCommands = 0;

  get commandsSent(): number {
    return this.sentCommands;
  }

  readonly name: string;
  readonly address: QmpAddress;
  private readonly addressText: string;
  private readonly options: ResolvedOptions;
  private readonly log: Logger;
  /** What the peer sends that we drop (unknown messages, replies to ids never sent): one line a minute per kind. */
  private readonly dropped: ThrottledLog;

  private readonly stateSubject = new BehaviorSubject<QmpRunState>('idle');
  private readonly sessionSubject = new Subject<QmpSession>();
  private readonly eventSubject = new Subject<QmpEvent>();
  private readonly errorSubject = new Subject<QmpError>();
  readonly state$: Observable<QmpRunState> = this.stateSubject.asObservable();
  readonly sessions$: Observable<QmpSession> = this.sessionSubject.asObservable();
  readonly events$: Observable<QmpEvent> = this.eventSubject.asObservable();
  readonly errors$: Observable<QmpError> = this.errorSubject.asObservable();

  private connection: Connection | undefined;
  private currentSession: QmpSession | undefined;
  private lastSession: QmpSession | undefined;
  private sessionCount = 0;
  private inboundSeq = 0;
  private commandCount = 0;
  private readonly pending = new PendingCommands();
  /** Failed attempts and short-lived sessions since the last healthy session: the delay before the next attempt. */
  private readonly backoff: ReconnectBackoff;
  private closing: Promise<void> | undefined;

  constructor(options: QmpClientOptions) {
    this.address = typeof options.address === 'string' ? parseQmpAddress(options.address, 'address') : options.address;
    this.addressText = formatQmpAddress(this.address);
    this.name = options.name ?? this.addressText;
    this.log = options.logger ?? silentLogger;
    this.dropped = new ThrottledLog(this.log);
    this.options = resolveOptions(options);
    this.backoff = new ReconnectBackoff(resolveReconnectPolicy(options.reconnect));
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
    if (connection) this.teardown(connection);
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
    const id = this.nextCommandId();
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
      this.write(connection, text);
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
    const connection: Connection = {
      socket,
      framer: new JsonObjectFramer(
        (message, text) => this.onMessage(connection, message, text),
        (error) => this.lose(connection, { message: error.message, problem: error, cause: error }),
        { maxMessageBytes: this.options.maxMessageBytes },
      ),
      phaseTimer: undefined,
      greeting: undefined,
      capabilitiesId: undefined,
      burstBytes: 0,
    };
    this.connection = connection;
    socket.on('data', (chunk: Buffer) => {
      if (this.connection !== connection) return;
      // The count is per turn: the first read of a turn has it reset at the turn's end.
      if (connection.burstBytes === 0) resetBurstAfterTurn(connection);
      connection.burstBytes += chunk.length;
      connection.framer.push(chunk);
      if (connection.burstBytes >= READ_BURST_BYTES && this.connection === connection) this.waitATurn(connection);
    });
    socket.on('error', (err: Error) => this.onTransportError(connection, err));
    socket.on('end', () => this.onTransportEnd(connection));
    socket.on('close', () => this.onTransportEnd(connection));

    if (socket instanceof net.Socket && socket.connecting) {
      connection.phaseTimer = setTimeout(() => {
        const error = new QmpConnectError(this.addressText, `connect timed out after ${this.options.connectTimeoutMs} ms`);
        this.lose(connection, { message: error.message, problem: error });
      }, this.options.connectTimeoutMs);
      socket.once('connect', () => this.onTransportUp(connection));
    } else {
      this.onTransportUp(connection);
    }
  }

  /** Stops reading until the event loop has turned once, so others get their share of it. */
  private waitATurn(connection: Connection): void {
    connection.socket.pause();
    setImmediate(() => {
      if (this.connection === connection) connection.socket.resume();
    });
  }

  private onTransportUp(connection: Connection): void {
    if (this.connection !== connection) return;
    clearTimeout(connection.phaseTimer);
    this.log.debug({ monitor: this.name, address: this.addressText }, 'connected; waiting for the greeting');
    this.setState('negotiating');
    if (this.connection !== connection) return; // a state$ subscriber closed the client
    const waitedMs = this.options.greetingTimeoutMs;
    connection.phaseTimer = setTimeout(() => {
      const error = new QmpMonitorBusyError(this.addressText, waitedMs);
      this.lose(connection, { message: error.message, problem: error });
    }, waitedMs);
  }

  private onTransportError(connection: Connection, err: Error): void {
    if (this.connection !== connection) return;
    if (this.state === 'ready') {
      const error = new QmpDisconnectedError(this.addressText, `transport error: ${err.message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    } else {
      const error = new QmpConnectError(this.addressText, `${this.state === 'connecting' ? 'connect' : 'negotiation'} failed: ${err.message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    }
  }

  private onTransportEnd(connection: Connection): void {
    if (this.connection !== connection) return;
    connection.framer.end(); // reports a message cut short by EOF (in the log), harmless otherwise
    if (this.connection !== connection) return;
    if (this.state === 'ready') {
      // Also a clean close (QEMU exited): the VM's `disconnected` says why, with a code.
      const error = new QmpDisconnectedError(this.addressText, 'the monitor closed the connection (EOF)');
      this.lose(connection, { message: error.message, problem: error });
    } else {
      const phase = connection.greeting ? 'before negotiation completed' : 'before the greeting';
      const error = new QmpConnectError(this.addressText, `the monitor closed the connection ${phase}`);
      this.lose(connection, { message: error.message, problem: error });
    }
  }

  /** End a connection (idempotent per connection), fail its pending commands, then reconnect per policy. */
  private lose(connection: Connection, loss: Loss): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    this.currentSession = undefined;
    this.teardown(connection);
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

  private teardown(connection: Connection): void {
    clearTimeout(connection.phaseTimer);
    connection.framer.reset();
    connection.socket.destroy();
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

  // ---- inbound --------------------------------------------------------------------------------

  private onMessage(connection: Connection, message: FramedMessage, text: string): void {
    const seq = ++this.inboundSeq;
    if (debugEnabled(this.log)) this.log.debug({ monitor: this.name, seq, qmp: text }, '<--');
    let inbound: InboundMessage;
    try {
      inbound = classifyMessage(message, text);
    } catch (err) {
      this.lose(connection, { message: (err as Error).message, problem: err as QmpProtocolError, cause: err });
      return;
    }
    switch (inbound.kind) {
      case 'greeting':
        return this.onGreeting(connection, inbound.greeting, text);
      case 'event':
        return this.onEvent(inbound, seq);
      case 'return':
      case 'error':
        return this.onReply(connection, inbound, seq, text);
      case 'unknown':
        this.dropped.warn({ monitor: this.name, seq, qmp: evidence(text) }, 'unrecognized message dropped');
    }
  }

  private onGreeting(connection: Connection, greeting: QmpGreeting, text: string): void {
    if (connection.greeting || this.state !== 'negotiating') {
      const error = new QmpProtocolError('unexpected second greeting', evidence(text));
      this.lose(connection, { message: error.message, problem: error });
      return;
    }
    clearTimeout(connection.phaseTimer);
    connection.greeting = greeting;
    const id = this.nextCommandId();
    connection.capabilitiesId = id;
    const timeoutMs = this.options.negotiateTimeoutMs;
    connection.phaseTimer = setTimeout(() => {
      const error = new QmpConnectError(this.addressText, `no reply to qmp_capabilities within ${timeoutMs} ms`);
      this.lose(connection, { message: error.message, problem: error });
    }, timeoutMs);
    // No capabilities enabled: `oob` buys nothing here (no job command is allow-oob) and would
    // change QEMU's queueing of in-band commands.
    this.write(connection, JSON.stringify({ execute: 'qmp_capabilities', id }));
  }

  private onCapabilitiesReply(connection: Connection, reply: InboundMessage & { kind: 'return' | 'error' }, seq: number): void {
    clearTimeout(connection.phaseTimer);
    connection.phaseTimer = undefined;
    connection.capabilitiesId = undefined;
    if (reply.kind === 'error') {
      const refusal = new QmpCommandError(reply.qmpClass, reply.desc, { execute: 'qmp_capabilities' });
      const error = new QmpConnectError(this.addressText, `negotiation refused: ${refusal.message}`, { cause: refusal });
      this.lose(connection, { message: error.message, problem: error });
      return;
    }
    const greeting = connection.greeting!;
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
    if (this.connection === connection) this.dispatch(this.sessionSubject, session, 'sessions$');
  }

  private onEvent(inbound: InboundMessage & { kind: 'event' }, seq: number): void {
    const session = this.currentSession;
    if (!session) {
      // QEMU sends no events before negotiation (monitor.c); a peer that does is ignored, not trusted.
      this.dropped.warn({ monitor: this.name, seq, event: inbound.event }, 'event before negotiation dropped');
      return;
    }
    const event: QmpEvent = {
      event: inbound.event,
      data: inbound.data,
      qemuTimestamp: inbound.qemuTimestamp,
      receivedAt: Date.now(),
      receivedMono: performance.now(),
      seq,
      session: session.number,
    };
    this.dispatch(this.eventSubject, event, 'events$');
  }

  private onReply(connection: Connection, reply: InboundMessage & { kind: 'return' | 'error' }, seq: number, text: string): void {
    if (reply.kind === 'error' && !reply.hasId) {
      // qmp-spec 2.4.2: QEMU could not even parse a request. We never send one it cannot parse,
      // so the two sides disagree about the stream: fatal, as in qemu.qmp.
      const error = new QmpProtocolError(`id-less error reply: ${reply.qmpClass}: ${reply.desc}`, evidence(text));
      this.lose(connection, { message: error.message, problem: error });
      return;
    }
    if (connection.capabilitiesId !== undefined && reply.id === connection.capabilitiesId) {
      this.onCapabilitiesReply(connection, reply, seq);
      return;
    }
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

  private write(connection: Connection, text: string): void {
    if (debugEnabled(this.log)) this.log.debug({ monitor: this.name, qmp: text }, '-->');
    connection.socket.write(`${text}\n`);
  }

  private nextCommandId(): string {
    return `${COMMAND_ID_PREFIX}${++this.commandCount}`;
  }

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
    this.dispatch(this.stateSubject, state, 'state$');
  }

  private emitProblem(error: QmpError): void {
    this.dispatch(this.errorSubject, error, 'errors$');
  }

  /**
   * Deliver to subscribers without letting them break the reader. RxJS already isolates a plain
   * subscriber's exception (it is reported via config.onUnhandledError); this also covers
   * synchronous error-handling setups.
   */
  private dispatch<T>(subject: Subject<T>, value: T, stream: string): void {
    try {
      subject.next(value);
    } catch (err) {
      this.log.error({ monitor: this.name, stream, err }, 'a subscriber threw; ignored');
    }
  }
}
