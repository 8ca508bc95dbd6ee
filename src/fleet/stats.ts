/**
 * What a fleet gateway counts for /metrics (src/fleet/metrics.ts), kept as plain numbers on the
 * store every fleet part shares. Latencies are handed to an observer the metrics install, so the
 * hot path does no work when nobody scrapes.
 */

/** The Redis operations timed as round trips (one label value each). */
export type RedisOp = 'claim' | 'append' | 'renew' | 'reopen' | 'read' | 'load' | 'command';

export class FleetStats {
  /** Lease renewals by result: still ours, lost (another value or expired), or the call failed. */
  readonly renewals = { ok: 0, lost: 0, error: 0 };
  /** Redis calls made to renew leases (one per tick and Redis node when idle). */
  renewCalls = 0;
  /** Commands an edge forwarded to a host, by how they ended (`ok`, or the result's error code). */
  readonly forwarded = new Map<string, number>();
  /** Forwarded commands answered `outcome_unknown`, by cause: no acknowledgement, or no answer in time. */
  readonly outcomeUnknown = { no_ack: 0, no_answer: 0 };
  /** Commands a host ran for edges. */
  commandsServed = 0;

  onRedisLatency: ((op: RedisOp, seconds: number) => void) | undefined;
  /** From the local append to Redis's acknowledgement of the event (host). */
  onPublishLag: ((seconds: number) => void) | undefined;
  /** From the host's QMP receive to this edge reading the event's notice (edge; clocks of one machine or synced hosts). */
  onReadLag: ((seconds: number) => void) | undefined;

  /** Time one Redis round trip (failures too: a slow failure is worth seeing). */
  async timed<T>(op: RedisOp, call: Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      return await call;
    } finally {
      this.onRedisLatency?.(op, (performance.now() - started) / 1000);
    }
  }

  forward(outcome: string): void {
    this.forwarded.set(outcome, (this.forwarded.get(outcome) ?? 0) + 1);
  }
}
