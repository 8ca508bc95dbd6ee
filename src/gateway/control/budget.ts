/**
 * How long one command may take, and who may stop it: its own timeout, the client going away, the
 * controller shutting down. One signal for all three; its `reason` says which one fired.
 */

export type StopReason = 'timeout' | 'client-gone' | 'shutdown';

export class CommandBudget {
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly deadline: number;
  private readonly unlisten: (() => void)[] = [];

  constructor(
    readonly timeoutMs: number,
    client: AbortSignal,
    shutdown: AbortSignal,
  ) {
    this.deadline = performance.now() + timeoutMs;
    this.timer = setTimeout(() => this.stop('timeout'), timeoutMs);
    this.follow(client, 'client-gone');
    this.follow(shutdown, 'shutdown');
  }

  /** Aborts with a StopReason. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Milliseconds left, at least 1. */
  remainingMs(): number {
    return Math.max(1, Math.ceil(this.deadline - performance.now()));
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const unlisten of this.unlisten) unlisten();
  }

  private follow(signal: AbortSignal, reason: StopReason): void {
    if (signal.aborted) {
      this.stop(reason);
      return;
    }
    const onAbort = (): void => this.stop(reason);
    signal.addEventListener('abort', onAbort, { once: true });
    this.unlisten.push(() => signal.removeEventListener('abort', onAbort));
  }

  private stop(reason: StopReason): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }
}

export function isStopReason(value: unknown): value is StopReason {
  return value === 'timeout' || value === 'client-gone' || value === 'shutdown';
}
