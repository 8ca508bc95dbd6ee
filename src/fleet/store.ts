/**
 * FleetStore: the fleet's Redis operations, one method per question. Multi-key work stays within
 * one VM's hash slot (scripts, MULTI), so the same code runs on a single server and on a cluster.
 */
import calculateSlot from 'cluster-key-slot';
import { Cluster } from 'ioredis';
import type { JobState, VmStatus } from '../jobs/types.js';
import type { BeatHead } from './beat-check.js';
import type { RedisClient } from './connect.js';
import type { WireEvent, WireKind } from './entry.js';
import { FleetKeys } from './keys.js';
import { ACCESS, APPEND, CLAIM, MARK_GONE, PRUNE, RELEASE, RENEW, RENEW_MANY, REOPEN, STATUS } from './scripts.js';
import { FleetStats } from './stats.js';

export type ClaimResult =
  | { kind: 'owned'; lease: string; ttlMs: number }
  | { kind: 'same' | 'new'; epoch: string; head: number; lease: string };

export type AppendResult = { kind: 'ok'; head: number } | { kind: 'fenced'; lease: string } | { kind: 'epoch'; epoch: string } | { kind: 'head'; head: number };

export interface StoredVm {
  vm: string;
  epoch: string;
  head: number;
  status: VmStatus;
  reason?: string;
  host?: string;
  /** The offset at which an edge recorded that the host was gone (MARK_GONE), if any. */
  gone?: number;
  jobs: Map<string, JobState>;
}

export interface StoredEntry {
  offset: number;
  kind: WireKind;
  body: string;
  q: string;
}

type ScriptFn = (...args: (string | number)[]) => Promise<unknown>;
type Scripted = Record<'bjgAccess' | 'bjgClaim' | 'bjgAppend' | 'bjgReopen' | 'bjgRenew' | 'bjgRenewMany' | 'bjgRelease' | 'bjgPrune' | 'bjgStatus' | 'bjgMarkGone', ScriptFn>;

/** Leases renewed per call at most: one script call blocks its Redis node, keep it short. */
const RENEW_BATCH = 1000;

/** Replies of HGETALL come as objects, XRANGE as [id, [field, value, ...]] pairs. */
type XRangeReply = [string, string[]][];

export class FleetStore {
  readonly keys: FleetKeys;
  readonly stats = new FleetStats();

  constructor(readonly redis: RedisClient, prefix: string) {
    this.keys = new FleetKeys(prefix);
    for (const [name, lua] of [
      ['bjgClaim', CLAIM],
      ['bjgAppend', APPEND],
      ['bjgReopen', REOPEN],
      ['bjgRenew', RENEW],
      ['bjgRelease', RELEASE],
      ['bjgPrune', PRUNE],
      ['bjgStatus', STATUS],
      ['bjgMarkGone', MARK_GONE],
    ] as const) {
      if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 4, lua });
    }
    if (!('bjgRenewMany' in redis)) redis.defineCommand('bjgRenewMany', { numberOfKeys: 1, lua: RENEW_MANY });
    if (!('bjgAccess' in redis)) redis.defineCommand('bjgAccess', { numberOfKeys: 1, lua: ACCESS });
  }

  private get scripts(): Scripted {
    return this.redis as unknown as Scripted;
  }

  private vmKeys(vm: string): string[] {
    const k = this.keys.vm(vm);
    return [k.meta, k.lease, k.stream, k.jobs];
  }

  async claim(vm: string, host: string, ttlMs: number, freshEpoch: string): Promise<ClaimResult> {
    const reply = (await this.stats.timed('claim', this.scripts.bjgClaim(...this.vmKeys(vm), host, ttlMs, freshEpoch))) as [string, string, number, string];
    await this.redis.sadd(this.keys.registry, vm);
    if (reply[0] === 'owned') return { kind: 'owned', lease: reply[1], ttlMs: Number(reply[2]) };
    return { kind: reply[0] as 'same' | 'new', epoch: reply[1], head: Number(reply[2]), lease: reply[3] };
  }

  async append(vm: string, lease: string, epoch: string, maxLen: number, events: readonly WireEvent[]): Promise<AppendResult> {
    const args: (string | number)[] = [lease, epoch, maxLen, this.keys.notifyChannel(vm), vm, events.length];
    for (const e of events) args.push(e.offset, e.kind, e.body, e.q, e.a, e.b);
    const reply = (await this.stats.timed('append', this.scripts.bjgAppend(...this.vmKeys(vm), ...args))) as [string, string | number];
    switch (reply[0]) {
      case 'ok':
        return { kind: 'ok', head: Number(reply[1]) };
      case 'head':
        return { kind: 'head', head: Number(reply[1]) };
      case 'epoch':
        return { kind: 'epoch', epoch: String(reply[1]) };
      default:
        return { kind: 'fenced', lease: String(reply[1]) };
    }
  }

  async reopen(vm: string, lease: string, position: { epoch: string; offset: number }, status: VmStatus, reason: string, jobs: readonly JobState[]): Promise<boolean> {
    const args: (string | number)[] = [lease, position.epoch, position.offset, status, reason, this.keys.notifyChannel(vm), vm];
    for (const job of jobs) args.push(job.id, JSON.stringify(job));
    const reply = (await this.stats.timed('reopen', this.scripts.bjgReopen(...this.vmKeys(vm), ...args))) as string[];
    return reply[0] === 'ok';
  }

  async renew(vm: string, lease: string, ttlMs: number): Promise<boolean> {
    return Number(await this.stats.timed('renew', this.scripts.bjgRenew(...this.vmKeys(vm), lease, ttlMs))) === 1;
  }

  /**
   * Renew many of one host's leases: one script call per Redis node (all of them on a single
   * server), at most RENEW_BATCH leases each. Resolves, per lease in order, whether it is still
   * ours (false: expired or taken), or an Error when its group could not be renewed at all.
   */
  async renewMany(leases: readonly { vm: string; lease: string }[], ttlMs: number): Promise<(boolean | Error)[]> {
    const out: (boolean | Error)[] = new Array(leases.length);
    const groups = new Map<string, number[]>();
    leases.forEach(({ vm }, i) => {
      const node = this.nodeOf(this.keys.vm(vm).lease);
      const group = groups.get(node);
      if (group) group.push(i);
      else groups.set(node, [i]);
    });
    const calls: Promise<void>[] = [];
    for (const indexes of groups.values()) {
      for (let from = 0; from < indexes.length; from += RENEW_BATCH) {
        const batch = indexes.slice(from, from + RENEW_BATCH);
        calls.push(this.renewGroup(leases, batch, ttlMs, out));
      }
    }
    await Promise.all(calls);
    return out;
  }

  private async renewGroup(leases: readonly { vm: string; lease: string }[], batch: number[], ttlMs: number, out: (boolean | Error)[]): Promise<void> {
    const args: string[] = [];
    for (const i of batch) args.push(this.keys.vm(leases[i]!.vm).lease, leases[i]!.lease);
    try {
      this.stats.renewCalls++;
      const reply = (await this.stats.timed('renew', this.scripts.bjgRenewMany(args[0]!, ttlMs, ...args))) as number[];
      batch.forEach((i, n) => (out[i] = Number(reply[n]) === 1));
    } catch (error) {
      // A slot moved between nodes (resharding, failover): one lease at a time finds each its node.
      if (!(this.redis instanceof Cluster)) {
        for (const i of batch) out[i] = error as Error;
        return;
      }
      await Promise.all(
        batch.map(async (i) => {
          this.stats.renewCalls++;
          out[i] = await this.renew(leases[i]!.vm, leases[i]!.lease, ttlMs).catch((e: unknown) => e as Error);
        }),
      );
    }
  }

  /** The cluster node serving a key's slot, as the client last learnt it ('' on a single server). */
  private nodeOf(key: string): string {
    if (!(this.redis instanceof Cluster)) return '';
    return this.redis.slots[calculateSlot(key)]?.[0] ?? '?';
  }

  async release(vm: string, lease: string): Promise<void> {
    await this.scripts.bjgRelease(...this.vmKeys(vm), lease);
  }

  async prune(vm: string, lease: string, ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.scripts.bjgPrune(...this.vmKeys(vm), lease, this.keys.notifyChannel(vm), vm, ...ids);
  }

  async setStatus(vm: string, lease: string, status: VmStatus): Promise<void> {
    await this.scripts.bjgStatus(...this.vmKeys(vm), lease, status, this.keys.notifyChannel(vm), vm);
  }

  /**
   * A host's first calls, made harmless: a script that writes the fleet's keys (see ACCESS) and a
   * heartbeat on a notify channel. An ACL that refuses the keys, scripts or channels rejects with
   * NOPERM here, at start, instead of failing every later call while the host runs unpublished.
   */
  async checkAccess(host: string, ttlMs: number): Promise<void> {
    await Promise.all([this.scripts.bjgAccess(this.keys.registry, ''), this.heartbeat(host, ttlMs)]);
  }

  /**
   * A host's word that it is alive and renews its leases every third of `ttlMs` (edges watch for its
   * silence), with (from the renewal ticks) its beat's sequence number in this run and the heads
   * Redis acknowledged since the previous beat (edges check they missed no notice: see BeatCheck).
   */
  async heartbeat(host: string, ttlMs: number, beat?: { run: string; seq: number; heads: readonly BeatHead[] }): Promise<void> {
    const rest = beat ? `\n${beat.run}\n${beat.seq}\n${JSON.stringify(beat.heads)}` : '';
    await this.redis.publish(this.keys.notifyChannel(host), `h\n${host}\n${ttlMs}${rest}`);
  }

  /** The ID of the last command queued for a host ('0-0': none); a host's command loop reads after it. */
  async commandsTop(host: string): Promise<string> {
    const top = (await this.redis.xrevrange(this.keys.commands(host), '+', '-', 'COUNT', 1)) as [string, string[]][];
    return top[0]?.[0] ?? '0-0';
  }

  /** Edge: record in the stream that the VM's host is gone (see MARK_GONE). */
  async markGone(vm: string, host: string, position: { epoch: string; offset: number }, body: string, reason: string): Promise<'ok' | 'leased' | 'moved' | 'done'> {
    const reply = (await this.scripts.bjgMarkGone(...this.vmKeys(vm), host, position.epoch, position.offset, body, reason, this.keys.notifyChannel(vm), vm)) as string[];
    return reply[0] as 'ok' | 'leased' | 'moved' | 'done';
  }

  async lease(vm: string): Promise<string | null> {
    return this.redis.get(this.keys.vm(vm).lease);
  }

  async listVms(): Promise<string[]> {
    return this.redis.smembers(this.keys.registry);
  }

  /** A VM's position, status and jobs, read in one transaction (a consistent cut). */
  async loadVm(vm: string): Promise<StoredVm | undefined> {
    const k = this.keys.vm(vm);
    const replies = await this.stats.timed('load', this.redis.multi().hgetall(k.meta).hgetall(k.jobs).exec());
    const meta = (replies?.[0]?.[1] ?? {}) as Record<string, string>;
    const jobs = (replies?.[1]?.[1] ?? {}) as Record<string, string>;
    if (meta.epoch === undefined) return undefined;
    return {
      vm,
      epoch: meta.epoch,
      head: Number(meta.head ?? 0),
      status: (meta.status as VmStatus | undefined) ?? 'connecting',
      ...(meta.reason ? { reason: meta.reason } : {}),
      ...(meta.host ? { host: meta.host } : {}),
      ...(meta.gone ? { gone: Number(meta.gone) } : {}),
      jobs: new Map(Object.entries(jobs).map(([id, json]) => [id, JSON.parse(json) as JobState])),
    };
  }

  /** The epoch, head and the entries after `since` (at most `limit`), in one transaction. */
  async readAfter(vm: string, since: number, limit: number): Promise<{ epoch: string | undefined; head: number; entries: StoredEntry[] }> {
    const k = this.keys.vm(vm);
    const replies = await this.stats.timed('read', this.redis.multi().hmget(k.meta, 'epoch', 'head').xrange(k.stream, `(0-${since}`, '+', 'COUNT', limit).exec());
    const [epoch, head] = (replies?.[0]?.[1] ?? []) as (string | null)[];
    const range = (replies?.[1]?.[1] ?? []) as XRangeReply;
    return { epoch: epoch ?? undefined, head: Number(head ?? 0), entries: range.map(parseEntry) };
  }

  /**
   * Epoch and head of many VMs, in one round trip: a pipeline on a single server; on a cluster the
   * client's auto-pipelining sends one batch per node (a pipeline there must stay within one node).
   */
  async heads(vms: readonly string[]): Promise<Map<string, { epoch: string | undefined; head: number }>> {
    const result = new Map<string, { epoch: string | undefined; head: number }>();
    const set = (vm: string, [epoch, head]: (string | null)[]): void => void result.set(vm, { epoch: epoch ?? undefined, head: Number(head ?? 0) });
    if (this.redis instanceof Cluster) {
      await Promise.all(vms.map(async (vm) => set(vm, await this.redis.hmget(this.keys.vm(vm).meta, 'epoch', 'head'))));
      return result;
    }
    const pipeline = this.redis.pipeline();
    for (const vm of vms) pipeline.hmget(this.keys.vm(vm).meta, 'epoch', 'head');
    const replies = (await this.stats.timed('read', pipeline.exec())) ?? [];
    vms.forEach((vm, i) => {
      const [error, reply] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      set(vm, reply as (string | null)[]);
    });
    return result;
  }
}

function parseEntry([id, fields]: [string, string[]]): StoredEntry {
  const map: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i]!] = fields[i + 1]!;
  return { offset: Number(id.slice(2)), kind: map.k as WireKind, body: map.b ?? '', q: map.q ?? '' };
}
