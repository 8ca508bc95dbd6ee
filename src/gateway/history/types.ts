/**
 * Stream history: the bounded, ordered record of each VM stream's events, and the stream's identity.
 *
 * A stream is one VM. Its `epoch` is a random id that changes whenever continuity cannot be vouched
 * for (process start for the in-memory store; a lost Redis key for a shared store). Its `offset`
 * grows by exactly 1 per stream event; offset 0 means "before the first event".
 *
 * Implementations answer `read` with the complete list of missed entries or with a reset reason,
 * never a partial list. Methods may return promises so that a shared store (Redis Streams) fits the
 * same shape: there, offsets map 1:1 to explicit stream IDs `0-<offset>` (`XADD key MAXLEN ~ N
 * 0-<offset>`, resume with `XRANGE key (0-<since> +`), the epoch lives in `gw:<vm>:epoch` created with
 * `SET NX`, and XADD's "ID equal or smaller" error fences two writers of one VM. The in-memory
 * implementation answers synchronously, which lets the gateway cut snapshot and live tail in one tick.
 */

import type { StreamPosition } from '../../protocol/messages.js';

export type { StreamPosition };

export type MaybePromise<T> = T | Promise<T>;

/** Why a `since` position could not be honoured (the subscriber gets a snapshot instead). */
export type ResetReason = 'unknown_epoch' | 'offset_too_old' | 'offset_ahead';

export type HistoryRead<E> = { entries: readonly E[] } | { reset: ResetReason };

export interface HistoryEntry {
  readonly offset: number;
  /** Wall-clock ms when the entry was appended (for age-based trimming). */
  readonly at: number;
}

export interface StreamHistory<E extends HistoryEntry> {
  /** The stream's current position, creating the stream (with a fresh epoch) on first use. */
  open(vm: string): MaybePromise<StreamPosition>;
  /** Append the next entry; `entry.offset` must be exactly head + 1. */
  append(vm: string, entry: E): MaybePromise<void>;
  /** Every entry after `since.offset` up to the head, or why that cannot be given. */
  read(vm: string, since: StreamPosition): MaybePromise<HistoryRead<E>>;
  /** Forget a stream (VM removed); a later `open` starts a new epoch. */
  drop(vm: string): MaybePromise<void>;
  /**
   * Histories that may restart a stream at a new epoch on their own (a fleet host whose stream in
   * Redis was written by another) tell the numbering feed, which continues from `position`.
   */
  onRestart?(listener: (vm: string, position: StreamPosition) => void): void;
}

export interface HistoryLimits {
  /** Entries kept per stream. @default 1000 */
  maxEntries?: number;
  /** Entries older than this are trimmed. @default 600_000 (10 min) */
  maxAgeMs?: number;
}
