/**
 * BeatCheck: how an edge learns that it missed notices, even for a VM that stays quiet afterwards.
 *
 * Notices are Redis pub/sub, delivered at most once: a Redis Cluster forwards a PUBLISH to the other
 * nodes over bus links it drops and re-opens when a node is slow to answer pings (the message is
 * then lost for that node's subscribers), and ioredis moves a cluster subscriber to another node,
 * re-subscribing, without telling the client. A gap shows at the VM's next notice; a quiet VM sends
 * none, so the edge would serve a stale head for as long as it stays quiet.
 *
 * So each host heartbeat carries its sequence number and the heads Redis acknowledged for the
 * host's VMs since the previous beat. A moment later (the beat and the notices travel different
 * paths on a cluster) every listed head the edge has not reached is caught up; a missed beat (a
 * gap in the sequence) checks every VM of that host against Redis.
 *
 * A status set or jobs pruned outside the stream (`s`, `x` notices) leave the head where it was, so
 * the beat flags those VMs (a fourth element, 1) and the edge reloads their status and jobs: it
 * cannot tell from the head whether it heard every such notice.
 *
 * Cost: nothing per idle VM; per beat, one comparison per VM that moved, one read per VM flagged.
 */
import type { StreamPosition } from '../gateway/history/types.js';

/** One VM's head as Redis acknowledged it: [vm, epoch, offset], and 1 when its status or jobs changed outside the stream. */
export type BeatHead = [string, string, number] | [string, string, number, 1];

export interface BeatCheckOptions {
  /** The position the edge holds for a VM it follows. */
  position: (vm: string) => StreamPosition | undefined;
  /** The edge is behind a listed head (or does not know the VM): catch it up from Redis. */
  behind: (vm: string) => void;
  /** The VM's status or jobs changed outside the stream: take them from Redis (at the head it holds). */
  changed: (vm: string) => void;
  /** Beats of this host were missed: compare every VM of it with Redis. */
  missed: (host: string) => void;
  /** How long a listed head may wait for its notice. @default 1000 */
  graceMs?: number;
}

export class BeatCheck {
  private readonly hosts = new Map<string, { run: string; seq: number }>();
  private readonly timers = new Set<NodeJS.Timeout>();
  /** Heads found behind, and beats found missing (tests and the benchmark read them). */
  readonly counters = { behind: 0, missed: 0, changed: 0 };

  constructor(private readonly options: BeatCheckOptions) {}

  /** A beat of `host`'s publisher `run` (a new one per process), number `seq` (1, 2, ...). */
  heard(host: string, run: string, seq: number, heads: string): void {
    const last = this.hosts.get(host);
    this.hosts.set(host, { run, seq });
    // The first beat this edge hears of a host needs no past: the edge loaded Redis after subscribing.
    if (last && (last.run === run ? seq !== last.seq + 1 : seq !== 1)) {
      this.counters.missed++;
      this.options.missed(host);
    }
    let listed: unknown;
    try {
      listed = JSON.parse(heads);
    } catch {
      return;
    }
    if (!Array.isArray(listed) || listed.length === 0) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.compare(listed as unknown[]);
    }, this.options.graceMs ?? 1000);
    timer.unref();
    this.timers.add(timer);
  }

  stop(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private compare(heads: unknown[]): void {
    for (const entry of heads) {
      if (!Array.isArray(entry)) continue;
      const [vm, epoch, offset, changed] = entry as unknown[];
      if (typeof vm !== 'string' || typeof epoch !== 'string' || typeof offset !== 'number') continue;
      if (changed === 1) {
        this.counters.changed++;
        this.options.changed(vm);
        continue;
      }
      const at = this.options.position(vm);
      if (at && at.epoch === epoch && at.offset >= offset) continue;
      this.counters.behind++;
      this.options.behind(vm);
    }
  }
}
