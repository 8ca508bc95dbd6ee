/**
 * What PROTOCOL.md asks of every client, per VM stream: remember the last {epoch, offset} applied,
 * drop anything at or below it (a replay after resume), and call `prev` != last applied a gap (the
 * client then resubscribes with `since`). Pure bookkeeping, no I/O.
 */
import type { EventMessage, StreamPosition, VmMessage } from '../generated/schema-types.js';

export type { StreamPosition };

/** The protocol accepts at most this many `since` entries; streams beyond it simply get a snapshot. */
export const MAX_SINCE_ENTRIES = 256;

export type Verdict = 'apply' | 'duplicate' | 'gap';

export class StreamCursors {
  private readonly positions = new Map<string, StreamPosition>();

  /** What a resume sends as `since`. */
  since(): Record<string, StreamPosition> | undefined {
    if (this.positions.size === 0) return undefined;
    return Object.fromEntries([...this.positions].slice(0, MAX_SINCE_ENTRIES));
  }

  get(vm: string): StreamPosition | undefined {
    return this.positions.get(vm);
  }

  /** A snapshot restarts a stream: its `synced` sets the position. */
  forget(vm: string): void {
    this.positions.delete(vm);
  }

  /** `synced`, or a `bookmark` of the epoch we follow. */
  set(vm: string, position: StreamPosition): void {
    this.positions.set(vm, { epoch: position.epoch, offset: position.offset });
  }

  bookmark(vm: string, position: StreamPosition): void {
    const last = this.positions.get(vm);
    if (last?.epoch === position.epoch && position.offset > last.offset) this.set(vm, position);
  }

  /** Decides one stream message and, when it applies, advances the position. */
  accept(message: Pick<EventMessage | VmMessage, 'vm' | 'epoch' | 'offset' | 'prev'>): Verdict {
    const last = this.positions.get(message.vm);
    if (last && last.epoch === message.epoch && message.offset <= last.offset) return 'duplicate';
    if (!last || last.epoch !== message.epoch || message.prev !== last.offset) return 'gap';
    this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
    return 'apply';
  }
}
