/** Commands sent to a QMP monitor that await their reply, and their timeouts. */
import type { DeadlineLane, Expiring } from '../deadlines.js';
import type { QmpReply } from './types.js';

/** Ids of our commands; callers cannot collide with them because they never choose ids. */
export const COMMAND_ID_PREFIX = '__bjg#';

/** The next command id of a client (its counter runs across connections). */
export function nextCommandId(counter: { commandCount: number }): string {
  return `${COMMAND_ID_PREFIX}${++counter.commandCount}`;
}

export type SentCommand = { execute: string; arguments?: Record<string, unknown> };

/** Who hears that a command's time is up: the client that sent it. */
export interface CommandOwner {
  timedOut(command: PendingCommand): void;
}

/**
 * A command awaiting its reply. Its timeout is a wait in the process's shared lane of that length
 * (src/deadlines.ts), not a timer of its own: 1,000 idle monitors send 100 polls a second.
 */
export class PendingCommand implements Expiring {
  handle = -1;

  constructor(
    readonly owner: CommandOwner,
    readonly id: string,
    readonly sent: SentCommand,
    readonly timeoutMs: number,
    readonly resolve: (reply: QmpReply<unknown>) => void,
    readonly reject: (error: Error) => void,
    readonly lane: DeadlineLane,
  ) {}

  expire(): void {
    this.owner.timedOut(this);
  }

  /** Settled another way (reply, loss, close): its wait is dropped. */
  cancelTimeout(): void {
    this.lane.cancel(this.handle, this);
  }
}

/**
 * Commands awaiting a reply, by id. An idle monitor has one at a time (its poll): that one is held in
 * a field, since a Map's table is reallocated every few set/delete pairs, garbage per poll.
 */
export class PendingCommands {
  private one: PendingCommand | undefined;
  private readonly more = new Map<string, PendingCommand>();

  get size(): number {
    return (this.one ? 1 : 0) + this.more.size;
  }

  add(command: PendingCommand): void {
    if (this.one === undefined) this.one = command;
    else this.more.set(command.id, command);
  }

  get(id: string): PendingCommand | undefined {
    return this.one?.id === id ? this.one : this.more.get(id);
  }

  delete(id: string): void {
    if (this.one?.id === id) this.one = undefined;
    else this.more.delete(id);
  }

  /** Empties the table; returns what it held. */
  takeAll(): PendingCommand[] {
    const all = this.one ? [this.one, ...this.more.values()] : [...this.more.values()];
    this.one = undefined;
    this.more.clear();
    return all;
  }
}
