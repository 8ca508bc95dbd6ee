/**
 * In-memory StreamHistory: one ring buffer per VM, bounded by count and age, synchronous.
 */
import { randomBytes } from 'node:crypto';
import type { HistoryEntry, HistoryLimits, HistoryRead, StreamHistory, StreamPosition } from './types.js';
import { configDefaults } from '../../generated/config-defaults.js';

export const DEFAULT_HISTORY_MAX_ENTRIES = configDefaults.history.maxEntries;
export const DEFAULT_HISTORY_MAX_AGE_MS = configDefaults.history.maxAgeMs;

/** A fresh stream epoch: 96 random bits, URL-safe. */
export function newEpoch(): string {
  return randomBytes(12).toString('base64url');
}

/** Slots a stream starts with; the ring doubles from there up to its capacity. */
const INITIAL_SLOTS = 8;

/**
 * The newest `capacity` entries, oldest first. Its storage grows by doubling, so a quiet VM's stream
 * holds a few slots, not `capacity`: 1,000 idle VMs kept 8 MB of empty slots, a sixth of the idle
 * gateway's heap, which every full GC marks (bench/notes.md, idle monitors, session 4).
 */
class Ring<E extends HistoryEntry> {
  private slots: (E | undefined)[];
  private start = 0;
  size = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array<E | undefined>(Math.min(INITIAL_SLOTS, capacity));
  }

  push(entry: E): void {
    if (this.size === this.capacity) {
      this.slots[this.start] = entry;
      this.start = (this.start + 1) % this.capacity;
      return;
    }
    if (this.size === this.slots.length) this.grow();
    this.slots[(this.start + this.size) % this.slots.length] = entry;
    this.size++;
  }

  at(index: number): E {
    return this.slots[(this.start + index) % this.slots.length] as E;
  }

  shift(): void {
    this.slots[this.start] = undefined;
    this.start = (this.start + 1) % this.slots.length;
    this.size--;
  }

  /** Full below capacity: twice the slots (at most capacity), the entries moved to the front in order. */
  private grow(): void {
    const grown = new Array<E | undefined>(Math.min(this.capacity, this.slots.length * 2));
    for (let i = 0; i < this.size; i++) grown[i] = this.at(i);
    this.slots = grown;
    this.start = 0;
  }
}

interface Stream<E extends HistoryEntry> {
  epoch: string;
  head: number;
  ring: Ring<E>;
}

export class MemoryStreamHistory<E extends HistoryEntry> implements StreamHistory<E> {
  private readonly streams = new Map<string, Stream<E>>();
  private readonly maxEntries: number;
  private readonly maxAgeMs: number;

  constructor(limits: HistoryLimits = {}, private readonly now: () => number = Date.now) {
    this.maxEntries = limits.maxEntries ?? DEFAULT_HISTORY_MAX_ENTRIES;
    this.maxAgeMs = limits.maxAgeMs ?? DEFAULT_HISTORY_MAX_AGE_MS;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) throw new RangeError(`history maxEntries must be an integer >= 1, got ${this.maxEntries}`);
    if (!(this.maxAgeMs > 0)) throw new RangeError(`history maxAgeMs must be > 0, got ${this.maxAgeMs}`);
  }

  open(vm: string): StreamPosition {
    const stream = this.stream(vm);
    return { epoch: stream.epoch, offset: stream.head };
  }

  append(vm: string, entry: E): void {
    const stream = this.stream(vm);
    if (entry.offset !== stream.head + 1) {
      throw new RangeError(`history ${vm}: appended offset ${entry.offset}, expected ${stream.head + 1}`);
    }
    stream.ring.push(entry);
    stream.head = entry.offset;
    this.trim(stream);
  }

  read(vm: string, since: StreamPosition): HistoryRead<E> {
    const stream = this.streams.get(vm);
    if (!stream || stream.epoch !== since.epoch) return { reset: 'unknown_epoch' };
    if (since.offset > stream.head) return { reset: 'offset_ahead' };
    this.trim(stream);
    const { ring, head } = stream;
    const oldest = ring.size > 0 ? ring.at(0).offset : head + 1;
    if (since.offset < oldest - 1) return { reset: 'offset_too_old' };
    const entries: E[] = [];
    for (let i = since.offset - oldest + 1; i < ring.size; i++) entries.push(ring.at(i));
    return { entries };
  }

  drop(vm: string): void {
    this.streams.delete(vm);
  }

  /** Continue a stream from a position another store vouches for (a shared store's epoch and head); the ring starts empty. */
  adopt(vm: string, position: StreamPosition): void {
    this.streams.set(vm, { epoch: position.epoch, head: position.offset, ring: new Ring<E>(this.maxEntries) });
  }

  /** Whether the stream is open here. */
  has(vm: string): boolean {
    return this.streams.has(vm);
  }

  private stream(vm: string): Stream<E> {
    let stream = this.streams.get(vm);
    if (!stream) {
      stream = { epoch: newEpoch(), head: 0, ring: new Ring<E>(this.maxEntries) };
      this.streams.set(vm, stream);
    }
    return stream;
  }

  private trim(stream: Stream<E>): void {
    const cutoff = this.now() - this.maxAgeMs;
    while (stream.ring.size > 0 && stream.ring.at(0).at < cutoff) stream.ring.shift();
  }
}
