/**
 * LibvirtClient: one connection to libvirtd over its RPC protocol, kept open.
 *
 *   idle ──start()──> connecting ──socket up──> negotiating ──────────────────────────> ready
 *                        ^            auth list, connect open, keepalive, versions,      │ EOF, error, protocol
 *                        │            re-register every watch                            │ error, dead keepalive
 *                        └──── backoff timer ── disconnected <───────────────────────────┘
 *   any state ──close()──> closed (final)
 *
 * Inbound bytes go through the length framer; each message gets the next `seq` and is routed by
 * its header: a reply to the call with its serial (never by order), an event to its watch by
 * callback id, a keepalive PING answered at once. Everything a message triggers is dispatched
 * synchronously before the next message is read, which gives consumers wire order.
 *
 * What is fatal for the connection (drop, backoff, new session, consumers resync): a bad length
 * word, a bad header, a reply to a serial never sent, an event body that does not decode (an event
 * was lost). A reply body that does not decode fails only its call: the stream is still aligned.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { BehaviorSubject, Subject, type Observable } from 'rxjs';
import { ReconnectBackoff } from '../backoff.js';
import {
  LibvirtAuthError,
  LibvirtClosedError,
  LibvirtConnectError,
  LibvirtError,
  LibvirtKeepaliveError,
  LibvirtOutcomeUnknownError,
  LibvirtProtocolError,
  LibvirtRemoteError,
  LibvirtTimeoutError,
  LibvirtTooManyPendingError,
  StateError,
} from '../errors.js';
import type { Logger } from '../log.js';
import { specs, type CallSpec } from './calls.js';
import * as codec from './codec.js';
import * as c from './constants.js';
import { hexEvidence, RpcFramer } from './framing.js';
import { decodeEvent, type CallbackSpace, type DecodedEvent } from './events.js';
import { HeldEvents, type EventStamp } from './held-events.js';
import { KeepaliveTimer } from './keepalive.js';
import { classifyHeader } from './messages.js';
import { negotiate, unpackVersion } from './negotiate.js';
import { MAX_TIMER_MS, resolveClientOptions, type ResolvedClientOptions } from './options.js';
import { WatchRegistry, type Watch } from './watches.js';
import type {
  BlockJobAbortFlags,
  BlockJobInfo,
  DomainEventId,
  DomainInfo,
  DomainRef,
  DomainWatchOptions,
  DomainXmlFlags,
  LibvirtCallOptions,
  LibvirtClientOptions,
  LibvirtConnection,
  LibvirtDomainEvent,
  LibvirtEventWatch,
  LibvirtMonitorEvent,
  LibvirtRunState,
  LibvirtSession,
  LibvirtVersion,
  MonitorWatchOptions,
} from './types.js';
import { XdrError } from './xdr.js';

/** How long close() waits for libvirtd to acknowledge connect close before dropping the socket. */
const CLOSE_GRACE_MS = 1_000;

interface PendingCall {
  readonly spec: CallSpec<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface Connection {
  readonly socket: Duplex;
  readonly framer: RpcFramer;
  connectTimer: NodeJS.Timeout | undefined;
  keepalive: KeepaliveTimer | undefined;
  /** Serials are per connection; 0 is never used for a call. */
  serial: number;
  readonly pending: Map<number, PendingCall>;
  readonly held: HeldEvents;
}

interface Loss {
  message: string;
  problem?: LibvirtError;
  cause?: unknown;
}

const nothing = (): void => {};

export class LibvirtClient implements LibvirtConnection {
  readonly name: string;
  readonly uri: string;
  readonly readOnly: boolean;
  readonly socketPath: string;
  private readonly options: ResolvedClientOptions;
  private readonly log: Logger;

  private readonly stateSubject = new BehaviorSubject<LibvirtRunState>('idle');
  private readonly sessionSubject = new Subject<LibvirtSession>();
  private readonly domainEventSubject = new Subject<LibvirtDomainEvent>();
  private readonly monitorEventSubject = new Subject<LibvirtMonitorEvent>();
  private readonly errorSubject = new Subject<LibvirtError>();
  readonly state$: Observable<LibvirtRunState> = this.stateSubject.asObservable();
  readonly sessions$: Observable<LibvirtSession> = this.sessionSubject.asObservable();
  readonly domainEvents$: Observable<LibvirtDomainEvent> = this.domainEventSubject.asObservable();
  readonly monitorEvents$: Observable<LibvirtMonitorEvent> = this.monitorEventSubject.asObservable();
  readonly errors$: Observable<LibvirtError> = this.errorSubject.asObservable();

  private connection: Connection | undefined;
  private currentSession: LibvirtSession | undefined;
  private sessionCount = 0;
  private inboundSeq = 0;
  private sentCalls = 0;
  /** Failed attempts and short-lived sessions since the last healthy one: the next delay. */
  private readonly backoff: ReconnectBackoff;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private readonly watches: WatchRegistry;

  constructor(options: LibvirtClientOptions = {}) {
    this.options = resolveClientOptions(options);
    this.backoff = new ReconnectBackoff(this.options.reconnect);
    ({ name: this.name, uri: this.uri, readOnly: this.readOnly, socketPath: this.socketPath, log: this.log } = this.options);
    this.watches = new WatchRegistry({
      register: (watch) => this.registerWatch(watch),
      deregister: (watch, callbackId) => this.deregisterWatch(watch, callbackId),
      isReady: () => this.state === 'ready',
      session: () => this.currentSession?.number,
      problem: (error) => this.emitProblem(error),
      registered: (space, callbackId, watch) => this.releaseHeld(space, callbackId, watch),
      settled: () => this.dropHeld(),
      log: this.log,
      name: this.name,
    });
  }

  get state(): LibvirtRunState {
    return this.stateSubject.value;
  }

  get session(): LibvirtSession | undefined {
    return this.currentSession;
  }

  /** Calls written to libvirtd so far, over all sessions (negotiation included), for metrics. */
  get callsSent(): number {
    return this.sentCalls;
  }

  /** Calls awaiting a reply on the current connection. */
  get pendingCount(): number {
    return this.connection?.pending.size ?? 0;
  }

  start(): void {
    const state = this.state;
    if (state === 'closed') throw new LibvirtClosedError(`${this.name}: the libvirt client is closed`);
    if (state !== 'idle' && state !== 'disconnected') {
      throw new StateError(`${this.name}: start() while ${state}`, state, ['idle', 'disconnected']);
    }
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.connectNow();
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    clearTimeout(this.reconnectTimer);
    const connection = this.connection;
    const wasReady = this.state === 'ready';
    this.setState('closed');
    this.closing = (async () => {
      if (connection && wasReady) {
        // Tell libvirtd we leave (it frees our callbacks at once); do not wait long for a sick daemon.
        await this.send(connection, specs.connectClose(), CLOSE_GRACE_MS).catch(nothing);
      }
      this.connection = undefined;
      this.currentSession = undefined;
      if (connection) {
        this.teardown(connection);
        this.failPending(connection, (spec) => new LibvirtOutcomeUnknownError(spec.info, { cause: new LibvirtClosedError(`${this.name}: closed while waiting for the reply`) }));
      }
      this.watches.closeAll();
      this.log.info({ libvirt: this.name }, 'closed');
      this.stateSubject.complete();
      this.sessionSubject.complete();
      this.domainEventSubject.complete();
      this.monitorEventSubject.complete();
      this.errorSubject.complete();
      if (connection && !connection.socket.closed) await new Promise<void>((resolve) => connection.socket.once('close', () => resolve()));
    })();
    return this.closing;
  }

  // ---- the typed API --------------------------------------------------------------------------

  getLibVersion(options?: LibvirtCallOptions): Promise<LibvirtVersion> {
    return this.call(specs.libVersion(), options).then(unpackVersion);
  }

  getHypervisorVersion(options?: LibvirtCallOptions): Promise<LibvirtVersion> {
    return this.call(specs.hypervisorVersion(), options).then(unpackVersion);
  }

  async listAllDomains(options?: LibvirtCallOptions): Promise<DomainInfo[]> {
    const domains = await this.call(specs.listAllDomains(), options);
    return domains.map((d) => ({ ...d, active: d.id !== -1 }));
  }

  lookupDomainByName(name: string, options?: LibvirtCallOptions): Promise<DomainRef> {
    return this.call(specs.lookupByName(name), options);
  }

  lookupDomainByUuid(uuid: string, options?: LibvirtCallOptions): Promise<DomainRef> {
    return this.withSpec(() => specs.lookupByUuid(uuid), options);
  }

  getDomainXml(domain: DomainRef, flags: DomainXmlFlags = {}, options?: LibvirtCallOptions): Promise<string> {
    const bits = (flags.secure ? c.VIR_DOMAIN_XML_SECURE : 0) | (flags.inactive ? c.VIR_DOMAIN_XML_INACTIVE : 0);
    return this.withSpec(() => specs.domainXml(domain, bits), options);
  }

  getBlockJobInfo(domain: DomainRef, disk: string, options?: LibvirtCallOptions): Promise<BlockJobInfo | null> {
    return this.withSpec(() => specs.blockJobInfo(domain, disk), options);
  }

  async blockJobAbort(domain: DomainRef, disk: string, flags: BlockJobAbortFlags = {}, options?: LibvirtCallOptions): Promise<void> {
    const bits = (flags.async ? c.VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC : 0) | (flags.pivot ? c.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT : 0);
    await this.withSpec(() => specs.blockJobAbort(domain, disk, bits), options);
  }

  async blockJobSetSpeed(domain: DomainRef, disk: string, bytesPerSecond: number, options?: LibvirtCallOptions): Promise<void> {
    if (!Number.isSafeInteger(bytesPerSecond) || bytesPerSecond < 0) {
      throw new TypeError(`${this.name}: bytesPerSecond must be a safe integer >= 0, got ${bytesPerSecond}`);
    }
    await this.withSpec(() => specs.blockJobSetSpeed(domain, disk, bytesPerSecond), options);
  }

  watchDomainEvents(eventId: DomainEventId, options: DomainWatchOptions = {}): LibvirtEventWatch {
    this.assertOpen('watchDomainEvents');
    return this.watches.add({ kind: 'domain', eventId, domain: options.domain });
  }

  watchMonitorEvents(options: MonitorWatchOptions = {}): LibvirtEventWatch {
    this.assertOpen('watchMonitorEvents');
    return this.watches.add({ kind: 'monitor', domain: options.domain, event: options.event });
  }

  // ---- calls ----------------------------------------------------------------------------------

  /** Build the spec (argument errors become rejections), then call. */
  private withSpec<R>(build: () => CallSpec<R>, options?: LibvirtCallOptions): Promise<R> {
    let spec: CallSpec<R>;
    try {
      spec = build();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.call(spec, options);
  }

  /** A public call: only when ready. */
  private call<R>(spec: CallSpec<R>, options: LibvirtCallOptions = {}): Promise<R> {
    const timeoutMs = options.timeoutMs ?? this.options.defaultTimeoutMs;
    if (!(timeoutMs > 0) || timeoutMs > MAX_TIMER_MS) {
      return Promise.reject(new RangeError(`${this.name}: ${spec.info.procedure}: timeoutMs must be in (0, ${MAX_TIMER_MS}], got ${timeoutMs}`));
    }
    const state = this.state;
    if (state === 'closed') return Promise.reject(new LibvirtClosedError(`${this.name}: ${spec.info.procedure}: the libvirt client is closed`));
    if (state !== 'ready' || !this.connection) {
      return Promise.reject(new StateError(`${this.name}: cannot call ${spec.info.procedure}: the connection is ${state}, not ready`, state, ['ready']));
    }
    return this.send(this.connection, spec, timeoutMs);
  }

  /** Write a call on a connection (any state; negotiation uses this directly) and await its reply. */
  private send<R>(connection: Connection, spec: CallSpec<R>, timeoutMs: number): Promise<R> {
    if (connection.socket.destroyed) {
      // A negotiation step after the loss of its connection: nothing is written.
      return Promise.reject(new StateError(`${this.name}: cannot call ${spec.info.procedure}: its connection is gone`, this.state, ['negotiating', 'ready']));
    }
    if (connection.pending.size >= this.options.maxPendingCalls) {
      return Promise.reject(new LibvirtTooManyPendingError(spec.info, this.options.maxPendingCalls));
    }
    let body: Buffer | undefined;
    try {
      body = spec.encode ? codec.encodeBody(spec.encode) : undefined;
    } catch (err) {
      return Promise.reject(new TypeError(`${this.name}: ${spec.info.procedure}: bad arguments: ${(err as Error).message}`, { cause: err }));
    }
    connection.serial = connection.serial >= 0xffffffff ? 1 : connection.serial + 1;
    const serial = connection.serial;
    const message = codec.encodeMessage(
      { prog: spec.program, vers: spec.version, proc: spec.proc, type: c.MessageType.Call, serial, status: c.MessageStatus.Ok },
      body,
    );
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        connection.pending.delete(serial);
        this.log.warn({ libvirt: this.name, serial, procedure: spec.info.procedure, timeoutMs }, 'call timed out; a late reply will be dropped');
        reject(new LibvirtTimeoutError(spec.info, timeoutMs));
      }, timeoutMs);
      connection.pending.set(serial, { spec: spec as CallSpec<unknown>, resolve: resolve as (value: unknown) => void, reject, timer });
      this.log.debug({ libvirt: this.name, serial, procedure: spec.info.procedure, args: spec.info.args }, '-->');
      connection.socket.write(message);
      this.sentCalls++;
    });
  }

  // ---- connection lifecycle -------------------------------------------------------------------

  private connectNow(): void {
    this.setState('connecting');
    let socket: Duplex;
    try {
      socket = this.options.connect(this.socketPath);
    } catch (err) {
      this.emitProblem(new LibvirtConnectError(this.socketPath, `connect failed: ${(err as Error).message}`, { cause: err }));
      this.afterLoss();
      return;
    }
    const connection: Connection = {
      socket,
      framer: new RpcFramer(
        (message) => this.onMessage(connection, message),
        (error) => this.lose(connection, { message: error.message, problem: error, cause: error }),
        { maxMessageBytes: this.options.maxMessageBytes },
      ),
      connectTimer: undefined,
      keepalive: undefined,
      serial: 0,
      pending: new Map(),
      held: new HeldEvents(),
    };
    this.connection = connection;
    socket.on('data', (chunk: Buffer) => {
      if (this.connection === connection) connection.framer.push(chunk);
    });
    socket.on('error', (err: Error) => this.onTransportError(connection, err));
    socket.on('end', () => this.onTransportEnd(connection));
    socket.on('close', () => this.onTransportEnd(connection));
    if (socket instanceof net.Socket && socket.connecting) {
      connection.connectTimer = setTimeout(() => {
        const error = new LibvirtConnectError(this.socketPath, `connect timed out after ${this.options.connectTimeoutMs} ms`);
        this.lose(connection, { message: error.message, problem: error });
      }, this.options.connectTimeoutMs);
      socket.once('connect', () => void this.negotiate(connection));
    } else {
      void this.negotiate(connection);
    }
  }

  private async negotiate(connection: Connection): Promise<void> {
    if (this.connection !== connection) return;
    clearTimeout(connection.connectTimer);
    this.setState('negotiating');
    const timeout = this.options.negotiateTimeoutMs;
    try {
      const { libVersion, hypervisorVersion, keepalive } = await negotiate((spec) => this.send(connection, spec, timeout), {
        socketPath: this.socketPath,
        openUri: this.options.openUri,
        readOnly: this.readOnly,
        keepalive: this.options.keepalive !== false,
      });
      const config = this.options.keepalive;
      if (keepalive && config !== false && this.connection === connection) {
        const { intervalMs, count } = config;
        connection.keepalive = new KeepaliveTimer(intervalMs, count, () => this.sendKeepalive(connection, c.KEEPALIVE_PROC_PING), () => {
          const error = new LibvirtKeepaliveError(this.socketPath, intervalMs, count);
          this.lose(connection, { message: error.message, problem: error });
        });
        connection.keepalive.start();
      }
      const number = this.sessionCount + 1;
      const watches = await this.watches.registerAll(number);
      if (this.connection !== connection) return;
      const session: LibvirtSession = Object.freeze({
        number: ++this.sessionCount,
        uri: this.options.openUri,
        readOnly: this.readOnly,
        libVersion,
        hypervisorVersion,
        keepalive,
        startedAt: Date.now(),
        seq: this.inboundSeq,
        watches,
      });
      this.currentSession = session;
      this.backoff.sessionUp();
      this.log.info(
        { libvirt: this.name, session: session.number, libvirtVersion: fmt(libVersion), hypervisor: fmt(hypervisorVersion), keepalive },
        'session ready',
      );
      this.setState('ready');
      if (this.connection === connection) this.dispatch(this.sessionSubject, session, 'sessions$');
    } catch (err) {
      if (this.connection !== connection) return; // lost meanwhile: already reported
      const error =
        err instanceof LibvirtAuthError || err instanceof LibvirtProtocolError
          ? err
          : new LibvirtConnectError(this.socketPath, `negotiation failed: ${(err as Error).message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    }
  }

  private onTransportError(connection: Connection, err: Error): void {
    if (this.connection !== connection) return;
    if (this.state === 'ready') {
      this.lose(connection, { message: `transport error: ${err.message}`, cause: err });
    } else {
      const error = new LibvirtConnectError(this.socketPath, `${this.state === 'connecting' ? 'connect' : 'negotiation'} failed: ${err.message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    }
  }

  private onTransportEnd(connection: Connection): void {
    if (this.connection !== connection) return;
    connection.framer.end(); // a message cut short is a `truncated` protocol error (and a loss)
    if (this.connection !== connection) return;
    if (this.state === 'ready') {
      this.lose(connection, { message: 'libvirtd closed the connection (EOF)' });
    } else {
      const error = new LibvirtConnectError(this.socketPath, 'libvirtd closed the connection during negotiation');
      this.lose(connection, { message: error.message, problem: error });
    }
  }

  /** End a connection (once), fail its calls, forget its callbacks, then reconnect per policy. */
  private lose(connection: Connection, loss: Loss): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    this.currentSession = undefined;
    this.teardown(connection);
    const fields = { libvirt: this.name, pending: connection.pending.size, reason: loss.message };
    if (loss.problem) this.log.warn(fields, 'connection lost');
    else this.log.info(fields, 'connection lost');
    this.watches.sessionEnded();
    this.failPending(connection, (spec) => new LibvirtOutcomeUnknownError(spec.info, { cause: loss.cause ?? loss.problem ?? new Error(loss.message) }));
    if (loss.problem) this.emitProblem(loss.problem);
    this.afterLoss();
  }

  private afterLoss(): void {
    if (this.state === 'closed') return;
    this.setState('disconnected');
    if (this.state !== 'disconnected' || !this.options.reconnect.enabled) return; // a subscriber closed or restarted us
    const delayMs = this.backoff.nextDelayMs();
    this.log.debug({ libvirt: this.name, delayMs, attempt: this.backoff.streak }, 'reconnect scheduled');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.state === 'disconnected') this.connectNow();
    }, delayMs);
  }

  private teardown(connection: Connection): void {
    clearTimeout(connection.connectTimer);
    connection.keepalive?.stop();
    connection.framer.stop();
    connection.socket.destroy();
  }

  private failPending(connection: Connection, toError: (spec: CallSpec<unknown>) => Error): void {
    const calls = [...connection.pending.values()];
    connection.pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(toError(call.spec));
    }
  }

  // ---- inbound --------------------------------------------------------------------------------

  private onMessage(connection: Connection, message: Buffer): void {
    const seq = ++this.inboundSeq;
    connection.keepalive?.heard();
    const header = codec.decodeHeader(message);
    const body = message.subarray(c.VIR_NET_MESSAGE_HEADER_BYTES);
    this.log.debug({ libvirt: this.name, seq, prog: header.prog, proc: header.proc, type: header.type, serial: header.serial, status: header.status, bytes: message.length }, '<--');
    const classified = classifyHeader(header);
    const headerFault = (text: string): void => {
      const error = new LibvirtProtocolError('header', text, hexEvidence(message));
      this.lose(connection, { message: error.message, problem: error, cause: error });
    };
    switch (classified.kind) {
      case 'fault':
        return headerFault(classified.reason);
      case 'ping':
        return this.sendKeepalive(connection, c.KEEPALIVE_PROC_PONG);
      case 'pong':
        return; // heard() above is all a PONG is for
      case 'reply':
        return this.onReply(connection, header, body, message, headerFault);
      case 'event':
        return this.onEvent(connection, header, body, message, seq);
      case 'stream':
        // Well framed, so it is reported and skipped rather than fatal.
        this.emitProblem(new LibvirtProtocolError('unexpected-message', `stream packet for serial ${header.serial}; this client opens no streams`, hexEvidence(message)));
    }
  }

  private onReply(connection: Connection, header: codec.MessageHeader, body: Buffer, message: Buffer, headerFault: (text: string) => void): void {
    const call = connection.pending.get(header.serial);
    if (!call) {
      if (header.serial === 0 || header.serial > connection.serial) return headerFault(`reply to serial ${header.serial}, which was never sent`);
      this.log.warn({ libvirt: this.name, serial: header.serial }, 'reply to a timed-out call dropped');
      return;
    }
    if (call.spec.program !== header.prog || call.spec.proc !== header.proc) {
      return headerFault(`reply for serial ${header.serial} names procedure ${header.proc}, the call was ${call.spec.info.procedure}`);
    }
    connection.pending.delete(header.serial);
    clearTimeout(call.timer);
    try {
      if (header.status === c.MessageStatus.Error) {
        const e = codec.decodeBody(body, 'remote_error', codec.readRemoteError);
        call.reject(new LibvirtRemoteError(call.spec.info, e.code, c.VIR_ERROR_NAMES[e.code], e.domain, e.level, e.message, e));
      } else {
        call.resolve(codec.decodeBody(body, call.spec.info.procedure, call.spec.decode));
      }
    } catch (err) {
      // A body that does not decode fails its call only: the framing is intact.
      const error = bodyError(err, `reply to ${call.spec.info.procedure}`, message);
      call.reject(error);
      this.emitProblem(error);
    }
  }

  private onEvent(connection: Connection, header: codec.MessageHeader, body: Buffer, message: Buffer, seq: number): void {
    let decoded: DecodedEvent | undefined;
    try {
      decoded = decodeEvent(header.prog, header.proc, body);
    } catch (err) {
      // An event was lost: drop the connection, so the next session's resync covers it.
      const error = err instanceof LibvirtProtocolError ? err : bodyError(err, `event ${header.proc}`, message);
      this.lose(connection, { message: error.message, problem: error, cause: err });
      return;
    }
    if (!decoded) {
      this.emitProblem(new LibvirtProtocolError('unexpected-message', `event procedure ${header.proc} of program 0x${header.prog.toString(16)} was never registered`, hexEvidence(message)));
      return;
    }
    const stamp: EventStamp = {
      domain: decoded.domain,
      receivedAt: Date.now(),
      receivedMono: performance.now(),
      seq,
      session: this.currentSession?.number ?? this.sessionCount + 1,
    };
    const watch = this.watches.byCallback(decoded.space, decoded.callbackId);
    if (watch) return this.deliver(decoded, stamp, watch);
    // Possibly for a registration whose reply is being read (see held-events.ts).
    if (this.watches.registering && connection.held.hold(decoded, stamp)) return;
    this.log.debug({ libvirt: this.name, seq, callbackId: decoded.callbackId, space: decoded.space }, 'event for no current watch dropped');
  }

  private deliver(decoded: DecodedEvent, stamp: EventStamp, watch: Watch): void {
    const base = { ...stamp, watch: watch.id };
    if (decoded.space === 'monitor') this.dispatch(this.monitorEventSubject, { ...decoded.event, ...base }, 'monitorEvents$');
    else this.dispatch(this.domainEventSubject, { ...decoded.event, ...base } as LibvirtDomainEvent, 'domainEvents$');
  }

  /** A registration claimed `callbackId`: deliver what was held for it, in arrival order. */
  private releaseHeld(space: CallbackSpace, callbackId: number, watch: Watch): void {
    for (const held of this.connection?.held.claim(space, callbackId) ?? []) this.deliver(held.decoded, held.stamp, watch);
  }

  private dropHeld(): void {
    const dropped = this.connection?.held.clear() ?? 0;
    if (dropped > 0) this.log.debug({ libvirt: this.name, dropped }, 'events for no watch dropped');
  }

  private sendKeepalive(connection: Connection, proc: number): void {
    if (this.connection !== connection) return;
    this.log.debug({ libvirt: this.name, keepalive: proc === c.KEEPALIVE_PROC_PING ? 'PING' : 'PONG' }, '-->');
    connection.socket.write(
      codec.encodeMessage({ prog: c.KEEPALIVE_PROGRAM, vers: c.KEEPALIVE_PROTOCOL_VERSION, proc, type: c.MessageType.Message, serial: 0, status: c.MessageStatus.Ok }),
    );
  }

  // ---- watches --------------------------------------------------------------------------------

  /** Register on the current connection (negotiating or ready); resolves the callback id. */
  private registerWatch(watch: Watch): Promise<number> {
    const connection = this.connection;
    if (!connection) return Promise.reject(new StateError(`${this.name}: not connected`, this.state, ['negotiating', 'ready']));
    const spec = watch.kind === 'monitor' ? specs.monitorRegister(watch) : specs.domainRegister(watch);
    return this.send(connection, spec, this.options.negotiateTimeoutMs);
  }

  private async deregisterWatch(watch: Watch, callbackId: number): Promise<void> {
    const connection = this.connection;
    if (!connection || this.state !== 'ready') return;
    const spec = watch.kind === 'monitor' ? specs.monitorDeregister(callbackId) : specs.domainDeregister(callbackId);
    await this.send(connection, spec, this.options.defaultTimeoutMs);
  }

  // ---- helpers --------------------------------------------------------------------------------

  private assertOpen(what: string): void {
    if (this.state === 'closed') throw new LibvirtClosedError(`${this.name}: ${what}: the libvirt client is closed`);
  }

  private setState(state: LibvirtRunState): void {
    if (this.stateSubject.value === state || this.stateSubject.closed) return;
    this.log.debug({ libvirt: this.name, from: this.stateSubject.value, to: state }, 'runstate');
    this.dispatch(this.stateSubject, state, 'state$');
  }

  private emitProblem(error: LibvirtError): void {
    this.dispatch(this.errorSubject, error, 'errors$');
  }

  /** Deliver without letting a subscriber break the reader. */
  private dispatch<T>(subject: Subject<T>, value: T, stream: string): void {
    try {
      subject.next(value);
    } catch (err) {
      this.log.error({ libvirt: this.name, stream, err }, 'a subscriber threw; ignored');
    }
  }
}

function bodyError(err: unknown, what: string, message: Buffer): LibvirtProtocolError {
  if (err instanceof XdrError) {
    const fault = err.trailing ? 'trailing-bytes' : 'body';
    return new LibvirtProtocolError(fault, `${what}: ${err.message}`, hexEvidence(message), { cause: err });
  }
  return new LibvirtProtocolError('body', `${what}: ${(err as Error).message}`, hexEvidence(message), { cause: err });
}


const fmt = (v: LibvirtVersion): string => `${v.major}.${v.minor}.${v.micro}`;
