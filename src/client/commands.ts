/**
 * The client's job commands awaiting their `result`: bounded, matched by id, answered once. A refusal
 * is an answer (a `result` with ok false), not an exception; a connection that drops while one is in
 * flight leaves its outcome unknown (resend with the same `id` to learn it).
 */
import type { CommandMessage, ResultMessage, ServerMessage } from '../generated/schema-types.js';
import { settleOnce, type CallOptions } from './calls.js';
import { ClientBusyError, ClientOutcomeUnknownError, ClientTimeoutError, type ClientError } from './errors.js';

export type CommandRequest = Omit<CommandMessage, 'type' | 'id'> & { id?: string };

/** Time the client waits for a result beyond the command's own `timeoutMs` (the gateway answers by then). */
const RESULT_GRACE_MS = 10_000;

export interface CommandLink {
  isOpen(): boolean;
  /** Resolves once connected (rejects on close, timeout, abort). */
  whenOpen(options: CallOptions): Promise<void>;
  /** False when the socket is gone: the message was not sent. */
  send(message: object): boolean;
}

export class CommandBook {
  private readonly pending = new Map<string, { resolve: (r: ResultMessage) => void; reject: (e: ClientError) => void }>();
  private count = 0;
  /** Commands waiting for a connection before they can be sent (they count against the limit). */
  private awaitingOpen = 0;

  constructor(
    private readonly link: CommandLink,
    private readonly limit: number,
    /** Unique per client: the gateway caches command ids per token. */
    private readonly idPrefix: string,
  ) {}

  async send(request: CommandRequest, options: CallOptions = {}): Promise<ResultMessage> {
    if (this.pending.size + this.awaitingOpen >= this.limit) throw new ClientBusyError(`${this.limit} commands already await their result (maxPendingCommands)`);
    const started = Date.now();
    if (!this.link.isOpen()) {
      this.awaitingOpen++;
      try {
        await this.link.whenOpen(options);
      } finally {
        this.awaitingOpen--;
      }
    }
    const id = request.id ?? `${this.idPrefix}-${++this.count}`;
    const message = { ...request, type: 'command', id };
    const budget = options.timeoutMs ?? (request.timeoutMs !== undefined ? request.timeoutMs + RESULT_GRACE_MS : undefined);
    const remaining = budget === undefined ? undefined : Math.max(0, budget - (Date.now() - started));
    return settleOnce<ResultMessage>(
      { ...options, ...(remaining !== undefined ? { timeoutMs: remaining } : {}) },
      (resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        if (!this.link.send(message)) reject(new ClientOutcomeUnknownError(`the connection dropped before ${request.action} could be sent`));
        return () => this.pending.delete(id);
      },
      () => new ClientTimeoutError(`no result for ${request.action} ${request.vm}/${request.job} within ${remaining} ms; it may still take effect`),
    );
  }

  /** The gateway's `result`. */
  result(message: ResultMessage): void {
    const pending = this.pending.get(message.id);
    this.pending.delete(message.id);
    pending?.resolve(message);
  }

  /** An `error` message that answers one of our commands (the gateway refused it before it ran) becomes its result; false when it answers none. */
  refused(message: Extract<ServerMessage, { type: 'error' }>): boolean {
    const pending = message.id === undefined ? undefined : this.pending.get(message.id);
    if (!pending || message.id === undefined) return false;
    this.pending.delete(message.id);
    const code = message.code === 'invalid_message' || message.code === 'forbidden' ? message.code : message.code === 'rate_limited' ? 'too_many_commands' : 'internal';
    pending.resolve({ type: 'result', id: message.id, ok: false, error: { code, message: message.message } });
    return true;
  }

  /** The connection dropped: no result will come for what is in flight. */
  dropped(): void {
    this.rejectAll(
      new ClientOutcomeUnknownError('the connection dropped before the result arrived: the command may or may not have taken effect; the job state shows what happened'),
    );
  }

  rejectAll(error: ClientError): void {
    for (const { reject } of [...this.pending.values()]) reject(error);
    this.pending.clear();
  }
}
