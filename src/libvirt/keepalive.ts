/**
 * Our half of libvirt's keepalive program (virkeepalive.c semantics): after `intervalMs` without
 * any message from the daemon, send a PING; every further silent interval, another; when `count`
 * PINGs went unanswered, the daemon is dead. Any inbound message counts as an answer, as in
 * libvirt. Answering the daemon's own PINGs is the client's job (it needs no timer).
 *
 * `heard()` runs per inbound message, so it only stamps a time; the timer re-arms itself for the
 * remaining silence instead of being reset on every message.
 */
import { performance } from 'node:perf_hooks';

export const DEFAULT_KEEPALIVE = Object.freeze({ intervalMs: 5_000, count: 5 });

export class KeepaliveTimer {
  private lastHeard = performance.now();
  private unanswered = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly count: number,
    private readonly ping: () => void,
    private readonly dead: () => void,
  ) {}

  start(): void {
    this.lastHeard = performance.now();
    this.arm(this.intervalMs);
  }

  heard(): void {
    this.lastHeard = performance.now();
    this.unanswered = 0;
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(delayMs: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, delayMs));
    this.timer.unref?.();
  }

  private fire(): void {
    this.timer = undefined;
    const silentMs = performance.now() - this.lastHeard;
    const dueMs = this.intervalMs * (this.unanswered + 1);
    if (silentMs < dueMs) {
      this.arm(dueMs - silentMs);
      return;
    }
    if (this.unanswered >= this.count) {
      this.dead();
      return;
    }
    this.unanswered++;
    this.ping();
    this.arm(this.intervalMs);
  }
}
