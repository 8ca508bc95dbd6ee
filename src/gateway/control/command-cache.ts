/**
 * Idempotency of job commands: one answer per (connection, command id). A repeated id joins the
 * pending answer or gets the settled one, so a retrying client never causes a second QMP call.
 *
 * Bounded twice: settled answers expire after `ttlMs`, and at most `maxEntries` are kept (the oldest
 * settled answer makes room; when every entry is still pending, the new command is refused).
 */

export interface CommandCacheOptions {
  /** Entries kept at most, pending and settled together. @default 10_000 */
  maxEntries: number;
  /** How long a settled answer is kept for repeats, ms. @default 600_000 */
  ttlMs: number;
}

interface Entry<T> {
  fingerprint: string;
  answer: Promise<T>;
  /** performance.now() when it settled; undefined while pending. */
  settledAt: number | undefined;
}

export type CacheLookup<T> =
  | { kind: 'miss' }
  | { kind: 'hit'; answer: Promise<T> }
  /** The id was used before for a different command. */
  | { kind: 'conflict'; fingerprint: string };

export class CommandCache<T> {
  // A Map iterates in insertion order, so the first settled entry found is the oldest.
  private readonly entries = new Map<string, Entry<T>>();
  private pendingCount = 0;

  constructor(
    private readonly options: CommandCacheOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get pending(): number {
    return this.pendingCount;
  }

  lookup(key: string, fingerprint: string): CacheLookup<T> {
    const entry = this.entries.get(key);
    if (entry === undefined) return { kind: 'miss' };
    if (entry.settledAt !== undefined && this.now() - entry.settledAt > this.options.ttlMs) {
      this.entries.delete(key);
      return { kind: 'miss' };
    }
    return entry.fingerprint === fingerprint ? { kind: 'hit', answer: entry.answer } : { kind: 'conflict', fingerprint: entry.fingerprint };
  }

  /**
   * Starts the command and stores its pending answer; undefined (nothing started) when the cache is
   * full of pending commands. `keep(answer)` decides, once it settles, whether repeats see it: an
   * answer given without acting (e.g. the client left before anything was sent) is recomputed instead.
   */
  add(key: string, fingerprint: string, start: () => Promise<T>, keep: (value: T) => boolean): Promise<T> | undefined {
    if (!this.makeRoom()) return undefined;
    const answer = start();
    const entry: Entry<T> = { fingerprint, answer, settledAt: undefined };
    this.entries.set(key, entry);
    this.pendingCount++;
    const settle = (value: T | undefined): void => {
      this.pendingCount--;
      if (this.entries.get(key) !== entry) return;
      if (value === undefined || !keep(value)) this.entries.delete(key);
      else entry.settledAt = this.now();
    };
    answer.then(settle, () => settle(undefined));
    return answer;
  }

  private makeRoom(): boolean {
    if (this.entries.size < this.options.maxEntries) return true;
    this.evictExpired();
    if (this.entries.size < this.options.maxEntries) return true;
    for (const [key, entry] of this.entries) {
      if (entry.settledAt !== undefined) {
        this.entries.delete(key);
        return true;
      }
    }
    return false;
  }

  private evictExpired(): void {
    const oldestAllowed = this.now() - this.options.ttlMs;
    for (const [key, entry] of this.entries) {
      if (entry.settledAt !== undefined && entry.settledAt < oldestAllowed) this.entries.delete(key);
    }
  }
}
