/**
 * Subscribe and unsubscribe: who may follow which streams, and the cut between a subscription's
 * catch-up (snapshot or replay) and its live tail.
 *
 * The cut: a new subscription holds live events from the moment it exists. When the history reads
 * are in (at once for an in-memory history), one tick sends `subscribed`, per stream the replay or
 * the snapshot and `synced`, and starts the stream's cursor at the head offset read in that same
 * tick; then the held events go out, minus those at or below the cursor. Nothing falls between
 * catch-up and tail and nothing is sent twice.
 */
import type { SubscribeMessage } from '../generated/schema-types.js';
import type { Logger } from '../log.js';
import { canRead } from './auth.js';
import type { Connection } from './connection.js';
import type { FanOut } from './fanout.js';
import type { HistoryRead, MaybePromise, ResetReason, StreamPosition } from './history/types.js';
import type { GatewayStats } from './stats.js';
import type { StreamEvent, StreamFeed } from './stream/feed.js';
import { ClientSubscription } from './subscription.js';

export interface SubscribeOptions {
  maxPerConnection: number;
  /** `progress.intervalMs` of a subscribe that names none. */
  progressIntervalMs: number;
  /** Live events a subscription may hold while its history read is pending. */
  maxHeld: number;
}

export class Subscriptions {
  private readonly byConnection = new Map<Connection, Map<string, ClientSubscription>>();

  constructor(
    private readonly feed: StreamFeed,
    private readonly fanout: FanOut,
    private readonly stats: GatewayStats,
    private readonly log: Logger,
    private readonly options: SubscribeOptions,
  ) {}

  subscribe(connection: Connection, message: SubscribeMessage): void {
    const { id, sub: subId } = message;
    const mine = this.of(connection);
    if (mine.has(subId)) return connection.sendError(id, 'duplicate_sub', `subscription ${JSON.stringify(subId)} already exists on this connection`, undefined, subId);
    if (!connection.principal.scopes.has('read')) {
      return connection.sendError(id, 'forbidden', `token ${JSON.stringify(connection.principal.name)} has no read scope`);
    }
    if (mine.size >= this.options.maxPerConnection) {
      return connection.sendError(id, 'too_many_subscriptions', `at most ${this.options.maxPerConnection} subscriptions per connection`);
    }
    const known = new Set(this.feed.vms());
    for (const [i, vm] of (message.filter?.vms ?? []).entries()) {
      if (!known.has(vm)) return connection.sendError(id, 'unknown_vm', `no VM named ${JSON.stringify(vm)}`, [{ path: `/filter/vms/${i}`, message: 'unknown VM' }]);
      if (!canRead(connection.principal, vm)) {
        return connection.sendError(id, 'forbidden', `token ${JSON.stringify(connection.principal.name)} may not read VM ${JSON.stringify(vm)}`, [
          { path: `/filter/vms/${i}`, message: 'not allowed for this token' },
        ]);
      }
    }
    const sub = new ClientSubscription(subId, message.filter, connection, {
      progressIntervalMs: message.progress?.intervalMs ?? this.options.progressIntervalMs,
      maxHeld: this.options.maxHeld,
    });
    const vms = this.feed.vms().filter((vm) => sub.coversVm(vm));

    // From here on live events reach the subscription, which holds them until the cut is sent.
    mine.set(subId, sub);
    this.fanout.add(sub);
    this.stats.subscriptions = this.fanout.size;

    // A Map of own keys only: a VM named `toString` must not find Object.prototype's.
    const since = new Map<string, StreamPosition>();
    for (const [vm, position] of Object.entries(message.since ?? {})) if (position) since.set(vm, position);
    const reads = new Map<string, MaybePromise<HistoryRead<StreamEvent>>>();
    for (const vm of vms) {
      const position = since.get(vm);
      if (position) reads.set(vm, this.feed.read(vm, position));
    }
    if ([...reads.values()].some((r) => r instanceof Promise)) {
      const names = [...reads.keys()];
      Promise.all(reads.values())
        .then((results) => this.cut(connection, sub, id, vms, new Map(names.map((vm, i) => [vm, results[i]!])), since))
        .catch((error: unknown) => {
          this.log.error({ err: error, connection: connection.id }, 'history read failed');
          this.remove(connection, sub);
          connection.sendError(id, 'internal', 'could not read the stream history; retry');
        });
    } else {
      this.cut(connection, sub, id, vms, reads as Map<string, HistoryRead<StreamEvent>>, since);
    }
  }

  /** Ends a subscription by name; false when the connection has none of that name. */
  unsubscribe(connection: Connection, subId: string): boolean {
    const sub = this.byConnection.get(connection)?.get(subId);
    if (!sub) return false;
    this.remove(connection, sub);
    return true;
  }

  /** The connection closed: end all its subscriptions. */
  closed(connection: Connection): void {
    for (const sub of this.byConnection.get(connection)?.values() ?? []) this.remove(connection, sub);
    this.byConnection.delete(connection);
  }

  /** Connections with a subscription that covers `vm`. */
  connectionsFollowing(vm: string): Connection[] {
    return [...this.byConnection].filter(([, subs]) => [...subs.values()].some((sub) => sub.coversVm(vm))).map(([connection]) => connection);
  }

  private of(connection: Connection): Map<string, ClientSubscription> {
    let subs = this.byConnection.get(connection);
    if (!subs) this.byConnection.set(connection, (subs = new Map()));
    return subs;
  }

  private remove(connection: Connection, sub: ClientSubscription): void {
    const subs = this.byConnection.get(connection);
    if (subs?.get(sub.id) === sub) subs.delete(sub.id);
    this.fanout.remove(sub);
    sub.dispose();
    this.stats.subscriptions = this.fanout.size;
  }

  /**
   * Send `subscribed`, then per stream the replay or the snapshot and `synced`, then go live.
   *
   * A recovered stream is the history's answer plus the live events held while it was read (none
   * when the history is synchronous); together they must reach the head without a hole, otherwise
   * the stream falls back to a snapshot: never a partial replay.
   */
  private cut(
    connection: Connection,
    sub: ClientSubscription,
    requestId: string,
    vms: string[],
    reads: Map<string, HistoryRead<StreamEvent>>,
    since: ReadonlyMap<string, StreamPosition>,
  ): void {
    if (connection.closed || this.byConnection.get(connection)?.get(sub.id) !== sub) return;
    const snapshot = new Map((this.feed.snapshotOf?.(vms) ?? this.feed.snapshot()).map((s) => [s.vm, s]));
    const streams: Record<string, { mode: 'recovered' | 'snapshot'; epoch: string; offset: number; reason?: ResetReason }> = Object.create(null);
    const positions = new Map<string, StreamPosition>();
    const replays = new Map<string, StreamEvent[]>();
    for (const vm of vms) {
      const position = this.feed.position(vm);
      positions.set(vm, position);
      const read = reads.get(vm);
      let reason: ResetReason | undefined = read && 'reset' in read ? read.reset : undefined;
      if (read && 'entries' in read) {
        // Held while the history was read, then what the fan-out has not handed out yet (a pass may be waiting for the event loop).
        const live = [...sub.heldEvents(), ...this.fanout.queuedEvents(vm)];
        const replay = contiguousReplay(since.get(vm)!.offset, read.entries, live, vm, position.offset);
        if (replay) replays.set(vm, replay);
        else reason = 'offset_too_old';
      }
      if (replays.has(vm)) {
        streams[vm] = { mode: 'recovered', ...position };
        this.stats.resumes.recovered++;
      } else {
        streams[vm] = { mode: 'snapshot', ...position, ...(reason ? { reason } : {}) };
        if (reason) this.stats.resumes.snapshot++;
      }
    }
    connection.send('subscribed', JSON.stringify({ type: 'subscribed', id: requestId, sub: sub.id, streams }));

    for (const vm of vms) {
      const position = positions.get(vm)!;
      const replay = replays.get(vm);
      if (replay) {
        sub.startAt(vm, since.get(vm)!.offset);
        for (const event of replay) sub.replay(event);
      } else {
        sub.sendStates(vm, position, snapshot.get(vm)?.jobs ?? []);
      }
      // The stream is now accounted for up to the cut, whatever the filter let through.
      sub.startAt(vm, position.offset);
      sub.sendSynced(vm, position, snapshot.get(vm)?.status ?? 'connecting');
    }
    sub.goLive();
  }
}

/**
 * The events from `sinceOffset` (exclusive) to `head` (inclusive): the history's entries, then the
 * live events of `vm` held during the read or still queued. Undefined when they leave a hole.
 */
function contiguousReplay(sinceOffset: number, entries: readonly StreamEvent[], held: readonly StreamEvent[], vm: string, head: number): StreamEvent[] | undefined {
  const replay: StreamEvent[] = [];
  let last = sinceOffset;
  for (const event of [...entries, ...held]) {
    if (event.vm !== vm || event.offset <= last || event.offset > head) continue;
    if (event.offset !== last + 1) return undefined;
    replay.push(event);
    last = event.offset;
  }
  return last === head ? replay : undefined;
}
