/**
 * HostPublisher: a host gateway's write path to Redis. Every stream event is appended locally first
 * (the host keeps serving its own clients whatever Redis does), then copied to Redis in order, per
 * VM, in batches, through the fenced APPEND script.
 *
 * Per VM:  unclaimed --claim--> owner --(fenced by another host)--> not-owner (local only, an error)
 *                                 |  ^
 *        (data lost / overflow)   v  | reopen: Redis's copy restarts at our position with a snapshot
 *                                resync --> reopening (events after the snapshot's cut wait in pending)
 *
 * What Redis has not acknowledged waits in a buffer bounded in events across all VMs. Past the
 * bound the buffer is dropped and every affected stream is re-opened in Redis when it is back: a
 * client resuming across that stretch gets a snapshot with a reason, never a hole. The epoch stays:
 * every offset still names the one event the host served (a new epoch would reset the host's own
 * clients, who lost nothing). Offsets in Redis the host did not write do take a new epoch (resync).
 */
import type { Logger } from '../log.js';
import type { StreamPosition } from '../gateway/history/types.js';
import { newEpoch } from '../gateway/history/memory.js';
import type { StreamEvent } from '../gateway/stream/feed.js';
import type { JobState, VmSnapshot, VmStatus } from '../jobs/types.js';
import { toWire, type WireEvent } from './entry.js';
import { fleetDefaults } from './fleet-config.js';
import type { FleetStore, StoredVm } from './store.js';
import type { BeatHead } from './beat-check.js';
import type { UnackedBook } from './unacked.js';

export interface HostPublisherOptions {
  /** This host gateway's stable name (lease owner, command stream). */
  host: string;
  /** @default fleet.leaseTtlMs's schema default */
  leaseTtlMs?: number;
  /** Events waiting for Redis, all VMs together. @default fleet.maxBuffered's schema default */
  maxBuffered?: number;
  /** Stream entries Redis keeps per VM (MAXLEN ~). @default 1000 */
  maxLen?: number;
  /** Events per APPEND call. @default 100 */
  batch?: number;
  /** The host's current view of a VM (for re-opening Redis's copy). */
  snapshotOf: (vm: string) => VmSnapshot | undefined;
  /** Whether the host still lists a job: what pruning asks, per id, instead of building a snapshot. @default from snapshotOf */
  lists?: (vm: string, id: string) => boolean;
  /** The local history's position of a VM. */
  positionOf: (vm: string) => StreamPosition | undefined;
  /** Hands the jobs Redis holds for a VM continued from an earlier process to the source, which reconciles them. */
  seed?: (vm: string, jobs: readonly JobState[], status: VmStatus) => void;
  /** Restart the local stream at a new epoch (its offsets in Redis were written by another). */
  restart?: (vm: string) => void;
  /** Where the host records streams served beyond Redis's head (none: a crash may reuse offsets). */
  unacked?: UnackedBook;
  logger: Logger;
}

/**
 * Pruning's budget per renewal tick, whatever the load: VMs looked at (round robin over the owned
 * ones), and job ids removed per call (the rest go at the VM's next turn). One PRUNE call blocks its
 * Redis node, so it stays short; a host with 1,000 VMs looks at each every other tick.
 */
const PRUNE_VMS_PER_TICK = 500;
const PRUNE_IDS_PER_CALL = 100;

type Mode = 'unclaimed' | 'owner' | 'resync' | 'reopening' | 'not-owner';

/** An event waiting for Redis, with when it was appended locally (for the publish lag). */
type Pending = WireEvent & { appendedMs: number };

interface VmState {
  mode: Mode;
  lease: string;
  epoch: string;
  /** Redis's head of `epoch` as far as this host knows (its claim, then its acknowledged appends). */
  acked: number;
  pending: Pending[];
  inflight: boolean;
  /** Job ids Redis holds for the VM (to prune what the host forgot). */
  published: Set<string>;
  /** The monitor status Redis holds, when known. */
  status?: string;
  /** Another host's lease, when not ours. */
  owner?: string;
}

export interface PublisherStatus {
  redis: 'up' | 'down';
  buffered: number;
  /** VMs another host owns: served locally only. */
  notOwned: { vm: string; owner: string }[];
  /** VMs whose Redis copy is being restarted (after data loss or overflow). */
  resyncing: string[];
  /** VMs published under our lease. */
  owned: number;
}

export class HostPublisher {
  private readonly vms = new Map<string, VmState>();
  /** VMs that may have work for the write loop (pending events, or a copy to restart): a flush walks these, not every VM. */
  private readonly due = new Set<string>();
  private readonly leaseTtlMs: number;
  private readonly maxBuffered: number;
  private readonly maxLen: number;
  private readonly batch: number;
  private buffered = 0;
  private redisUp = true;
  private scheduled = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Where the next tick's pruning window starts among the owned VMs. */
  private pruneNext = 0;
  /**
   * The heartbeat's run (one per process), its last sequence number, the VMs whose head Redis
   * acknowledged since it, and those whose status or jobs changed outside the stream (BeatCheck).
   */
  private readonly beat = { run: newEpoch(), seq: 0, moved: new Set<string>(), changed: new Set<string>() };

  constructor(private readonly store: FleetStore, private readonly options: HostPublisherOptions) {
    this.leaseTtlMs = options.leaseTtlMs ?? fleetDefaults().leaseTtlMs;
    this.maxBuffered = options.maxBuffered ?? fleetDefaults().maxBuffered;
    this.maxLen = options.maxLen ?? 1000;
    this.batch = options.batch ?? 100;
  }

  start(): void {
    this.renewTimer = setInterval(() => void this.renewAll(), Math.max(200, Math.floor(this.leaseTtlMs / 3)));
    this.renewTimer.unref();
  }

  /**
   * The position a VM's stream starts from: Redis's (a restarted host continues its epoch and
   * offsets), or a fresh local one when Redis is unreachable or another host owns the VM.
   */
  async open(vm: string): Promise<StreamPosition> {
    const fresh = newEpoch();
    try {
      const claim = await this.store.claim(vm, this.options.host, this.leaseTtlMs, fresh);
      if (claim.kind === 'owned') {
        this.notOwned(vm, claim.lease);
        return { epoch: fresh, offset: 0 };
      }
      const state: VmState = { mode: 'owner', lease: claim.lease, epoch: claim.epoch, acked: claim.head, pending: [], inflight: false, published: new Set() };
      this.vms.set(vm, state);
      const stored = claim.kind === 'same' ? await this.seed(vm, state) : undefined;
      // Redis holds what we served up to its head, except from an offset an edge wrote (our lease had lapsed).
      const ours = stored?.gone !== undefined ? Math.min(claim.head, stored.gone - 1) : claim.head;
      if (stored && this.options.unacked?.wasUnacked(vm, claim.epoch, ours)) await this.startOver(vm, state, [...stored.jobs.values()]);
      this.options.unacked?.reopened(vm);
      this.redisUp = true;
      this.options.logger.info({ vm, epoch: state.epoch, head: state.acked, continued: state.epoch === claim.epoch }, 'fleet: VM claimed');
      return { epoch: state.epoch, offset: state.acked };
    } catch (error) {
      this.down(error);
      this.vms.set(vm, { mode: 'unclaimed', lease: '', epoch: fresh, acked: 0, pending: [], inflight: false, published: new Set() });
      this.due.add(vm);
      this.schedule();
      return { epoch: fresh, offset: 0 };
    }
  }

  /**
   * A continued stream: the jobs its subscribers were told of go to the source, so one that ended
   * while no host followed it concludes in the stream (`unknown`, or its true end if QEMU still
   * lists it) instead of staying a phantom; and Redis forgets them once the source does.
   */
  private async seed(vm: string, state: VmState): Promise<StoredVm | undefined> {
    const stored = await this.store.loadVm(vm);
    const jobs = [...(stored?.jobs.values() ?? [])];
    for (const job of jobs) state.published.add(job.id);
    if (stored) this.options.seed?.(vm, jobs, stored.status);
    return stored;
  }

  /**
   * The previous process died having served offsets of this epoch that Redis never acknowledged: a
   * client may hold them, so they must never name other events. Redis's copy restarts at a new
   * epoch with the jobs it held (the reconcile then ends or continues them); resumes get a snapshot.
   */
  private async startOver(vm: string, state: VmState, jobs: readonly JobState[]): Promise<void> {
    const epoch = newEpoch();
    this.options.logger.warn(
      { vm, epoch: state.epoch, head: state.acked, newEpoch: epoch },
      'fleet: the previous process served events Redis never acknowledged (unclean shutdown); the stream starts a new epoch so that no offset names two events',
    );
    const status = this.options.snapshotOf(vm)?.status ?? 'connecting';
    if (!(await this.store.reopen(vm, state.lease, { epoch, offset: 0 }, status, 'unclean shutdown of the host gateway', jobs))) throw new Error(`lease on ${vm} lost while starting a new epoch`);
    state.epoch = epoch;
    state.acked = 0;
  }

  /** Called for every event the host appended locally, in order. */
  enqueue(vm: string, event: StreamEvent): void {
    const state = this.vms.get(vm);
    if (!state || state.mode === 'not-owner') return;
    // Before the event reaches a local client: the record that this stream is ahead of Redis.
    if (state.mode !== 'unclaimed') this.options.unacked?.ahead(vm, state.epoch, event.offset);
    if (state.mode === 'resync') return;
    if (this.buffered >= this.maxBuffered) {
      this.options.logger.error({ buffered: this.buffered }, 'fleet: Redis buffer full; dropping it, the affected streams restart in Redis with a snapshot');
      for (const [name, s] of this.vms) {
        if (s.pending.length > 0 || s.inflight || name === vm) {
          this.buffered -= s.pending.length;
          s.pending = [];
          s.mode = s.mode === 'owner' || s.mode === 'reopening' ? 'resync' : s.mode;
          this.due.add(name);
        }
      }
      this.schedule();
      return;
    }
    state.pending.push({ ...toWire(event), appendedMs: performance.now() });
    this.buffered++;
    this.due.add(vm);
    this.schedule();
  }

  status(): PublisherStatus {
    const notOwned: { vm: string; owner: string }[] = [];
    const resyncing: string[] = [];
    let owned = 0;
    for (const [vm, s] of this.vms) {
      if (s.mode === 'owner') owned++;
      if (s.mode === 'not-owner') notOwned.push({ vm, owner: s.owner ?? '?' });
      if (s.mode === 'resync' || s.mode === 'reopening' || s.mode === 'unclaimed') resyncing.push(vm);
    }
    return { redis: this.redisUp ? 'up' : 'down', buffered: this.buffered, notOwned, resyncing, owned };
  }

  /** Whether the VM's stream is in Redis under our lease. */
  owns(vm: string): boolean {
    return this.vms.get(vm)?.mode === 'owner';
  }

  /** Stop; with `release`, flush what is buffered (briefly) and give the leases up. */
  async close({ release = true, flushMs = 2000 } = {}): Promise<void> {
    if (this.renewTimer) clearInterval(this.renewTimer);
    const deadline = Date.now() + flushMs;
    while (release && this.redisUp && this.buffered > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (!release) return;
    await Promise.all(
      [...this.vms].filter(([, s]) => s.mode === 'owner').map(([vm, s]) => this.store.release(vm, s.lease).catch(() => undefined)),
    );
  }

  // ---- the write loop ---------------------------------------------------------------------------

  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  /** Start a Redis call for every due VM that has none in flight (one in flight re-marks itself when done). */
  private flush(): void {
    for (const vm of this.due) {
      this.due.delete(vm);
      const state = this.vms.get(vm);
      if (!state || state.inflight) continue;
      if (state.mode === 'owner' && state.pending.length > 0) void this.run(vm, state, () => this.appendBatch(vm, state));
      else if (state.mode === 'resync' || state.mode === 'unclaimed') void this.run(vm, state, () => this.resync(vm, state));
    }
  }

  private async run(vm: string, state: VmState, step: () => Promise<void>): Promise<void> {
    state.inflight = true;
    try {
      await step();
      this.up();
    } catch (error) {
      this.down(error);
    } finally {
      state.inflight = false;
    }
    // Still due: more events came meanwhile, or the step failed (the retry timer flushes when Redis is down).
    if ((state.mode === 'owner' && state.pending.length > 0) || state.mode === 'resync' || state.mode === 'unclaimed') this.due.add(vm);
    if (this.redisUp && (state.pending.length > 0 || state.mode === 'resync')) this.schedule();
  }

  private async appendBatch(vm: string, state: VmState): Promise<void> {
    const batch = state.pending.slice(0, this.batch);
    const result = await this.store.append(vm, state.lease, state.epoch, this.maxLen, batch);
    switch (result.kind) {
      case 'ok':
        this.ack(vm, state, result.head);
        for (const e of batch) {
          if (e.kind === 't') state.published.add(e.a);
          else state.status = e.a;
        }
        return;
      case 'head':
        // Written by a call whose reply we lost: drop what is in; behind us: Redis lost writes.
        if (result.head >= batch[0]!.offset) return this.ack(vm, state, result.head);
        return this.lost(vm, state, `Redis has offset ${result.head} for ${vm}, we wrote up to ${batch[0]!.offset - 1}: writes were lost`);
      case 'epoch':
        return this.lost(vm, state, result.epoch ? `Redis holds epoch ${result.epoch} for ${vm}` : `Redis lost the stream of ${vm}`);
      case 'fenced':
        if (result.lease === '') return this.lost(vm, state, `lease on ${vm} expired or was lost`);
        return this.notOwned(vm, result.lease);
    }
  }

  private ack(vm: string, state: VmState, head: number): void {
    let n = 0;
    const now = performance.now();
    const lag = this.store.stats.onPublishLag;
    for (; n < state.pending.length && state.pending[n]!.offset <= head; n++) lag?.((now - state.pending[n]!.appendedMs) / 1000);
    state.pending.splice(0, n);
    this.buffered -= n;
    state.acked = Math.max(state.acked, head);
    this.beat.moved.add(vm);
    // Only an owner's empty buffer means Redis has all it served: after an overflow it is empty because it was dropped.
    if (state.pending.length === 0 && state.mode === 'owner') this.options.unacked?.caughtUp(vm);
  }

  private lost(vm: string, state: VmState, why: string): void {
    this.options.logger.warn({ vm }, `fleet: ${why}; restarting Redis's copy with a snapshot`);
    this.buffered -= state.pending.length;
    state.pending = [];
    state.mode = 'resync';
    this.due.add(vm);
  }

  /** Claim again if needed, then restart Redis's copy at our position with the full current state. */
  private async resync(vm: string, state: VmState): Promise<void> {
    const local = this.options.positionOf(vm);
    if (!local) return;
    const claim = await this.store.claim(vm, this.options.host, this.leaseTtlMs, local.epoch);
    if (claim.kind === 'owned') return this.notOwned(vm, claim.lease);
    state.lease = claim.lease;
    if (claim.kind === 'same' && claim.epoch === local.epoch && claim.head > state.acked) {
      // Offsets of our epoch that we did not write (an edge recorded our lease lapsing): ours beyond
      // `acked` name other events there, so the stream goes on at a new epoch, here and in Redis.
      this.options.logger.warn({ vm, epoch: local.epoch, ours: state.acked, redis: claim.head }, 'fleet: Redis holds offsets of this stream this host did not write (its lease lapsed); new epoch');
      this.options.restart?.(vm);
    }
    // One cut: the snapshot and its position now; what the host appends from here waits in pending for
    // the reopened stream (a stream that never stops would otherwise move on during every round trip).
    const snapshot = this.options.snapshotOf(vm);
    const jobs: JobState[] = snapshot?.jobs ?? [];
    const before = this.options.positionOf(vm)!;
    this.buffered -= state.pending.length;
    state.pending = [];
    state.epoch = before.epoch;
    state.mode = 'reopening';
    let ok = false;
    try {
      ok = await this.store.reopen(vm, claim.lease, before, snapshot?.status ?? 'connecting', '', jobs);
    } finally {
      // Fenced, failed, or overflowed meanwhile: the next round cuts again.
      if (!ok && state.mode === 'reopening') this.lost(vm, state, `could not restart Redis's copy of ${vm}`);
    }
    if (state.mode !== 'reopening') return;
    state.acked = before.offset;
    this.beat.moved.add(vm);
    state.published = new Set(jobs.map((j) => j.id));
    state.mode = 'owner';
    const last = state.pending.at(-1);
    this.options.unacked?.reopened(vm, last ? { epoch: before.epoch, offset: last.offset } : undefined);
    this.options.logger.info({ vm, epoch: before.epoch, head: before.offset }, 'fleet: Redis copy of the stream restarted with a snapshot');
  }

  private notOwned(vm: string, lease: string): void {
    const owner = lease.slice(0, lease.lastIndexOf('|'));
    const state = this.vms.get(vm);
    if (state?.mode === 'not-owner') return;
    if (state) {
      this.buffered -= state.pending.length;
      state.pending = [];
      state.mode = 'not-owner';
      state.owner = owner;
    } else {
      this.vms.set(vm, { mode: 'not-owner', lease: '', epoch: '', acked: 0, pending: [], inflight: false, published: new Set(), owner });
    }
    this.options.logger.error(
      { vm, owner, code: 'GW_ERR_FLEET_NOT_OWNER' },
      `fleet: VM ${vm} is owned by host gateway ${owner}; this gateway serves it to its own clients only and does not publish it (configure each VM on one host)`,
    );
  }

  /**
   * Renew every lease we hold in one batched call (per Redis node): an idle host costs Redis one
   * call per tick, however many VMs it has. A lease found lost restarts that VM's copy (claim again).
   */
  private async renewAll(): Promise<void> {
    if (this.closed) return;
    // VMs with an append in flight too: under steady events a VM is in flight at every tick, and APPEND does not extend the lease.
    const held = [...this.vms].filter(([, s]) => s.mode === 'owner').map(([vm, state]) => ({ vm, state, lease: state.lease }));
    if (held.length === 0) return;
    const stats = this.store.stats;
    let results: (boolean | Error)[];
    try {
      results = await this.store.renewMany(held, this.leaseTtlMs);
    } catch (error) {
      stats.renewals.error += held.length;
      return this.down(error);
    }
    // Edges take this host's silence for longer than the TTL as its leases lapsing (one call per tick, not per VM).
    // A beat lost on its way makes a gap in the sequence: edges then check all of this host's VMs.
    const heads: BeatHead[] = [];
    for (const vm of new Set([...this.beat.moved, ...this.beat.changed])) {
      const state = this.vms.get(vm);
      if (state?.mode === 'owner') heads.push(this.beat.changed.has(vm) ? [vm, state.epoch, state.acked, 1] : [vm, state.epoch, state.acked]);
    }
    this.beat.moved.clear();
    this.beat.changed.clear();
    this.store.heartbeat(this.options.host, this.leaseTtlMs, { run: this.beat.run, seq: ++this.beat.seq, heads }).catch(() => undefined);
    await Promise.all(
      held.map(async ({ vm, state, lease }, i) => {
        const result = results[i];
        if (result instanceof Error || result === undefined) {
          stats.renewals.error++;
          return this.down(result ?? new Error('no renewal reply'));
        }
        if (!result) {
          stats.renewals.lost++;
          // Unless an append or a resync moved on meanwhile (another lease, another mode).
          if (state.mode === 'owner' && state.lease === lease) this.lost(vm, state, `lease on ${vm} lost`);
          return;
        }
        stats.renewals.ok++;
        if (state.inflight) return; // a status sync waits for a quiet moment (the append in flight may carry the change)
        try {
          await this.syncStatus(vm, state);
          this.up();
        } catch (error) {
          this.down(error);
        }
      }),
    );
    await this.pruneSome(held);
    if (this.redisUp) this.schedule();
  }

  /**
   * Pruning runs at every tick whatever the load, on a budget: a window of the owned VMs, round
   * robin, at most PRUNE_IDS_PER_CALL ids each. A VM with an append in flight is pruned too (Redis
   * runs the prune after the append sent before it); only ids with events still unsent wait.
   */
  private async pruneSome(held: readonly { vm: string; state: VmState; lease: string }[]): Promise<void> {
    if (held.length === 0) return;
    const start = this.pruneNext % held.length;
    const count = Math.min(held.length, PRUNE_VMS_PER_TICK);
    this.pruneNext = start + count;
    const window = Array.from({ length: count }, (_, i) => held[(start + i) % held.length]!);
    await Promise.all(
      window.map(async ({ vm, state, lease }) => {
        if (state.mode !== 'owner' || state.lease !== lease) return;
        try {
          await this.prune(vm, state);
        } catch (error) {
          this.down(error);
        }
      }),
    );
  }

  /** A status change the stream did not carry (the monitor came up before the stream was open). */
  private async syncStatus(vm: string, state: VmState): Promise<void> {
    if (state.pending.length > 0) return;
    const status = this.options.snapshotOf(vm)?.status;
    if (status === undefined || status === state.status) return;
    await this.store.setStatus(vm, state.lease, status);
    state.status = status;
    this.beat.changed.add(vm);
  }

  /** Lease renewal, pruning and status now (the host calls it once its gateway is up). */
  syncNow(): Promise<void> {
    return this.renewAll();
  }

  /**
   * Jobs the host stopped listing (expired after they ended) leave Redis's snapshot too; not one with
   * an event still waiting to be sent (the append would put it back after the prune).
   */
  private async prune(vm: string, state: VmState): Promise<void> {
    if (state.published.size === 0) return;
    const lists = this.options.lists ?? this.listsOf(vm);
    const unsent = new Set<string>();
    for (const e of state.pending) if (e.kind === 't') unsent.add(e.a);
    const gone: string[] = [];
    for (const id of state.published) {
      if (lists(vm, id) || unsent.has(id)) continue;
      gone.push(id);
      if (gone.length === PRUNE_IDS_PER_CALL) break;
    }
    if (gone.length === 0) return;
    await this.store.prune(vm, state.lease, gone);
    for (const id of gone) state.published.delete(id);
    this.beat.changed.add(vm);
  }

  /** `lists` from one snapshot of the VM. */
  private listsOf(vm: string): (vm: string, id: string) => boolean {
    const current = new Set((this.options.snapshotOf(vm)?.jobs ?? []).map((j) => j.id));
    return (_vm, id) => current.has(id);
  }

  private up(): void {
    if (this.redisUp) return;
    this.redisUp = true;
    this.options.logger.info({ buffered: this.buffered }, 'fleet: Redis reachable again; catching up');
    this.schedule();
  }

  private down(error: unknown): void {
    if (this.redisUp) this.options.logger.warn({ err: error, buffered: this.buffered }, 'fleet: Redis unreachable; serving local clients and buffering');
    this.redisUp = false;
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.flush();
    }, 500);
    this.retryTimer.unref();
  }
}
