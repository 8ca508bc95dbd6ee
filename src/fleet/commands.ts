/**
 * Job commands through an edge: the edge checks the token (scope, VM allowlist), finds the VM's
 * owner from its lease, and appends the command to that host gateway's command stream; the host
 * runs it through its own job controller (same rules, same answers as a local client gets) and
 * publishes the result on the edge's reply channel.
 *
 * Never a guess: the host acknowledges a command the moment it reads it. No acknowledgement within
 * `ackTimeoutMs`, or no result within the command's budget, and the client gets `outcome_unknown`
 * (the host may still act; the stream will tell). A command read after its deadline is dropped.
 */
import { randomBytes } from 'node:crypto';
import type { CommandMessage } from '../generated/schema-types.js';
import { authorize, type CommandContext, type CommandHandler } from '../gateway/control/controller.js';
import { failed, type CommandResult } from '../gateway/control/results.js';
import type { Principal, Scope } from '../gateway/auth.js';
import type { Logger } from '../log.js';
import { commandDefaults } from '../protocol/messages.js';
import { HOST_START_WAIT_MS, whenReady, type RedisClient } from './connect.js';
import { fleetDefaults } from './fleet-config.js';
import type { FleetStore } from './store.js';

/** Budget of a command that names none: the schema's default, as the controller uses it. */
const DEFAULT_TIMEOUT_MS = commandDefaults().timeoutMs;
/** Time a result needs to travel back after the host's budget ran out. */
const REPLY_GRACE_MS = 2000;
/** How long a host keeps a command's acknowledgement or result for an edge that missed it. */
const REPLY_RECORD_MS = 60_000;

interface WireCommand {
  rid: string;
  reply: string;
  edge: string;
  connection: string;
  deadline: number;
  principal: { name: string; scopes: Scope[]; vms: string[] | null } | null;
  message: CommandMessage;
}

export interface EdgeCommandsOptions {
  edge: string;
  /** @default fleet.commandAckMs's schema default */
  ackTimeoutMs?: number;
  /** Known VMs (unknown ones are refused without a Redis call). */
  knows: (vm: string) => boolean;
  logger: Logger;
}

interface Waiting {
  resolve: (result: CommandResult) => void;
  acked: boolean;
  timers: NodeJS.Timeout[];
}

export class EdgeCommands {
  private readonly waiting = new Map<string, Waiting>();
  private readonly replyChannel: string;
  private readonly ackTimeoutMs: number;

  constructor(private readonly store: FleetStore, private readonly subscriber: RedisClient, private readonly options: EdgeCommandsOptions) {
    this.replyChannel = store.keys.replyChannel(options.edge);
    this.ackTimeoutMs = options.ackTimeoutMs ?? fleetDefaults().commandAckMs;
  }

  /** Subscribe the reply channel (on the edge's subscriber connection, already connected). */
  async start(): Promise<void> {
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.replyChannel) this.onReply(message);
    });
    await this.subscriber.subscribe(this.replyChannel);
  }

  close(): void {
    for (const [rid, w] of this.waiting) this.settle(rid, w, undefined);
  }

  readonly handle: CommandHandler = async (message: CommandMessage, context: CommandContext): Promise<CommandResult> => {
    const refused = authorize(message, context.principal);
    if (refused) return refused;
    if (!this.options.knows(message.vm)) return failed(message.id, 'unknown_vm', `no VM named '${message.vm}' in the fleet`);
    const lease = await this.store.lease(message.vm);
    if (!lease) return failed(message.id, 'vm_disconnected', `no host gateway holds VM '${message.vm}' (its lease expired); nothing was sent`);
    const host = lease.slice(0, lease.lastIndexOf('|'));
    const budget = message.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const rid = randomBytes(9).toString('base64url');
    const principal = context.principal;
    const wire: WireCommand = {
      rid,
      reply: this.replyChannel,
      edge: this.options.edge,
      connection: context.connectionId,
      deadline: Date.now() + budget,
      principal: principal ? { name: principal.name, scopes: [...principal.scopes], vms: principal.vms ? [...principal.vms] : null } : null,
      message,
    };
    return new Promise<CommandResult>((resolve) => {
      const w: Waiting = { resolve, acked: false, timers: [] };
      const unknown = (cause: 'no_ack' | 'no_answer', why: string): void => {
        if (this.waiting.get(rid) === w) this.store.stats.outcomeUnknown[cause]++;
        this.settle(rid, w, failed(message.id, 'outcome_unknown', `host gateway '${host}' ${why}; it may still act on the job: watch the stream`));
      };
      // Pub/sub may lose the reply (see BeatCheck): before any outcome_unknown, and every ack timeout
      // while acknowledged, the host's record of the command says whether it was read and how it ended.
      const recorded = async (): Promise<boolean> => {
        const record = await this.store.redis.get(this.store.keys.reply(rid)).catch(() => null);
        if (record === 'a') w.acked = true;
        else if (record !== null) this.onReply(`c\n${rid}\n${record}`);
        return record !== null;
      };
      const check = (): void => {
        void recorded().then((known) => {
          if (this.waiting.get(rid) !== w) return;
          if (!known && !w.acked) return unknown('no_ack', `did not acknowledge the command within ${this.ackTimeoutMs} ms`);
          w.timers.push(setTimeout(check, this.ackTimeoutMs));
        });
      };
      w.timers.push(
        setTimeout(check, this.ackTimeoutMs),
        setTimeout(() => void recorded().then(() => unknown('no_answer', `did not answer within ${budget} ms`)), budget + REPLY_GRACE_MS),
      );
      this.waiting.set(rid, w);
      context.signal.addEventListener('abort', () => this.settle(rid, w, failed(message.id, 'internal', 'the client went away')), { once: true });
      this.store.stats
        .timed('command', this.store.redis.xadd(this.store.keys.commands(host), 'MAXLEN', '~', 1000, '*', 'd', JSON.stringify(wire)))
        .catch((error: unknown) => {
          this.options.logger.warn({ err: error, vm: message.vm, host }, 'fleet edge: could not queue a command');
          this.settle(rid, w, failed(message.id, 'vm_disconnected', `Redis refused the command for host gateway '${host}'; nothing was sent`));
        });
    });
  };

  private onReply(message: string): void {
    const nl = message.indexOf('\n', 2);
    const rid = message.slice(2, nl === -1 ? undefined : nl);
    const w = this.waiting.get(rid);
    if (!w) return;
    if (message[0] === 'a') w.acked = true;
    else if (message[0] === 'c') {
      let result: CommandResult;
      try {
        result = JSON.parse(message.slice(nl + 1)) as CommandResult;
      } catch {
        return this.options.logger.warn({ rid }, 'fleet edge: a command result that is not JSON; ignored');
      }
      this.settle(rid, w, result);
    }
  }

  private settle(rid: string, w: Waiting, result: CommandResult | undefined): void {
    if (this.waiting.get(rid) !== w) return;
    this.waiting.delete(rid);
    for (const t of w.timers) clearTimeout(t);
    if (!result) return;
    this.store.stats.forward(result.ok ? 'ok' : result.error.code);
    w.resolve(result);
  }
}

export interface HostCommandsOptions {
  host: string;
  /** The host's own job controller. */
  handle: CommandHandler;
  /** VMs this host publishes as owner (others are refused). */
  owns: (vm: string) => boolean;
  /**
   * Read the commands queued after this stream ID: the top when the host started, before it claimed
   * its leases and listened. @default the top when the loop first reads (a command queued between
   * listening and that read would be skipped, unacknowledged: outcome_unknown)
   */
  from?: string;
  logger: Logger;
}

/** Reads this host's command stream (one blocking read per host, not per VM) and answers each command once. */
export class HostCommands {
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly store: FleetStore, private readonly blocking: RedisClient, private readonly options: HostCommandsOptions) {}

  /** The loop starts whether Redis answers yet or not (a host started while Redis was down must still serve commands once it is back). */
  async start(): Promise<void> {
    // Briefly, so the first read finds it ready; never `connect()`'s promise, which a Cluster may never settle (whenReady).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([whenReady(this.blocking), new Promise((resolve) => (timer = setTimeout(resolve, HOST_START_WAIT_MS)))]);
    clearTimeout(timer);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.blocking.disconnect();
    await this.loop?.catch(() => undefined);
  }

  private async run(): Promise<void> {
    const key = this.store.keys.commands(this.options.host);
    // Commands queued before this process started are not ours to run (its predecessor may have).
    let last = this.options.from ?? '$';
    let failing = false;
    while (!this.stopped) {
      try {
        if (last === '$') last = await this.store.commandsTop(this.options.host);
        const reply = (await this.blocking.xread('COUNT', 100, 'BLOCK', 2000, 'STREAMS', key, last)) as [string, [string, string[]][]][] | null;
        failing = false;
        for (const [id, fields] of reply?.[0]?.[1] ?? []) {
          last = id;
          const d = fields[fields.indexOf('d') + 1];
          if (d !== undefined) void this.execute(JSON.parse(d) as WireCommand);
        }
      } catch (error) {
        if (this.stopped) return;
        if (!failing) this.options.logger.warn({ err: error }, 'fleet host: reading the command stream failed; retrying every 500 ms');
        failing = true;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private async execute(cmd: WireCommand): Promise<void> {
    const remaining = cmd.deadline - Date.now();
    if (remaining <= 0) return; // the edge has answered outcome_unknown already
    const record = this.store.keys.reply(cmd.rid);
    const publish = (text: string): Promise<unknown> => this.store.redis.publish(cmd.reply, text).catch(() => undefined);
    await Promise.all([publish(`a\n${cmd.rid}`), this.store.redis.set(record, 'a', 'PX', remaining + REPLY_RECORD_MS).catch(() => undefined)]);
    this.store.stats.commandsServed++;
    let result: CommandResult;
    if (!this.options.owns(cmd.message.vm)) {
      result = failed(cmd.message.id, 'vm_disconnected', `host gateway '${this.options.host}' does not own VM '${cmd.message.vm}'; nothing was sent`);
    } else {
      const principal: Principal | undefined = cmd.principal
        ? { name: cmd.principal.name, scopes: new Set(cmd.principal.scopes), vms: cmd.principal.vms ? new Set(cmd.principal.vms) : null }
        : undefined;
      const message: CommandMessage = { ...cmd.message, timeoutMs: Math.max(1, Math.min(cmd.message.timeoutMs ?? DEFAULT_TIMEOUT_MS, remaining)) };
      result = await this.options
        .handle(message, { principal, connectionId: `${cmd.edge}/${cmd.connection}`, signal: AbortSignal.timeout(remaining + REPLY_GRACE_MS) })
        .catch((error: unknown) => {
          this.options.logger.error({ err: error, vm: cmd.message.vm }, 'fleet host: command failed');
          return failed(cmd.message.id, 'internal', 'the host gateway failed to handle the command');
        });
    }
    const json = JSON.stringify(result);
    await Promise.all([publish(`c\n${cmd.rid}\n${json}`), this.store.redis.set(record, json, 'PX', REPLY_RECORD_MS).catch(() => undefined)]);
  }
}
