/**
 * EdgeFeed: the StreamFeed of an edge gateway, fed from Redis instead of QMP. It follows every VM
 * the host gateways publish and hands their events to the gateway core already numbered, with the
 * very bytes the owning host serves (same epoch, offsets, body).
 *
 * The notification path costs Redis calls per event, never per idle VM: one subscriber connection
 * listens to a fixed set of partitioned channels carrying each stored event whole. A notice that
 * does not continue a VM's head (lost or reordered) triggers an XRANGE catch-up of that VM; a lost
 * subscriber connection triggers one resync of every VM's head; an epoch change or a stream Redis
 * no longer holds reloads the VM (its subscribers then resume and get a snapshot with a reason).
 * Pub/sub may lose notices silently (see BeatCheck), so the hosts' heartbeats are checked for heads
 * this edge has not reached, and a resume is answered only once the edge holds Redis's head.
 */
import type { HistoryRead, MaybePromise, StreamPosition } from '../gateway/history/types.js';
import { progressEvent, streamEvent } from '../gateway/stream/events.js';
import type { FeedSink, StreamEvent, StreamFeed } from '../gateway/stream/feed.js';
import type { JobState, ProgressUpdate, VmSnapshot, VmStatus } from '../jobs/types.js';
import type { Logger } from '../log.js';
import type { RedisClient } from './connect.js';
import { BeatCheck } from './beat-check.js';
import { decodeWire, type WireKind } from './entry.js';
import type { FleetHistory } from './history.js';
import { goneReason, HostWatch } from './host-watch.js';
import type { Stage } from './start-deadline.js';
import type { FleetStore, StoredVm } from './store.js';

interface Notice {
  vm: string;
  epoch: string;
  offset: number;
  kind: WireKind;
  q: string;
  body: string;
}

interface EdgeVm {
  epoch: string;
  head: number;
  status: VmStatus;
  reason?: string;
  host?: string;
  jobs: Map<string, JobState>;
  /** A catch-up or reload runs; notices wait here (bounded). */
  busy: boolean;
  /** The running catch-up, for a resume that waits for it. */
  catching?: Promise<void>;
  /** Reloads of status and jobs asked (BeatCheck `changed`, resync) and done: a catch-up also reloads while done < asked. */
  refresh: { asked: number; done: number };
  waiting: Notice[];
}

export interface EdgeFeedOptions {
  logger: Logger;
  /** Notices held per VM while it catches up; past it the catch-up simply reads further. @default 10_000 */
  maxWaiting?: number;
  /** Told when the notify connection goes down or comes back. */
  onRedis?: (up: boolean) => void;
  /** How long a head a heartbeat lists may wait for its notice before the edge catches up (BeatCheck). */
  beatGraceMs?: number;
  /** Runs each stage of `start` (the edge's start deadline). @default no deadline */
  stage?: Stage;
}

/** VMs loaded at once when the edge starts or resyncs. */
const DISCOVER_BATCH = 500;

const NO_SINK: FeedSink = { event: () => undefined, progress: () => undefined, reset: () => undefined };

export class EdgeFeed implements StreamFeed {
  private sink: FeedSink = NO_SINK;
  private readonly states = new Map<string, EdgeVm>();
  private readonly loading = new Map<string, Notice[]>();
  private readonly maxWaiting: number;
  private redisUp = false;
  /** VMs resumed in this tick, whose heads are read from Redis together at its end. */
  private vouching: { vms: Set<string>; done: Promise<void> } | undefined;
  private started = false;
  private stopped = false;
  /** Redis calls made on behalf of notices (catch-ups, loads); the benchmark reports it. */
  readonly counters = { notices: 0, catchUps: 0, loads: 0, resyncs: 0, vouches: 0, refreshes: 0 };
  /** Hosts that stop renewing their leases: their VMs are marked disconnected in the stream. */
  private readonly watch: HostWatch;
  /** Notices this edge missed, found from the hosts' heartbeats. */
  readonly beats: BeatCheck;

  constructor(
    private readonly store: FleetStore,
    private readonly subscriber: RedisClient,
    private readonly history: FleetHistory,
    private readonly options: EdgeFeedOptions,
  ) {
    this.maxWaiting = options.maxWaiting ?? 10_000;
    this.watch = new HostWatch({ vms: () => this.states, markGone: (vm, host) => this.markGone(vm, host), logger: options.logger });
    this.beats = new BeatCheck({
      position: (vm) => (this.states.has(vm) ? this.position(vm) : undefined),
      behind: (vm) => void (this.states.has(vm) ? this.catchUp(vm) : this.discover(vm)),
      changed: (vm) => void (this.states.has(vm) ? this.catchUp(vm, true) : this.discover(vm)),
      missed: (host) => {
        options.logger.warn({ host }, 'fleet edge: missed heartbeats of a host (notices lost); checking its VMs against Redis');
        void this.resync(host);
      },
      ...(options.beatGraceMs !== undefined ? { graceMs: options.beatGraceMs } : {}),
    });
  }

  /**
   * Subscribe (on the subscriber the edge has seen ready), then load every VM Redis knows. Notices
   * that arrive meanwhile are kept and applied in order.
   */
  async start(sink: FeedSink): Promise<void> {
    const stage: Stage = this.options.stage ?? ((_name, work) => work);
    this.sink = sink;
    this.subscriber.on('message', (channel: string, message: string) => this.onMessage(message));
    this.subscriber.on('ready', () => {
      if (!this.started || this.stopped) return;
      this.setRedis(true);
      void this.resync();
    });
    this.subscriber.on('close', () => this.setRedis(false));
    await stage('subscribe to the notify channels', this.subscriber.subscribe(...this.store.keys.notifyChannels()));
    this.setRedis(true);
    const vms = await stage("list the fleet's VMs", this.store.listVms());
    await stage(`load ${vms.length} VM(s)`, this.discoverAll(vms));
    this.started = true;
    this.watch.start();
  }

  stop(): void {
    this.stopped = true;
    this.watch.stop();
    this.beats.stop();
    this.sink = NO_SINK;
    this.subscriber.disconnect();
  }

  get redisConnected(): boolean {
    return this.redisUp;
  }

  // ---- StreamFeed --------------------------------------------------------------------------------

  vms(): string[] {
    return [...this.states.keys()];
  }

  snapshot(): VmSnapshot[] {
    return [...this.states].map(([vm, s]) => this.vmSnapshot(vm, s));
  }

  snapshotOf(vms: readonly string[]): VmSnapshot[] {
    const out: VmSnapshot[] = [];
    for (const vm of vms) {
      const s = this.states.get(vm);
      if (s) out.push(this.vmSnapshot(vm, s));
    }
    return out;
  }

  job(vm: string, id: string): JobState | undefined {
    return this.states.get(vm)?.jobs.get(id);
  }

  position(vm: string): StreamPosition {
    const state = this.states.get(vm);
    return state ? { epoch: state.epoch, offset: state.head } : { epoch: '', offset: 0 };
  }

  /**
   * A resume is answered from a head Redis vouches for: notices can be lost (a cluster forwards
   * PUBLISH between nodes at most once; ioredis moves a cluster subscriber silently), so the edge's
   * own head may lag. Redis's heads of every VM resumed in this tick are read in one pipelined call,
   * and the edge catches up to them before the history is read and the cut is made.
   */
  read(vm: string, since: StreamPosition): MaybePromise<HistoryRead<StreamEvent>> {
    if (!this.states.has(vm)) return { reset: 'unknown_epoch' };
    return this.vouch(vm).then(() => (this.states.has(vm) ? this.history.read(vm, since) : { reset: 'unknown_epoch' as const }));
  }

  knows(vm: string): boolean {
    return this.states.has(vm);
  }

  /**
   * While Redis is out of reach the edge cannot vouch for anything: VMs disconnected, jobs stale.
   * A VM the stream says is disconnected (its host is gone, or its monitor down) has stale jobs too.
   */
  private vmSnapshot(vm: string, s: EdgeVm): VmSnapshot {
    if (this.redisUp && s.status !== 'disconnected') return { vm, status: s.status, jobs: [...s.jobs.values()] };
    return { vm, status: 'disconnected', jobs: [...s.jobs.values()].map((job) => ({ ...job, stale: true })) };
  }

  // ---- notices -----------------------------------------------------------------------------------

  private onMessage(message: string): void {
    const type = message[0];
    const first = message.indexOf('\n', 2);
    const vm = message.slice(2, first === -1 ? undefined : first);
    if (type === 'e') {
      const f = splitN(message, 7);
      if (!f) return;
      const [, vmName = '', epoch = '', offset = '', kind = '', q = '', body = ''] = f;
      this.counters.notices++;
      const readLag = this.store.stats.onReadLag;
      if (readLag && q !== '') readLag((performance.timeOrigin + performance.now() - Number(q)) / 1000);
      this.onNotice({ vm: vmName, epoch, offset: Number(offset), kind: kind as WireKind, q, body });
    } else if (type === 'r') {
      if (this.states.has(vm)) void this.catchUp(vm);
      else void this.discover(vm);
    } else if (type === 'x') {
      const state = this.states.get(vm);
      if (state) for (const id of JSON.parse(message.slice(first + 1)) as string[]) state.jobs.delete(id);
    } else if (type === 's') {
      const state = this.states.get(vm);
      if (state) state.status = message.slice(first + 1) as VmStatus;
    } else if (type === 'h') {
      // A host, not a VM: h, host, TTL, then (hosts since the BeatCheck) run, sequence, heads.
      const f = splitN(message, 6);
      this.watch.heard(vm, Number(f ? f[2] : message.slice(first + 1)));
      if (f) this.beats.heard(vm, f[3]!, Number(f[4]), f[5]!);
    } else if (type === 'p') {
      if (this.states.has(vm)) this.sink.progress(progressEvent(JSON.parse(message.slice(first + 1)) as ProgressUpdate));
    }
  }

  private onNotice(notice: Notice): void {
    const state = this.states.get(notice.vm);
    if (!state) {
      const held = this.loading.get(notice.vm);
      if (held) {
        if (held.length < this.maxWaiting) held.push(notice);
      } else {
        void this.discover(notice.vm, [notice]);
      }
      return;
    }
    if (state.busy) {
      if (state.waiting.length < this.maxWaiting) state.waiting.push(notice);
      return;
    }
    this.apply(notice.vm, state, notice);
  }

  private apply(vm: string, state: EdgeVm, notice: Notice): void {
    if (notice.epoch === state.epoch && notice.offset === state.head + 1) {
      this.emit(vm, state, notice.offset, notice.kind, notice.body, notice.q);
    } else if (notice.epoch !== state.epoch || notice.offset > state.head + 1) {
      // A skipped notice, or another epoch (or a stale notice of the old one): Redis decides.
      void this.catchUp(vm);
    }
    // same epoch, offset <= head: already applied (a catch-up read it first)
  }

  /** Apply the next event: state and head first, then the core (the feed contract's order). */
  private emit(vm: string, state: EdgeVm, offset: number, kind: WireKind, body: string, q: string): void {
    const decoded = decodeWire(vm, offset, kind, body, q);
    if (decoded.transition) {
      const { job } = decoded.transition;
      state.jobs.set(job.id, job);
    } else {
      const { status, reason } = decoded.vm;
      state.status = status;
      if (reason !== undefined) state.reason = reason;
      else delete state.reason;
    }
    state.head = offset;
    const event = decoded.event;
    this.history.append(vm, event);
    this.sink.event(event);
  }

  // ---- catch-up, load, resync --------------------------------------------------------------------

  /**
   * Load many VMs, a bounded number at a time (thousands of loads at once would time out on a busy
   * Redis), retrying the ones that failed: an idle VM would otherwise stay unknown until its next event.
   */
  private async discoverAll(names: readonly string[]): Promise<void> {
    let todo = names.filter((vm) => !this.states.has(vm));
    for (let attempt = 0; todo.length > 0 && attempt < 5 && !this.stopped; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 500 * attempt));
      for (let i = 0; i < todo.length; i += DISCOVER_BATCH) await Promise.all(todo.slice(i, i + DISCOVER_BATCH).map((vm) => this.discover(vm)));
      todo = todo.filter((vm) => !this.states.has(vm));
    }
    if (todo.length > 0) this.options.logger.warn({ vms: todo.length }, 'fleet edge: some VMs could not be loaded; they appear with their next event or the next resync');
  }

  private async discover(vm: string, held: Notice[] = []): Promise<void> {
    if (this.states.has(vm) || this.loading.has(vm)) return;
    this.loading.set(vm, held);
    try {
      this.counters.loads++;
      const stored = await this.store.loadVm(vm);
      if (!stored) return;
      // Found by a live event (its host just started it): from the start of its stream while Redis has
      // it, so that subscribers to every VM get its first events, as on the host.
      const first = held.length > 0 && stored.head > 0 ? await this.store.readAfter(vm, 0, 1) : undefined;
      const fromStart = first?.epoch === stored.epoch && first.entries[0]?.offset === 1;
      const state = this.fromStored(fromStart ? { vm, epoch: stored.epoch, head: 0, status: 'connecting', ...(stored.host !== undefined ? { host: stored.host } : {}), jobs: new Map() } : stored);
      const waiting = this.loading.get(vm) ?? [];
      this.states.set(vm, state);
      this.history.adopt(vm, { epoch: state.epoch, offset: state.head });
      this.drain(vm, state, waiting);
      if (fromStart && state.head < stored.head) void this.catchUp(vm);
    } catch (error) {
      this.options.logger.warn({ err: error, vm }, 'fleet edge: could not load VM; retrying on its next event');
    } finally {
      this.loading.delete(vm);
    }
  }

  /** Resolves once `vm` has caught up with the head Redis holds when this tick ends (see read). */
  private vouch(vm: string): Promise<void> {
    if (!this.vouching) {
      const vms = new Set<string>();
      const done = Promise.resolve().then(() => {
        this.vouching = undefined;
        return this.reachHeads([...vms]);
      });
      this.vouching = { vms, done };
    }
    this.vouching.vms.add(vm);
    return this.vouching.done;
  }

  /** Catch each VM up to the head Redis holds now; throws when one cannot be (the resume is refused, not answered stale). */
  private async reachHeads(vms: string[]): Promise<void> {
    this.counters.vouches++;
    const heads = await withRetries(() => this.store.heads(vms));
    await Promise.all(
      [...heads].map(async ([vm, redis]) => {
        // Rounds: a catch-up already running may have read Redis before this head, and one may fail
        // while Redis is back but not serving yet (a restart loading its AOF): a short pause between.
        for (let round = 0; round < VOUCH_ROUNDS; round++) {
          const state = this.states.get(vm);
          if (!state || redis.epoch === undefined || (state.epoch === redis.epoch && state.head >= redis.head)) return;
          const before = state.epoch;
          if (round > 0) await pause(VOUCH_PAUSE_MS * round);
          await this.catchUp(vm);
          if (state.epoch !== before) return; // reloaded at Redis's epoch: its subscribers get a snapshot with a reason
        }
        throw new Error(`fleet edge: could not catch ${vm} up to Redis's head ${redis.head}`);
      }),
    );
  }

  /**
   * Read what the notices skipped, in order, then apply what waited meanwhile. When Redis no longer
   * continues our head (another epoch, or entries gone), the VM is reloaded: its subscribers resume.
   * With `refresh`, also take the status and jobs Redis holds (changed outside the stream: `s`, `x`).
   * One at a time per VM: a second call gets the running one (which then refreshes too).
   */
  private catchUp(vm: string, refresh = false): Promise<void> {
    const state = this.states.get(vm);
    if (!state) return Promise.resolve();
    if (refresh) state.refresh.asked++;
    if (!state.busy) {
      state.busy = true;
      state.catching = this.runCatchUp(vm, state);
    }
    return state.catching ?? Promise.resolve();
  }

  private async runCatchUp(vm: string, state: EdgeVm): Promise<void> {
    try {
      do {
        const asked = state.refresh.asked;
        if (state.refresh.done < asked) {
          await this.refresh(vm, state);
          state.refresh.done = asked;
        } else {
          await this.readUp(vm, state);
        }
      } while (state.refresh.done < state.refresh.asked);
    } catch (error) {
      this.options.logger.warn({ err: error, vm }, 'fleet edge: catch-up failed; the next event or resync retries');
    } finally {
      state.busy = false;
    }
    this.drain(vm, state, state.waiting.splice(0));
  }

  private async readUp(vm: string, state: EdgeVm): Promise<void> {
    for (;;) {
      this.counters.catchUps++;
      const { epoch, head, entries } = await this.store.readAfter(vm, state.head, 1000);
      if (epoch !== state.epoch || (head > state.head && entries[0]?.offset !== state.head + 1)) return this.reload(vm, state);
      for (const e of entries) this.emit(vm, state, e.offset, e.kind, e.body, e.q);
      if (entries.length === 0 || state.head >= head) return;
    }
  }

  /**
   * Status and jobs as Redis holds them, taken when Redis's cut is at the edge's own head (notices
   * wait meanwhile: the VM is busy), so they match the events the edge delivered; behind, catch up first.
   */
  private async refresh(vm: string, state: EdgeVm): Promise<void> {
    for (let round = 0; round < 4; round++) {
      this.counters.refreshes++;
      const stored = await this.store.loadVm(vm);
      if (!stored) return;
      if (stored.epoch === state.epoch && stored.head === state.head) {
        state.status = stored.status;
        if (stored.reason !== undefined) state.reason = stored.reason;
        else delete state.reason;
        state.jobs = stored.jobs;
        return;
      }
      const before = state.epoch;
      await this.readUp(vm, state);
      if (state.epoch !== before) return; // reloaded from Redis: status and jobs with it
    }
    throw new Error(`fleet edge: could not read ${vm}'s status and jobs at the edge's head`);
  }

  /** Take Redis's state of the VM as the new truth. */
  private async reload(vm: string, state: EdgeVm): Promise<void> {
    this.counters.loads++;
    const stored = await this.store.loadVm(vm);
    if (!stored) return;
    const fresh = this.fromStored(stored);
    state.epoch = fresh.epoch;
    state.head = fresh.head;
    state.status = fresh.status;
    state.jobs = fresh.jobs;
    if (fresh.host !== undefined) state.host = fresh.host;
    if (fresh.reason !== undefined) state.reason = fresh.reason;
    else delete state.reason;
    this.options.logger.info({ vm, epoch: state.epoch, head: state.head }, 'fleet edge: stream re-opened by its host; its subscribers resume');
    this.history.adopt(vm, { epoch: state.epoch, offset: state.head });
    this.sink.reset(vm);
  }

  private drain(vm: string, state: EdgeVm, notices: Notice[]): void {
    for (const notice of notices) {
      if (state.busy) {
        state.waiting.push(notice);
        continue;
      }
      this.apply(vm, state, notice);
    }
  }

  /**
   * After the notify connection was lost (or a host's beats were): every VM (of that host) once,
   * a bounded number at a time: its head, and its status and jobs (a lost `s` or `x` notice moves no head).
   */
  private async resync(host?: string): Promise<void> {
    this.counters.resyncs++;
    try {
      void this.discoverAll(await this.store.listVms());
      const vms = [...this.states].filter(([, s]) => host === undefined || s.host === host).map(([vm]) => vm);
      for (let i = 0; i < vms.length && !this.stopped; i += DISCOVER_BATCH) await Promise.all(vms.slice(i, i + DISCOVER_BATCH).map((vm) => this.catchUp(vm, true)));
    } catch (error) {
      this.options.logger.warn({ err: error }, 'fleet edge: resync failed; retrying on the next reconnect');
    }
  }

  /** Record in the VM's stream, at the head this edge holds, that its host is gone (HostWatch). */
  private async markGone(vm: string, host: string): Promise<string> {
    const state = this.states.get(vm);
    if (!state || !this.redisUp || state.busy) return 'later';
    const at = { epoch: state.epoch, offset: state.head };
    const { body } = streamEvent({ kind: 'vm', vm, status: 'disconnected', reason: goneReason(host), at: Date.now() }, at.epoch, at.offset + 1);
    return this.store.markGone(vm, host, at, body, goneReason(host));
  }

  private fromStored(stored: StoredVm): EdgeVm {
    if (stored.host !== undefined) this.watch.seen(stored.host);
    return {
      epoch: stored.epoch,
      head: stored.head,
      status: stored.status,
      ...(stored.reason !== undefined ? { reason: stored.reason } : {}),
      ...(stored.host !== undefined ? { host: stored.host } : {}),
      jobs: stored.jobs,
      busy: false,
      refresh: { asked: 0, done: 0 },
      waiting: [],
    };
  }

  private setRedis(up: boolean): void {
    if (this.redisUp === up) return;
    this.redisUp = up;
    this.options.logger[up ? 'info' : 'warn']({}, up ? 'fleet edge: Redis notify connection up' : 'fleet edge: Redis notify connection lost; VMs shown stale');
    this.options.onRedis?.(up);
  }
}

/** A resume's catch-up rounds and the pause that grows between them (about 2 s in all before it is refused). */
const VOUCH_ROUNDS = 6;
const VOUCH_PAUSE_MS = 130;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A Redis read retried through the same short pauses (a Redis just back may refuse it once). */
async function withRetries<T>(read: () => Promise<T>): Promise<T> {
  for (let round = 1; ; round++) {
    try {
      return await read();
    } catch (error) {
      if (round >= VOUCH_ROUNDS) throw error;
      await pause(VOUCH_PAUSE_MS * round);
    }
  }
}

/** The first n-1 newline-separated fields, then the rest (the body may be anything but a newline). */
function splitN(text: string, n: number): string[] | undefined {
  const out: string[] = [];
  let from = 0;
  for (let i = 0; i < n - 1; i++) {
    const at = text.indexOf('\n', from);
    if (at === -1) return undefined;
    out.push(text.slice(from, at));
    from = at + 1;
  }
  out.push(text.slice(from));
  return out;
}
