/**
 * HostWatch: an edge's view of which host gateways are alive. A host publishes a heartbeat with
 * every lease renewal tick (every third of its lease TTL, the TTL in the message). A host not heard
 * from for longer than its TTL (plus a third, for one late tick) has let its leases lapse: it was
 * killed, or lost Redis while the edge did not. The edge then records it in each of that host's VM
 * streams (a `vm` event `disconnected` with GONE_REASON, fenced by the lease's absence: see
 * MARK_GONE), so every edge and every resuming client sees the VM stale, not only this edge's.
 * The host's return clears it with its own `connected`.
 *
 * Cost: no Redis call while hosts are heard (the heartbeat is one message per host and tick, not
 * per VM); one call per VM of a host that went silent, then nothing until it is heard again (nor a
 * walk over the VMs once all of that host's carry the mark).
 */
import type { Logger } from '../log.js';

/** The reason every edge writes (one text, so that several edges write it once). */
export const goneReason = (host: string): string => `host gateway ${host} is gone: its lease on this VM lapsed`;

export interface WatchedVm {
  host?: string;
  status: string;
  reason?: string;
}

export interface HostWatchOptions {
  /** The VMs the edge follows, with the host Redis names for each. */
  vms: () => Iterable<[string, WatchedVm]>;
  /** Write the `vm` event; 'ok' or 'done' when the stream says so now, anything else to try later. */
  markGone: (vm: string, host: string) => Promise<string>;
  logger: Logger;
  /** The TTL assumed for a host not heard from yet (an edge that just started). @default 15_000 */
  defaultTtlMs?: number;
  /** @default 1000 */
  checkEveryMs?: number;
  now?: () => number;
}

interface Host {
  heardAt: number;
  ttlMs: number;
  /** Not before this: a VM whose lease still lived, or whose stream moved, is tried again later. */
  retryAt: number;
  logged: boolean;
  /** Silent, and every VM of it carries the mark: no pass needed until it is heard or names a VM again. */
  settled?: boolean;
}

export class HostWatch {
  private readonly hosts = new Map<string, Host>();
  private readonly marking = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(private readonly options: HostWatchOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    this.timer ??= setInterval(() => this.check(), this.options.checkEveryMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  heard(host: string, ttlMs: number): void {
    const known = this.hosts.get(host);
    if (known?.logged) this.options.logger.info({ host }, 'fleet edge: host gateway heard again');
    this.hosts.set(host, { heardAt: this.now(), ttlMs: ttlMs > 0 ? ttlMs : (this.options.defaultTtlMs ?? 15_000), retryAt: 0, logged: false });
  }

  /** A host named by a VM loaded from Redis: it gets one TTL from now to be heard. */
  seen(host: string): void {
    const known = this.hosts.get(host);
    if (!known) this.hosts.set(host, { heardAt: this.now(), ttlMs: this.options.defaultTtlMs ?? 15_000, retryAt: 0, logged: false });
    else known.settled = false; // a VM loaded since may still need its mark
  }

  /** Hosts silent past their TTL; their VMs not yet marked are marked (a pass a second). */
  check(): void {
    const now = this.now();
    const silent = new Map<string, Host>();
    for (const [name, host] of this.hosts) {
      if (!host.settled && now - host.heardAt > (host.ttlMs * 4) / 3 && now >= host.retryAt) silent.set(name, host);
    }
    if (silent.size === 0) return;
    const unmarked = new Set<string>();
    for (const [vm, state] of this.options.vms()) {
      const host = state.host === undefined ? undefined : silent.get(state.host);
      if (!host) continue;
      if (state.status === 'disconnected' && state.reason === goneReason(state.host!)) continue;
      unmarked.add(state.host!);
      if (this.marking.has(vm)) continue;
      if (!host.logged) {
        host.logged = true;
        this.options.logger.warn({ host: state.host, silentMs: now - host.heardAt }, 'fleet edge: host gateway silent past its lease TTL; marking its VMs disconnected');
      }
      this.marking.add(vm);
      this.options
        .markGone(vm, state.host!)
        .then((result) => {
          if (result !== 'ok' && result !== 'done') host.retryAt = this.now() + host.ttlMs / 3;
        })
        .catch((error: unknown) => {
          host.retryAt = this.now() + host.ttlMs / 3;
          this.options.logger.warn({ err: error, vm }, 'fleet edge: could not mark a silent host\'s VM; retrying');
        })
        .finally(() => this.marking.delete(vm));
    }
    // A host gone for good would otherwise cost a walk over every VM each second.
    for (const [name, host] of silent) if (!unmarked.has(name)) host.settled = true;
  }
}
