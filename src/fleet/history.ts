/**
 * FleetHistory: the StreamHistory of a gateway in a fleet. Recent events live in a local ring (the
 * in-memory history, continued from the position Redis vouches for), so most resumes need no XRANGE
 * (an edge still reads Redis's heads first: EdgeFeed.read); a resume from further back reads Redis
 * (XRANGE after `since`), which holds what every host wrote, whichever gateway the client was on before.
 *
 * A host gateway hands each appended event on to its publisher; an edge only follows.
 */
import { MemoryStreamHistory, newEpoch } from '../gateway/history/memory.js';
import type { HistoryLimits, HistoryRead, MaybePromise, StreamHistory, StreamPosition } from '../gateway/history/types.js';
import type { StreamEvent } from '../gateway/stream/feed.js';
import { fromWire } from './entry.js';
import type { FleetStore } from './store.js';
import { configDefaults } from '../generated/config-defaults.js';

export interface FleetHistoryOptions {
  limits?: HistoryLimits;
  /** The position of a stream not open yet (host: its claim in Redis). Edges open streams with `adopt` first. */
  open?: (vm: string) => Promise<StreamPosition>;
  /** Every appended event, in order (host: the publisher). */
  appended?: (vm: string, event: StreamEvent) => void;
  now?: () => number;
}

export class FleetHistory implements StreamHistory<StreamEvent> {
  private readonly local: MemoryStreamHistory<StreamEvent>;
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly restartListeners: ((vm: string, position: StreamPosition) => void)[] = [];

  constructor(private readonly store: FleetStore, private readonly options: FleetHistoryOptions = {}) {
    this.now = options.now ?? Date.now;
    this.local = new MemoryStreamHistory<StreamEvent>(options.limits, this.now);
    this.maxEntries = options.limits?.maxEntries ?? 1000;
    this.maxAgeMs = options.limits?.maxAgeMs ?? configDefaults.history.maxAgeMs;
  }

  open(vm: string): MaybePromise<StreamPosition> {
    if (this.local.has(vm) || !this.options.open) return this.local.open(vm);
    return this.options.open(vm).then((position) => {
      if (!this.local.has(vm)) this.local.adopt(vm, position);
      return this.local.open(vm);
    });
  }

  /** Restart a stream at a new epoch (its offsets in Redis were written by another); the hub numbers from there. */
  restart(vm: string): StreamPosition {
    const position = { epoch: newEpoch(), offset: 0 };
    this.local.adopt(vm, position);
    for (const listener of this.restartListeners) listener(vm, position);
    return position;
  }

  onRestart(listener: (vm: string, position: StreamPosition) => void): void {
    this.restartListeners.push(listener);
  }

  /** Start (or restart) a stream at a position Redis vouches for. */
  adopt(vm: string, position: StreamPosition): void {
    this.local.adopt(vm, position);
  }

  has(vm: string): boolean {
    return this.local.has(vm);
  }

  position(vm: string): StreamPosition | undefined {
    return this.local.has(vm) ? this.local.open(vm) : undefined;
  }

  append(vm: string, event: StreamEvent): void {
    this.local.append(vm, event);
    this.options.appended?.(vm, event);
  }

  read(vm: string, since: StreamPosition): MaybePromise<HistoryRead<StreamEvent>> {
    const local = this.local.read(vm, since);
    if (!('reset' in local) || local.reset !== 'offset_too_old') return local;
    return this.readStore(vm, since);
  }

  drop(vm: string): void {
    this.local.drop(vm);
  }

  private async readStore(vm: string, since: StreamPosition): Promise<HistoryRead<StreamEvent>> {
    const { epoch, entries } = await this.store.readAfter(vm, since.offset, this.maxEntries);
    if (epoch !== since.epoch || epoch !== this.local.open(vm).epoch) return { reset: 'unknown_epoch' };
    const first = entries[0];
    // Redis keeps a count, not an age: apply the age bound here, as the local ring does.
    if (!first || first.offset !== since.offset + 1) return { reset: 'offset_too_old' };
    const events = entries.map((e) => fromWire(vm, e.offset, e.kind, e.body, e.q));
    if (events[0]!.at < this.now() - this.maxAgeMs) return { reset: 'offset_too_old' };
    // A host's newest events may still wait for Redis: the local ring has them.
    const last = events[events.length - 1]!.offset;
    const rest = this.local.read(vm, { epoch, offset: last });
    if ('entries' in rest) events.push(...rest.entries);
    return { entries: events };
  }
}
