/**
 * LibvirtClient: one connection to libvirtd over its RPC protocol, kept open, and the typed API.
 *
 *   idle ──start()──> connecting ──socket up──> negotiating ──────────────────────────> ready
 *                        ^            auth list, connect open, keepalive, versions,      │ EOF, error, protocol
 *                        │            re-register every watch                            │ error, dead keepalive
 *                        └──── backoff timer ── disconnected <───────────────────────────┘
 *   any state ──close()──> closed (final)
 *
 * The socket, its calls and the routing of inbound messages are connection.ts's; this file runs the
 * session around it: negotiation, reconnects, watches, and the stamp and delivery of each event.
 * Everything a message triggers is dispatched synchronously before the next message is read, which
 * gives consumers wire order.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { BehaviorSubject, Subject, type Observable } from 'rxjs';
import { ReconnectBackoff } from '../backoff.js';
import {
  LibvirtAuthError,
  LibvirtClosedError,
  LibvirtConnectError,
  LibvirtError,
  LibvirtOutcomeUnknownError,
  LibvirtProtocolError,
  StateError,
} from '../errors.js';
import { deliver } from '../deliver.js';
import type { Logger } from '../log.js';
import { specs, type CallSpec } from './calls.js';
import { RpcConnection, type Loss, type WireCounters } from './connection.js';
import * as c from './constants.js';
import type { CallbackSpace, DecodedEvent } from './events.js';
import type { EventStamp } from './held-events.js';
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

/** How long close() waits for libvirtd to acknowledge connect close before dropping the socket. */
const CLOSE_GRACE_MS = 1_000;

const nothing = (): void => {};

export class LibvirtClient implements LibvirtConnection {
  readonly name: string;
  readonly uri: string;
  readonly readOnly: boolean;
  readonly socketPath: string;
  private readonly options: ResolvedClientOptions;
  private readonly log: Logger;
  /** Names this client in a log line about a subscriber. */
  private readonly who: { libvirt: string };

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

  private connection: RpcConnection | undefined;
  private currentSession: LibvirtSession | undefined;
  private sessionCount = 0;
  private readonly counters: WireCounters = { seq: 0, calls: 0 };
  /** Failed attempts and short-lived sessions since the last healthy one: the next delay. */
  private readonly backoff: ReconnectBackoff;
  private closing: Promise<void> | undefined;
  private readonly watches: WatchRegistry;

  constructor(options: LibvirtClientOptions = {}) {
    this.options = resolveClientOptions(options);
    this.backoff = new ReconnectBackoff(this.options.reconnect);
    ({ name: this.name, uri: this.uri, readOnly: this.readOnly, socketPath: this.socketPath, log: this.log } = this.options);
    this.who = { libvirt: this.name };
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
    return this.counters.calls;
  }

  /** Calls awaiting a reply on the current connection. */
  get pendingCount(): number {
    return this.connection?.pendingCount ?? 0;
  }

  start(): void {
    const state = this.state;
    if (state === 'closed') throw new LibvirtClosedError(`${this.name}: the libvirt client is closed`);
    if (state !== 'idle' && state !== 'disconnected') {
      throw new StateError(`${this.name}: start() while ${state}`, state, ['idle', 'disconnected']);
    }
    this.backoff.cancel();
    this.connectNow();
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.backoff.cancel();
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
        connection.destroy();
        connection.failPending((spec) => new LibvirtOutcomeUnknownError(spec.info, { cause: new LibvirtClosedError(`${this.name}: closed while waiting for the reply`) }));
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
  private send<R>(connection: RpcConnection, spec: CallSpec<R>, timeoutMs: number): Promise<R> {
    if (connection.socket.destroyed) {
      // A negotiation step after the loss of its connection: nothing is written.
      return Promise.reject(new StateError(`${this.name}: cannot call ${spec.info.procedure}: its connection is gone`, this.state, ['negotiating', 'ready']));
    }
    return connection.call(spec, timeoutMs);
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
    const connection: RpcConnection = new RpcConnection(socket, this.options, this.counters, {
      up: () => void this.negotiate(connection),
      transportError: (err) => this.onTransportError(connection, err),
      transportEnd: () => this.onTransportEnd(connection),
      lost: (loss) => this.lose(connection, loss),
      problem: (error) => this.emitProblem(error),
      event: (decoded, seq) => this.onEvent(connection, decoded, seq),
    });
    this.connection = connection;
    connection.open();
  }

  private async negotiate(connection: RpcConnection): Promise<void> {
    if (this.connection !== connection) return;
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
      if (keepalive && config !== false && this.connection === connection) connection.startKeepalive(config.intervalMs, config.count);
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
        seq: this.counters.seq,
        watches,
      });
      this.currentSession = session;
      this.backoff.sessionUp();
      this.log.info(
        { libvirt: this.name, session: session.number, libvirtVersion: fmt(libVersion), hypervisor: fmt(hypervisorVersion), keepalive },
        'session ready',
      );
      this.setState('ready');
      if (this.connection === connection) deliver(this.sessionSubject, session, 'sessions$', this.log, this.who);
    } catch (err) {
      if (this.connection !== connection) return; // lost meanwhile: already reported
      const error =
        err instanceof LibvirtAuthError || err instanceof LibvirtProtocolError
          ? err
          : new LibvirtConnectError(this.socketPath, `negotiation failed: ${(err as Error).message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    }
  }

  private onTransportError(connection: RpcConnection, err: Error): void {
    if (this.state === 'ready') {
      this.lose(connection, { message: `transport error: ${err.message}`, cause: err });
    } else {
      const error = new LibvirtConnectError(this.socketPath, `${this.state === 'connecting' ? 'connect' : 'negotiation'} failed: ${err.message}`, { cause: err });
      this.lose(connection, { message: error.message, problem: error, cause: err });
    }
  }

  private onTransportEnd(connection: RpcConnection): void {
    if (this.state === 'ready') {
      this.lose(connection, { message: 'libvirtd closed the connection (EOF)' });
    } else {
      const error = new LibvirtConnectError(this.socketPath, 'libvirtd closed the connection during negotiation');
      this.lose(connection, { message: error.message, problem: error });
    }
  }

  /** End a connection (once), fail its calls, forget its callbacks, then reconnect per policy. */
  private lose(connection: RpcConnection, loss: Loss): void {
    if (this.connection !== connection) return;
    this.connection = undefined;
    this.currentSession = undefined;
    connection.destroy();
    const fields = { libvirt: this.name, pending: connection.pendingCount, reason: loss.message };
    if (loss.problem) this.log.warn(fields, 'connection lost');
    else this.log.info(fields, 'connection lost');
    this.watches.sessionEnded();
    connection.failPending((spec) => new LibvirtOutcomeUnknownError(spec.info, { cause: loss.cause ?? loss.problem ?? new Error(loss.message) }));
    if (loss.problem) this.emitProblem(loss.problem);
    this.afterLoss();
  }

  private afterLoss(): void {
    if (this.state === 'closed') return;
    this.setState('disconnected');
    if (this.state !== 'disconnected') return; // a subscriber closed or restarted us
    const delayMs = this.backoff.schedule(() => {
      if (this.state === 'disconnected') this.connectNow();
    });
    if (delayMs !== undefined) this.log.debug({ libvirt: this.name, delayMs, attempt: this.backoff.streak }, 'reconnect scheduled');
  }

  // ---- events -------------------------------------------------------------------------------

  private onEvent(connection: RpcConnection, decoded: DecodedEvent, seq: number): void {
    const stamp: EventStamp = {
      domain: decoded.domain,
      receivedAt: Date.now(),
      receivedMono: performance.now(),
      seq,
      session: this.currentSession?.number ?? this.sessionCount + 1,
    };
    const watch = this.watches.byCallback(decoded.space, decoded.callbackId);
    if (watch) return this.deliverEvent(decoded, stamp, watch);
    // Possibly for a registration whose reply is being read (see held-events.ts).
    if (this.watches.registering && connection.held.hold(decoded, stamp)) return;
    this.log.debug({ libvirt: this.name, seq, callbackId: decoded.callbackId, space: decoded.space }, 'event for no current watch dropped');
  }

  private deliverEvent(decoded: DecodedEvent, stamp: EventStamp, watch: Watch): void {
    const base = { ...stamp, watch: watch.id };
    if (decoded.space === 'monitor') deliver(this.monitorEventSubject, { ...decoded.event, ...base }, 'monitorEvents$', this.log, this.who);
    else deliver(this.domainEventSubject, { ...decoded.event, ...base } as LibvirtDomainEvent, 'domainEvents$', this.log, this.who);
  }

  /** A registration claimed `callbackId`: deliver what was held for it, in arrival order. */
  private releaseHeld(space: CallbackSpace, callbackId: number, watch: Watch): void {
    for (const held of this.connection?.held.claim(space, callbackId) ?? []) this.deliverEvent(held.decoded, held.stamp, watch);
  }

  private dropHeld(): void {
    const dropped = this.connection?.held.clear() ?? 0;
    if (dropped > 0) this.log.debug({ libvirt: this.name, dropped }, 'events for no watch dropped');
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
    deliver(this.stateSubject, state, 'state$', this.log, this.who);
  }

  private emitProblem(error: LibvirtError): void {
    deliver(this.errorSubject, error, 'errors$', this.log, this.who);
  }
}

const fmt = (v: LibvirtVersion): string => `${v.major}.${v.minor}.${v.micro}`;
