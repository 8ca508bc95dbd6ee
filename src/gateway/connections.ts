/**
 * The open connections and what comes in on them: the welcome, inbound limits and validation, and
 * routing each message (ping, subscribe, unsubscribe, command) to whoever answers it.
 */
import type { CommandMessage, ResultMessage, VmStreamInfo } from '../generated/schema-types.js';
import type { Logger } from '../log.js';
import { CloseCode } from '../protocol/codes.js';
import { PROTOCOL_VERSION, welcomeVmLimit } from '../protocol/messages.js';
import { answerToRefusal, type ParseResult } from '../protocol/validate.js';
import { canRead, type Principal } from './auth.js';
import { Connection, type BackpressureOptions, type GatewaySocket, type InboundLimits } from './connection.js';
import type { GatewayStats } from './stats.js';
import type { StreamFeed } from './stream/feed.js';
import type { Subscriptions } from './subscribe.js';

export interface CommandContext {
  principal: Principal;
  connectionId: string;
  /** Aborted when the client disconnects (a pending `when: ready` must then be dropped). */
  signal: AbortSignal;
}

/** Job control plugs in here; the core only parses and forwards. */
export type CommandHandler = (message: CommandMessage, ctx: CommandContext) => Promise<ResultMessage>;

export interface ConnectionContext {
  principal: Principal;
  /** For logs only. */
  remoteAddress?: string;
}

export interface ConnectionHooks {
  message(text: string): void;
  closed(code: number, reason: string): void;
}

export interface ConnectionsOptions {
  parse: (raw: string) => ParseResult;
  heartbeatMs: number;
  maxCommandsInFlight: number;
  commandHandler?: CommandHandler;
  backpressure?: BackpressureOptions;
  inbound?: InboundLimits;
}

export class Connections {
  private readonly open = new Set<Connection>();
  private readonly welcomeLimit = welcomeVmLimit();
  private nextId = 1;

  constructor(
    private readonly feed: StreamFeed,
    private readonly subscriptions: Subscriptions,
    private readonly stats: GatewayStats,
    private readonly log: Logger,
    private readonly options: ConnectionsOptions,
  ) {}

  get count(): number {
    return this.open.size;
  }

  all(): Connection[] {
    return [...this.open];
  }

  opened(socket: GatewaySocket, ctx: ConnectionContext): ConnectionHooks {
    const connection = new Connection(
      `c${this.nextId++}`,
      ctx.principal,
      socket,
      this.stats,
      (c, code) => this.closed(c, code),
      this.options.backpressure,
      this.options.inbound,
    );
    this.open.add(connection);
    this.stats.connections = this.open.size;
    this.log.debug({ connection: connection.id, principal: ctx.principal.name, remote: ctx.remoteAddress }, 'connection opened');
    const scopes = [...ctx.principal.scopes];
    connection.send('welcome', JSON.stringify({ type: 'welcome', protocol: PROTOCOL_VERSION, ...this.welcomeVms(ctx.principal), heartbeatMs: this.options.heartbeatMs, scopes }));
    return {
      message: (text) => this.onMessage(connection, text),
      closed: (code, reason) => connection.closedBy(code, reason),
    };
  }

  /**
   * The VM streams a principal may read: all of them up to the schema's bound, else only their
   * number (a welcome listing 10,000 VMs is ~800 KB per connection; GET /v1/jobs pages instead).
   */
  private welcomeVms(principal: Principal): { vms: VmStreamInfo[]; vmCount: number } {
    const readable = this.feed.vms().filter((vm) => canRead(principal, vm));
    if (readable.length > this.welcomeLimit) return { vms: [], vmCount: readable.length };
    const statuses = new Map((this.feed.snapshotOf?.(readable) ?? this.feed.snapshot()).map((s) => [s.vm, s.status]));
    return { vms: readable.map((vm) => ({ vm, ...this.feed.position(vm), status: statuses.get(vm) ?? 'connecting' })), vmCount: readable.length };
  }

  private onMessage(connection: Connection, text: string): void {
    if (connection.closed) return;
    const admitted = connection.admitInbound();
    if (admitted !== 'ok') {
      if (admitted === 'first-drop') connection.sendError(undefined, 'rate_limited', 'too many messages; slow down (this and further messages are dropped)');
      if (admitted === 'close') connection.close(CloseCode.TooManyRequests, 'inbound message rate limit exceeded');
      return;
    }
    if (connection.closeIfOverHardMark()) return;
    const parsed = this.options.parse(text);
    if (!parsed.ok) {
      // A refused command with a readable id gets its `result`, so a client waiting for it is answered.
      const answer = answerToRefusal(parsed);
      connection.send(answer.type, JSON.stringify(answer));
      if (connection.noteInvalid()) connection.close(CloseCode.InvalidMessage, 'too many invalid messages');
      return;
    }
    const message = parsed.message;
    switch (message.type) {
      case 'ping':
        connection.send('pong', JSON.stringify({ type: 'pong', id: message.id }));
        return;
      case 'subscribe':
        this.subscriptions.subscribe(connection, message);
        return;
      case 'unsubscribe':
        if (!this.subscriptions.unsubscribe(connection, message.sub)) {
          return connection.sendError(message.id, 'unknown_sub', `no subscription ${JSON.stringify(message.sub)} on this connection`, undefined, message.sub);
        }
        connection.send('unsubscribed', JSON.stringify({ type: 'unsubscribed', id: message.id, sub: message.sub }));
        return;
      case 'command':
        this.command(connection, message);
        return;
    }
  }

  private command(connection: Connection, message: CommandMessage): void {
    const reply = (result: ResultMessage): void => connection.send('result', JSON.stringify(result));
    const handler = this.options.commandHandler;
    if (!handler) {
      reply({ type: 'result', id: message.id, ok: false, error: { code: 'internal', message: 'job control is not enabled on this gateway' } });
      return;
    }
    const max = this.options.maxCommandsInFlight;
    if (connection.commands.size >= max && !connection.commands.has(message.id)) {
      reply({ type: 'result', id: message.id, ok: false, error: { code: 'too_many_commands', message: `at most ${max} commands in flight per connection` } });
      return;
    }
    const controller = new AbortController();
    // A repeated id is the handler's business (idempotency); keep the first controller for abort.
    if (!connection.commands.has(message.id)) connection.commands.set(message.id, controller);
    handler(message, { principal: connection.principal, connectionId: connection.id, signal: controller.signal })
      .catch((error: unknown): ResultMessage => {
        this.log.error({ err: error, connection: connection.id, command: message.id }, 'command handler failed');
        return { type: 'result', id: message.id, ok: false, error: { code: 'internal', message: 'internal error while handling the command' } };
      })
      .then((result) => {
        if (connection.commands.get(message.id) === controller) connection.commands.delete(message.id);
        reply(result);
      });
  }

  private closed(connection: Connection, code: number): void {
    this.open.delete(connection);
    this.subscriptions.closed(connection);
    this.stats.connections = this.open.size;
    this.stats.disconnect(code);
    this.log.debug({ connection: connection.id, code }, 'connection closed');
  }
}
