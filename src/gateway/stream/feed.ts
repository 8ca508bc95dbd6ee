/**
 * The seam between where stream events come from and the clients they go to.
 *
 * The gateway core serves a StreamFeed: numbered per-VM streams of pre-serialized events, the jobs as
 * they stand, and the history behind resume. Two kinds of feed exist: StreamHub (hub.ts) numbers the
 * events of a local JobSource itself; a fleet edge gets events already numbered by the host gateway
 * that owns the VM. Fan-out, the snapshot/replay cut and every delivery guarantee of PROTOCOL.md are
 * the core's, the same for both.
 *
 * The contract that makes the snapshot/tail cut exact: when `sink.event(e)` is called,
 * `position(e.vm).offset === e.offset` and `snapshot()` already includes `e`, so "snapshot +
 * head" read in one tick is a consistent cut. Per VM, events come in offset order, +1 each.
 */
import type { VmSnapshot } from '../../jobs/types.js';
import type { HistoryEntry, HistoryRead, MaybePromise, StreamPosition } from '../history/types.js';

/** What a subscription filters jobs by. */
export interface JobKeys {
  readonly id: string;
  readonly type: string;
  readonly state: string;
}

/** A transition's filter keys, with the state before the change (null for a new job). */
export interface TransitionKeys extends JobKeys {
  readonly from: string | null;
}

/** One numbered event of one VM stream, pre-serialized. */
export interface StreamEvent extends HistoryEntry {
  readonly kind: 'event' | 'vm';
  readonly vm: string;
  readonly offset: number;
  readonly at: number;
  /** Filter keys (transitions only). */
  readonly job?: TransitionKeys;
  /** performance.now() when the QMP message behind it arrived, for delivery-lag metrics (local only). */
  readonly qmpReceivedMono?: number;
  /** `{"type":"event","sub":` */
  readonly prefix: string;
  /** Everything after `"prev":N`, starting with a comma and ending with `}`. */
  readonly body: string;
}

/** One job's progress, pre-serialized; outside the offsets, never replayed. */
export interface ProgressEvent {
  readonly vm: string;
  readonly job: string;
  readonly at: number;
  /** Filter keys: the job's type and published state travel with the update (no lookup per message). */
  readonly keys: JobKeys;
  /** `{"type":"progress","sub":` */
  readonly prefix: string;
  /** Everything after the sub, starting with a comma. */
  readonly body: string;
}

/** Where a feed delivers; the core's fan-out. */
export interface FeedSink {
  event(event: StreamEvent): void;
  progress(event: ProgressEvent): void;
  /** The VM's stream got a new epoch (its continuity is lost) or is gone. */
  reset(vm: string): void;
}

export interface StreamFeed {
  /** Open the streams (awaiting an asynchronous store), then deliver to `sink`. */
  start(sink: FeedSink): Promise<void>;
  stop(): void;
  /** The VMs served, in a stable order; a VM is listed no later than its first event. */
  vms(): string[];
  /** The stream's current epoch and head offset. */
  position(vm: string): StreamPosition;
  /** Every VM's monitor status and jobs, as of the last delivered event. */
  snapshot(): VmSnapshot[];
  /**
   * The same for only these VMs (those it serves), when the feed can answer per VM: a fleet edge
   * serves thousands of VMs and a subscriber or welcome usually needs a few. Else snapshot() is filtered.
   */
  snapshotOf?(vms: readonly string[]): VmSnapshot[];
  /** Every event after `since` up to the head, or why that cannot be given; never a partial list. */
  read(vm: string, since: StreamPosition): MaybePromise<HistoryRead<StreamEvent>>;
}
