/**
 * The libvirt RPC client's public contract. Everything above src/libvirt (the libvirt job source,
 * its control, tests, benchmarks) depends on these types only, so a scripted peer can stand in for
 * libvirtd where the real one cannot show a fault on cue.
 *
 * Numbers that libvirt sends as uint64 (versions, cur/end/bandwidth) arrive as JS numbers: a value
 * above 2^53 - 1 is reported as a protocol error rather than rounded.
 */
import type { Duplex } from 'node:stream';
import type { Observable } from 'rxjs';
import type { ReconnectPolicy } from '../backoff.js';
import type { LibvirtError } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * Connection runstate. A good connect: idle -> connecting -> negotiating -> ready, where
 * negotiating is auth list, connect open, keepalive, both versions and the re-registration of every
 * event watch. On EOF, error, a protocol error or a dead keepalive: ready -> disconnected (->
 * connecting again after the backoff). close(): -> closed (final).
 */
export type LibvirtRunState = 'idle' | 'connecting' | 'negotiating' | 'ready' | 'disconnected' | 'closed';

/** libvirt's packed version (major * 1_000_000 + minor * 1_000 + micro), unpacked. */
export interface LibvirtVersion {
  major: number;
  minor: number;
  micro: number;
  /** The packed number as libvirt sent it. */
  packed: number;
}

/** One opened connection to libvirtd. A new session starts after every successful (re)negotiation. */
export interface LibvirtSession {
  /** 1 for the first session of this client, +1 for each one after. */
  readonly number: number;
  /** The URI the connection was opened with (`qemu:///system`). */
  readonly uri: string;
  /** Opened read-only (VIR_CONNECT_RO on libvirt-sock-ro). */
  readonly readOnly: boolean;
  readonly libVersion: LibvirtVersion;
  /** The hypervisor's version (QEMU's, for the qemu driver). */
  readonly hypervisorVersion: LibvirtVersion;
  /** Whether libvirtd agreed to keepalive (it then pings us too). */
  readonly keepalive: boolean;
  /** Local wall-clock ms when negotiation completed. */
  readonly startedAt: number;
  /** Inbound sequence number of the last negotiation reply; everything after it belongs to this session. */
  readonly seq: number;
  /** Watches registered on this session, and those that failed (also reported on errors$). */
  readonly watches: { readonly registered: readonly number[]; readonly failed: readonly number[] };
}

/** A domain as libvirt names it on the wire. */
export interface DomainRef {
  readonly name: string;
  /** Canonical lowercase 8-4-4-4-12 form. */
  readonly uuid: string;
  /** The running domain's id; -1 when inactive. */
  readonly id: number;
}

export interface DomainInfo extends DomainRef {
  /** id !== -1 */
  readonly active: boolean;
}

/** virDomainBlockJobType; 'unknown' for a value this client does not know (raw value in typeCode). */
export type BlockJobType = 'unknown' | 'pull' | 'copy' | 'commit' | 'active-commit' | 'backup';

/** virConnectDomainEventBlockJobStatus. */
export type BlockJobStatus = 'completed' | 'failed' | 'canceled' | 'ready' | 'unknown';

/** virDomainEventType. */
export type LifecycleEventType =
  | 'defined'
  | 'undefined'
  | 'started'
  | 'suspended'
  | 'resumed'
  | 'stopped'
  | 'shutdown'
  | 'pmsuspended'
  | 'crashed'
  | 'unknown';

/**
 * virDomainGetBlockJobInfo for one disk, with bandwidth in bytes/s (the BANDWIDTH_BYTES flag).
 * Before READY, libvirt reports cur = end - 1 while QEMU already says offset == len (its shim): do
 * not read "cur == end" as ready; the domain XML's `<mirror ready='yes'>` or the QEMU event is.
 */
export interface BlockJobInfo {
  readonly type: BlockJobType;
  readonly typeCode: number;
  readonly bandwidth: number;
  readonly cur: number;
  readonly end: number;
}

interface LibvirtEventBase {
  readonly domain: DomainRef;
  /** The watch (LibvirtEventWatch.id) this event came through. */
  readonly watch: number;
  /** Local wall-clock ms when the message was decoded. */
  readonly receivedAt: number;
  /** Local monotonic ms (performance.now()) when decoded, for latency measurement. */
  readonly receivedMono: number;
  /** Position of this message in the inbound stream of this client (monotonic across sessions). */
  readonly seq: number;
  /** LibvirtSession.number of the session it arrived on. */
  readonly session: number;
}

/** VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2: libvirt's verdict for a job, keyed by the disk's target (`vda`). */
export interface LibvirtBlockJobEvent extends LibvirtEventBase {
  readonly kind: 'block-job-2';
  readonly disk: string;
  readonly type: BlockJobType;
  readonly typeCode: number;
  readonly status: BlockJobStatus;
  readonly statusCode: number;
}

/** VIR_DOMAIN_EVENT_ID_LIFECYCLE. `detail` is the event's virDomainEvent*DetailType number. */
export interface LibvirtLifecycleEvent extends LibvirtEventBase {
  readonly kind: 'lifecycle';
  readonly event: LifecycleEventType;
  readonly eventCode: number;
  readonly detail: number;
}

export type LibvirtDomainEvent = LibvirtBlockJobEvent | LibvirtLifecycleEvent;

/** The domain event ids this client can watch. */
export type DomainEventId = LibvirtDomainEvent['kind'];

/** A QEMU event relayed verbatim by libvirt's QEMU monitor-event passthrough (no taint). */
export interface LibvirtMonitorEvent extends LibvirtEventBase {
  readonly kind: 'qemu-monitor';
  /** QEMU's event name, e.g. JOB_STATUS_CHANGE. */
  readonly event: string;
  /** QEMU's timestamp in ms since the epoch (seconds * 1000 + micros / 1000); null when QEMU sent -1. */
  readonly qemuTimestamp: number | null;
  readonly seconds: number;
  readonly micros: number;
  /** QEMU's `data` member, parsed; {} when the event had none. */
  readonly data: Record<string, unknown>;
}

export interface LibvirtCallOptions {
  /** Reject with LibvirtTimeoutError after this many ms. @default 10_000 */
  timeoutMs?: number;
}

export interface DomainXmlFlags {
  /** VIR_DOMAIN_XML_INACTIVE: the persistent config, not the live one. */
  inactive?: boolean;
  /** VIR_DOMAIN_XML_SECURE: include secrets (needs a read-write connection). */
  secure?: boolean;
}

export interface BlockJobAbortFlags {
  /** VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC: return at once; the block-job-2 event tells the end. */
  async?: boolean;
  /** VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT: finish a copy/active commit by switching to the new image (= complete). */
  pivot?: boolean;
}

export interface MonitorWatchOptions {
  /** Only this domain; default all domains, including ones started later. */
  domain?: DomainRef;
  /** Only this QEMU event name (exact, case-sensitive); default all events. */
  event?: string;
}

export interface DomainWatchOptions {
  /** Only this domain; default all domains, including ones started later. */
  domain?: DomainRef;
}

/**
 * A standing event registration. The client registers it on the current session and again on
 * every new session (libvirtd forgets callbacks with the connection), before sessions$ emits.
 */
export interface LibvirtEventWatch {
  /** Stable for the life of the watch; events carry it as `watch`. */
  readonly id: number;
  /** e.g. `block-job-2 (all domains)`, for logs. */
  readonly description: string;
  /** libvirtd's callback id on the current session; undefined when not registered. */
  readonly callbackId: number | undefined;
  /** Deregister (on the current session, best effort) and stop re-registering. Idempotent. */
  close(): Promise<void>;
}

/** The typed libvirt API the job source uses: the real client, or a test double. */
export interface LibvirtConnection {
  /** Name used in logs and errors (the URI unless given). */
  readonly name: string;
  readonly uri: string;
  readonly readOnly: boolean;
  /** Current runstate; also a stream (BehaviorSubject semantics: replays the current value). */
  readonly state: LibvirtRunState;
  readonly state$: Observable<LibvirtRunState>;
  /**
   * Each new session (hot, no replay), emitted once every watch is registered again and state is
   * 'ready', before any later message is dispatched: a consumer resyncs (list domains, job info,
   * XML) from here and misses no event, since the watches already deliver.
   */
  readonly sessions$: Observable<LibvirtSession>;
  readonly session: LibvirtSession | undefined;
  /**
   * Hot: lifecycle and block-job-2 events of all watches, synchronously in wire order; survives
   * reconnects. One exception, by design: events libvirtd sends for a watch while its registration
   * reply is still being read are held and delivered (in their order, with their `seq`) once the
   * reply is processed, instead of being dropped as libvirt's own client does.
   */
  readonly domainEvents$: Observable<LibvirtDomainEvent>;
  /** Hot: QEMU monitor events of all monitor watches, synchronously in wire order; survives reconnects. */
  readonly monitorEvents$: Observable<LibvirtMonitorEvent>;
  /** Calls written to libvirtd so far, over all sessions, so polling cost is visible (test doubles may omit it). */
  readonly callsSent?: number;
  /** Non-fatal news: connect failures, protocol errors, dead keepalives, failed registrations. */
  readonly errors$: Observable<LibvirtError>;

  /** Begin connecting; the client then keeps reconnecting per its policy until close(). */
  start(): void;
  /** Close for good (idempotent): connect close if ready, pending calls reject, streams complete. */
  close(): Promise<void>;

  getLibVersion(options?: LibvirtCallOptions): Promise<LibvirtVersion>;
  getHypervisorVersion(options?: LibvirtCallOptions): Promise<LibvirtVersion>;
  /** All domains, active and inactive (virConnectListAllDomains). */
  listAllDomains(options?: LibvirtCallOptions): Promise<DomainInfo[]>;
  /** Rejects with LibvirtRemoteError virCode 42 (VIR_ERR_NO_DOMAIN) when there is none. */
  lookupDomainByName(name: string, options?: LibvirtCallOptions): Promise<DomainRef>;
  lookupDomainByUuid(uuid: string, options?: LibvirtCallOptions): Promise<DomainRef>;
  getDomainXml(domain: DomainRef, flags?: DomainXmlFlags, options?: LibvirtCallOptions): Promise<string>;
  /** The disk's job (by target `vda` or source path), or null when it has none. */
  getBlockJobInfo(domain: DomainRef, disk: string, options?: LibvirtCallOptions): Promise<BlockJobInfo | null>;
  /** Cancel the job, or with `pivot` complete a ready copy / active commit. Needs a read-write connection. */
  blockJobAbort(domain: DomainRef, disk: string, flags?: BlockJobAbortFlags, options?: LibvirtCallOptions): Promise<void>;
  /** Bandwidth in bytes/s (0 = unlimited). Needs a read-write connection. */
  blockJobSetSpeed(domain: DomainRef, disk: string, bytesPerSecond: number, options?: LibvirtCallOptions): Promise<void>;

  /** Watch lifecycle or block-job-2 events (virConnectDomainEventRegisterAny). Allowed in any state but closed. */
  watchDomainEvents(eventId: DomainEventId, options?: DomainWatchOptions): LibvirtEventWatch;
  /**
   * Watch QEMU's own events through libvirt's passthrough (virConnectDomainQemuMonitorEventRegister).
   * Needs a read-write connection: on a read-only one every session reports a LibvirtRegistrationError.
   */
  watchMonitorEvents(options?: MonitorWatchOptions): LibvirtEventWatch;
}

/** Options of `new LibvirtClient(options)`. */
export interface LibvirtClientOptions {
  /** Local libvirt URI: `qemu:///system`, `qemu:///session`, or `qemu+unix:///system?socket=/path`. @default qemu:///system */
  uri?: string;
  /** Open read-only (VIR_CONNECT_RO, on libvirt-sock-ro): events and queries, no control, no monitor passthrough. @default false */
  readOnly?: boolean;
  /** The unix socket; overrides the one derived from uri and readOnly (/run/libvirt/libvirt-sock[-ro]). */
  socketPath?: string;
  /** Opens the transport; inject a Duplex for a scripted peer. @default net.connect to socketPath */
  connect?: (socketPath: string) => Duplex;
  /** Name used in logs and errors. @default the uri */
  name?: string;
  /** Give up a socket connect that neither succeeds nor fails. @default 5_000 */
  connectTimeoutMs?: number;
  /** Per-call timeout during negotiation (auth, open, versions, registrations). @default 10_000 */
  negotiateTimeoutMs?: number;
  /** Call timeout when the call gives none. @default 10_000 */
  defaultTimeoutMs?: number;
  /** Largest inbound message body + header, bytes. @default VIR_NET_MESSAGE_MAX (16 MiB, libvirt's own limit) */
  maxMessageBytes?: number;
  /** Calls awaiting a reply at once; beyond it calls reject with LibvirtTooManyPendingError. @default 256 */
  maxPendingCalls?: number;
  /**
   * libvirt's keepalive program: we ping after `intervalMs` of silence from the daemon, and declare it
   * dead (LibvirtKeepaliveError, reconnect) after `count` more silent intervals. libvirtd's defaults
   * are 5 s and 5. `false` turns our pings off (we still answer the daemon's).
   */
  keepalive?: { intervalMs?: number; count?: number } | false;
  /** How to reconnect after a loss or a failed attempt (the shared policy of src/backoff.ts). */
  reconnect?: ReconnectPolicy;
  /** `-->`/`<--` traces at debug, connection news at info/warn. @default silent */
  logger?: Logger;
}
