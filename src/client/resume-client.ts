/**
 * The reference client of the v1 protocol: connect, subscribe, and never lose or repeat a stream event.
 *
 * It owns what PROTOCOL.md asks of every client: per VM stream it remembers the last {epoch, offset} it
 * delivered, drops anything at or below it (duplicates after a replay), treats `prev` != last delivered
 * as a gap and resubscribes with `since`, and on any resumable close reconnects with jittered
 * exponential backoff and resumes. It imports nothing from Node and takes a WebSocket factory, so the
 * same code runs in Node (with `ws`, see node-socket.ts) and in the browser.
 */
import type {
  CommandMessage,
  ResultMessage,
  ServerMessage,
  SubscriptionFilter,
} from '../generated/schema-types.js';
import { clientSubprotocols, WS_PATH } from '../protocol/codes.js';

/** The subset of the WebSocket API the client uses (browser WebSocket and the node adapter both fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type WebSocketFactory = (url: string, protocols: string[]) => WebSocketLike;

export type ClientStatus = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Close codes after which reconnecting cannot help (see PROTOCOL.md, close codes). */
const FATAL_CLOSE_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010, 4400, 4401, 4403, 4406, 4409]);
/** Synthetic close codes the node adapter reports when the HTTP upgrade itself was refused. */
export const UPGRADE_UNAUTHORIZED = 4401;
export const UPGRADE_FORBIDDEN = 4403;
const OPEN = 1;

export interface StreamPosition {
  epoch: string;
  offset: number;
}

export interface ResumeClientOptions {
  /** `ws://host:port` or a full `ws://host:port/v1/ws` URL. */
  url: string;
  createSocket: WebSocketFactory;
  /** Sent as a `bearer.<token>` subprotocol beside the protocol's own (works for browsers and services alike). */
  token?: string;
  filter?: SubscriptionFilter;
  /** Progress messages at most this often per job; 0 = none. @default 1000 */
  progressIntervalMs?: number;
  /** Reconnect backoff. @default { initialMs: 500, maxMs: 30_000, jitter: 0.5 } */
  backoff?: { initialMs?: number; maxMs?: number; jitter?: number };
  /** Every message that survives deduplication, in order. */
  onMessage: (message: ServerMessage) => void;
  onStatus?: (status: ClientStatus, detail?: { code?: number; reason?: string }) => void;
  /** The server closed with a code that reconnecting cannot fix (bad token, forbidden, invalid message...). */
  onFatal?: (close: { code: number; reason: string }) => void;
}

type CommandRequest = Omit<CommandMessage, 'type' | 'id'> & { id?: string };

export class ResumeClient {
  private socket: WebSocketLike | undefined;
  private readonly positions = new Map<string, StreamPosition>();
  private readonly pendingCommands = new Map<string, { resolve: (r: ResultMessage) => void; reject: (e: Error) => void }>();
  private subCounter = 0;
  private currentSub = '';
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private commandCounter = 0;

  constructor(private readonly options: ResumeClientOptions) {}

  /** Last delivered position per VM stream: what a resume sends as `since`. */
  get since(): Record<string, StreamPosition> {
    return Object.fromEntries(this.positions);
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  close(): void {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    this.failPendingCommands('client closed');
    this.socket?.close(1000, 'client closed');
    this.socket = undefined;
    this.options.onStatus?.('closed');
  }

  /** Send a job command on the current connection; resolves with the server's `result`. */
  command(request: CommandRequest): Promise<ResultMessage> {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return Promise.reject(new Error('not connected'));
    const id = request.id ?? `cmd-${Date.now().toString(36)}-${++this.commandCounter}`;
    return new Promise<ResultMessage>((resolve, reject) => {
      this.pendingCommands.set(id, { resolve, reject });
      socket.send(JSON.stringify({ ...request, type: 'command', id }));
    });
  }

  private connect(): void {
    const base = this.options.url.replace(/\/$/, '');
    const url = base.endsWith(WS_PATH) ? base : base + WS_PATH;
    const protocols = clientSubprotocols(this.options.token);
    this.options.onStatus?.(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const socket = this.options.createSocket(url, protocols);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.options.onStatus?.('open');
      this.subscribe();
    };
    socket.onmessage = (ev) => this.receive(String(ev.data));
    socket.onerror = () => {
      /* a close event always follows; it decides */
    };
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.failPendingCommands(`connection closed (${ev.code}) before the result arrived: outcome unknown`);
      if (this.stopped) return;
      if (FATAL_CLOSE_CODES.has(ev.code)) {
        this.stopped = true;
        this.options.onStatus?.('closed', ev);
        this.options.onFatal?.(ev);
        return;
      }
      this.scheduleReconnect(ev);
    };
  }

  private scheduleReconnect(close: { code: number; reason: string }): void {
    const { initialMs = 500, maxMs = 30_000, jitter = 0.5 } = this.options.backoff ?? {};
    // Too many connections: never come back faster than the long end of the backoff.
    const base = close.code === 4429 ? maxMs : Math.min(maxMs, initialMs * 2 ** this.attempt);
    const delay = base * (1 - jitter / 2 + Math.random() * jitter);
    this.attempt++;
    this.options.onStatus?.('reconnecting', close);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private subscribe(): void {
    this.currentSub = `s${++this.subCounter}`;
    const message: Record<string, unknown> = {
      type: 'subscribe',
      id: `sub-${this.subCounter}`,
      sub: this.currentSub,
      progress: { intervalMs: this.options.progressIntervalMs ?? 1000 },
    };
    if (this.options.filter) message.filter = this.options.filter;
    if (this.positions.size > 0) message.since = this.since;
    this.socket?.send(JSON.stringify(message));
  }

  private receive(text: string): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(text) as ServerMessage;
    } catch {
      return; // the server only sends JSON; a broken frame is not ours to interpret
    }
    if ('sub' in message && message.sub !== this.currentSub && message.type !== 'unsubscribed') return;
    switch (message.type) {
      case 'subscribed':
        for (const vm of Object.keys(message.streams)) {
          // A snapshot restarts the stream position; recovered keeps it (the missed events follow).
          if (message.streams[vm]?.mode === 'snapshot') this.positions.delete(vm);
        }
        break;
      case 'state':
        break;
      case 'synced':
      case 'bookmark':
        this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
        break;
      case 'event':
      case 'vm': {
        const last = this.positions.get(message.vm);
        if (last && last.epoch === message.epoch) {
          if (message.offset <= last.offset) return; // already delivered
          if (message.prev !== last.offset) {
            this.resubscribe(); // gap: a message this subscription should have had is missing
            return;
          }
        }
        this.positions.set(message.vm, { epoch: message.epoch, offset: message.offset });
        break;
      }
      case 'result': {
        const pending = this.pendingCommands.get(message.id);
        if (pending) {
          this.pendingCommands.delete(message.id);
          pending.resolve(message);
        }
        break;
      }
      default:
        break;
    }
    this.options.onMessage(message);
  }

  private resubscribe(): void {
    this.socket?.send(JSON.stringify({ type: 'unsubscribe', id: `unsub-${this.subCounter}`, sub: this.currentSub }));
    this.subscribe();
  }

  private failPendingCommands(reason: string): void {
    for (const { reject } of this.pendingCommands.values()) reject(new Error(reason));
    this.pendingCommands.clear();
  }
}
