/**
 * The QMP client's public contract. Everything above src/qmp (jobs, gateway, demo, bench) depends
 * on these types only, so a scripted peer or a simulator can stand in for QEMU.
 */
import type { Observable } from 'rxjs';
import type { QmpError } from '../errors.js';

/** `unix:/path` or `tcp:host:port` (host may be `[v6]`). */
export type QmpAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/**
 * Connection runstate. Sequence on a good connect: idle -> connecting -> negotiating -> ready.
 * On EOF/error: ready -> disconnected (-> connecting again when reconnect is on). close(): -> closed (final).
 */
export type QmpRunState = 'idle' | 'connecting' | 'negotiating' | 'ready' | 'disconnected' | 'closed';

export interface QemuVersion {
  qemu: { major: number; minor: number; micro: number };
  package: string;
}

export interface QmpGreeting {
  version: QemuVersion;
  capabilities: string[];
}

/** One negotiated connection. A new session starts after every successful (re)negotiation. */
export interface QmpSession {
  /** 1 for the first negotiated connection of this client, +1 for each one after. */
  readonly number: number;
  readonly greeting: QmpGreeting;
  /**
   * Whether this session talks to the same QEMU process as the previous one: 'first' for session 1,
   * false when the greeting/query-version prove a different process (e.g. version changed),
   * 'unknown' when nothing distinguishes them (a restart of the same binary looks identical).
   */
  readonly sameProcess: 'first' | boolean | 'unknown';
  /** Local wall-clock ms when negotiation completed. */
  readonly startedAt: number;
  /** Sequence number (see QmpEvent.seq) of the qmp_capabilities reply; everything after it belongs to this session. */
  readonly seq: number;
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's wall-clock timestamp (ms since epoch; null when QEMU sent -1/-1). Order by `seq`, not by this. */
  qemuTimestamp: number | null;
  /** Local wall-clock ms when the message was parsed. */
  receivedAt: number;
  /** Local monotonic ms (performance.now()) when parsed, for latency measurement. */
  receivedMono: number;
  /** Position of this message in the inbound stream of this client (monotonic across sessions). */
  seq: number;
  /** QmpSession.number of the session it arrived on. */
  session: number;
}

export interface ExecuteOptions {
  /** Reject with QmpTimeoutError after this many ms. @default 10_000 */
  timeoutMs?: number;
}

/** A reply together with its position in the inbound stream (see QmpEvent.seq). */
export interface QmpReply<T> {
  value: T;
  seq: number;
  receivedAt: number;
  session: number;
}

/** Anything that speaks QMP to one monitor: the real client, or a test double. */
export interface QmpMonitor {
  /** Current runstate; also a stream (BehaviorSubject semantics: replays the current value). */
  readonly state: QmpRunState;
  readonly state$: Observable<QmpRunState>;
  /**
   * Emits each new negotiated session (hot, no replay). Emitted synchronously while the
   * qmp_capabilities reply is processed (state is already 'ready'), before any later message is
   * dispatched: subscribe to events$ first, then poll from here, and nothing falls in between.
   */
  readonly sessions$: Observable<QmpSession>;
  readonly session: QmpSession | undefined;
  /** Hot stream of QMP events; subscribers survive reconnects. Delivered synchronously in wire order. */
  readonly events$: Observable<QmpEvent>;
  /** Commands written to QEMU so far, over all sessions (for metrics; test doubles may omit it). */
  readonly commandsSent?: number;
  /** Non-fatal problems worth surfacing (connect failures, monitor busy, protocol errors, a session's end, before a reconnect). */
  readonly errors$: Observable<QmpError>;
  /** Run a command; rejects with QmpCommandError / QmpTimeoutError / QmpOutcomeUnknownError / StateError. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options?: ExecuteOptions): Promise<T>;
  /** Like execute, plus the reply's stream position, so callers can order it against events. */
  executeWithMeta<T = unknown>(command: string, args?: Record<string, unknown>, options?: ExecuteOptions): Promise<QmpReply<T>>;
}
