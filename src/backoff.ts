/**
 * Reconnect delays, shared by every client that keeps a daemon connection (the QMP client, the
 * libvirt RPC client): exponential, capped, with jitter so that many gateways (or many monitors of
 * one gateway) that lost QEMU or libvirtd at the same instant do not reconnect in lockstep. The exponent counts
 * failed attempts since the last successful negotiation, so a monitor that was fine for hours and
 * then drops is retried quickly again.
 */
import { ConfigError } from './errors.js';

export interface ReconnectPolicy {
  /** Reconnect after EOF, a failed connect, a busy monitor, a protocol error or a dead keepalive. @default true */
  enabled?: boolean;
  /** Delay before the first retry. @default 100 */
  initialDelayMs?: number;
  /** Upper bound of the delay (before jitter). @default 10_000 */
  maxDelayMs?: number;
  /** Growth factor per failed attempt. @default 2 */
  multiplier?: number;
  /** Relative spread: the delay is scaled by a random factor in [1 - jitter, 1 + jitter]. @default 0.2 */
  jitter?: number;
  /** A session must stay up this long before the failure streak is forgotten. @default 10_000 */
  healthyAfterMs?: number;
}

export type ResolvedReconnectPolicy = Required<ReconnectPolicy>;

export const DEFAULT_RECONNECT_POLICY: ResolvedReconnectPolicy = Object.freeze({
  enabled: true,
  initialDelayMs: 100,
  maxDelayMs: 10_000,
  multiplier: 2,
  jitter: 0.2,
  healthyAfterMs: 10_000,
});

export function resolveReconnectPolicy(policy: ReconnectPolicy = {}): ResolvedReconnectPolicy {
  const resolved = { ...DEFAULT_RECONNECT_POLICY, ...stripUndefined(policy) };
  const check = (ok: boolean, field: keyof ReconnectPolicy, rule: string): void => {
    if (!ok) throw new ConfigError(`must be ${rule}, got ${String(resolved[field])}`, `reconnect.${field}`);
  };
  check(Number.isFinite(resolved.initialDelayMs) && resolved.initialDelayMs >= 0, 'initialDelayMs', 'a number >= 0');
  check(Number.isFinite(resolved.maxDelayMs) && resolved.maxDelayMs >= resolved.initialDelayMs, 'maxDelayMs', '>= initialDelayMs');
  check(Number.isFinite(resolved.multiplier) && resolved.multiplier >= 1, 'multiplier', 'a number >= 1');
  check(Number.isFinite(resolved.jitter) && resolved.jitter >= 0 && resolved.jitter <= 1, 'jitter', 'in [0, 1]');
  check(Number.isFinite(resolved.healthyAfterMs) && resolved.healthyAfterMs >= 0, 'healthyAfterMs', 'a number >= 0');
  return resolved;
}

/** Delay before retry number `attempt` (0 for the first retry after a loss). `random` is injectable for tests. */
export function reconnectDelayMs(attempt: number, policy: ResolvedReconnectPolicy, random: () => number = Math.random): number {
  const exponential = policy.initialDelayMs * Math.pow(policy.multiplier, attempt);
  const capped = Math.min(policy.maxDelayMs, exponential);
  const spread = 1 + policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(capped * spread));
}

/**
 * The failure streak of one daemon connection, the delays it earns, and the one pending attempt.
 * Call `sessionUp()` when a session is negotiated and `schedule()` (or `nextDelayMs()`) after every
 * loss or failed attempt: the streak is forgotten only when the session that just ended had stayed
 * up `healthyAfterMs`.
 */
export class ReconnectBackoff {
  private failures = 0;
  private sessionSince: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly policy: ResolvedReconnectPolicy,
    private readonly now: () => number = Date.now,
    private readonly random: () => number = Math.random,
  ) {}

  /** Failed attempts (and short-lived sessions) since the last healthy session. */
  get streak(): number {
    return this.failures;
  }

  /** The streak the next loss will count, judged now: 0 while the current session has proved healthy. */
  get streakIfLostNow(): number {
    return this.healthy() ? 0 : this.failures;
  }

  sessionUp(): void {
    this.sessionSince = this.now();
  }

  /** A loss or failed attempt: the delay before the next attempt (the streak grows by one). */
  nextDelayMs(): number {
    if (this.healthy()) this.failures = 0;
    this.sessionSince = undefined;
    return reconnectDelayMs(this.failures++, this.policy, this.random);
  }

  /**
   * After a loss or a failed attempt: `attempt` runs once the delay this loss earns has passed (one
   * pending at most). Returns the delay; undefined, and nothing scheduled, when reconnecting is off.
   */
  schedule(attempt: () => void): number | undefined {
    if (!this.policy.enabled) return undefined;
    const delayMs = this.nextDelayMs();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      attempt();
    }, delayMs);
    return delayMs;
  }

  /** Drops the pending attempt (a start() connects now; a close() ends for good). */
  cancel(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private healthy(): boolean {
    return this.sessionSince !== undefined && this.now() - this.sessionSince >= this.policy.healthyAfterMs;
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
