/**
 * One deadline over an edge gateway's start, and the stage the start stands at. Each stage bounds
 * itself where it can (the connect wait, command timeouts), but not everything a client library
 * awaits settles (ioredis leaves a Cluster's `connect()` pending after a failed ready check): this
 * bounds the sum, so a start that stalls fails naming its stage (GW_ERR_FLEET_START_TIMEOUT)
 * instead of hanging before it serves.
 */
import { FleetStartTimeoutError } from '../errors.js';

/** Runs one named stage of a start (identity where no deadline applies). */
export type Stage = <T>(name: string, work: Promise<T>) => Promise<T>;

export class StartDeadline {
  private current: string | undefined;
  private readonly passed: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly expired: Promise<never>;

  constructor(
    private readonly what: string,
    readonly timeoutMs: number,
  ) {
    this.expired = new Promise<never>((_, reject) => {
      this.timer = setTimeout(() => reject(this.error()), timeoutMs);
    });
    // Reported by the stage running when it fires; none running (between stages) is no rejection of its own.
    this.expired.catch(() => undefined);
  }

  /** `work` as one stage: its result, or the deadline's error if the deadline passes first. */
  readonly stage: Stage = async <T>(name: string, work: Promise<T>): Promise<T> => {
    this.current = name;
    const result = await Promise.race([work, this.expired]);
    this.passed.push(name);
    this.current = undefined;
    return result;
  };

  /** The start is over (done or failed): the deadline no longer applies. */
  end(): void {
    clearTimeout(this.timer);
  }

  private error(): FleetStartTimeoutError {
    const at = this.current ?? `after ${this.passed.at(-1) ?? 'nothing'}`;
    const done = this.passed.length > 0 ? this.passed.join(', ') : 'nothing';
    return new FleetStartTimeoutError(`${this.what} did not start within ${this.timeoutMs} ms (fleet.startTimeoutMs): stuck at ${at} (done: ${done})`, at, [...this.passed]);
  }
}
