/**
 * A FIFO ring buffer with a hard capacity. When full, push() drops the oldest item and counts it:
 * a slow consumer loses history, never memory, and can see how much it lost.
 */
export class DropOldestQueue<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;
  private droppedCount = 0;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`queue capacity must be an integer >= 1, got ${capacity}`);
    }
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Items dropped because the queue was full, since creation. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Append; returns the dropped oldest item, if one had to go. */
  push(item: T): T | undefined {
    let evicted: T | undefined;
    if (this.count === this.capacity) {
      evicted = this.shift();
      this.droppedCount++;
    }
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
    return evicted;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return item;
  }

  clear(): void {
    this.items.fill(undefined);
    this.head = 0;
    this.count = 0;
  }
}
