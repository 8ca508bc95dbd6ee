/**
 * Housekeeping that should not land inside a burst of work (the heartbeat's pings inside a fan-out
 * pass), but must not wait for it forever either: a gateway that fans out without pause still pings.
 */
export class BoundedDeferral {
  private timer: NodeJS.Timeout | undefined;
  private waitedMs = 0;

  constructor(
    private readonly busy: () => boolean,
    private readonly run: () => void,
    private readonly stepMs: number,
    private readonly maxMs: number,
  ) {}

  /** A request waits for `busy()` to clear. */
  get pending(): boolean {
    return this.timer !== undefined;
  }

  /** Runs now if not busy, else once `busy()` is false (checked every stepMs), or after maxMs at the latest. */
  request(): void {
    this.timer = undefined;
    if (this.waitedMs < this.maxMs && this.busy()) {
      this.waitedMs += this.stepMs;
      this.timer = setTimeout(() => this.request(), this.stepMs);
      this.timer.unref();
      return;
    }
    this.waitedMs = 0;
    this.run();
  }

  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.waitedMs = 0;
  }
}
