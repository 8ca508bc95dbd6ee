/**
 * A soak subscriber: one WebSocket that subscribes to every VM, resumes with `since` after every
 * disconnect (its own or the gateway's), and checks its stream as it goes: per epoch each numbered
 * message must follow the previous one (`prev`, offset + 1), never repeat, and a resume on the same
 * epoch must be `recovered` (a snapshot there means events were lost). It can also send commands.
 */
import WebSocket from 'ws';

type Msg = Record<string, any>;

export interface StreamStats {
  messages: number;
  numbered: number;
  gaps: number;
  duplicates: number;
  /** Resumes on an unchanged epoch answered with a snapshot: events this client never got. */
  lostResumes: number;
  resumes: number;
  reconnects: number;
  problems: string[];
}

export interface StreamClientOptions {
  url: string;
  /** Called for every message after the checks. */
  onMessage?: (msg: Msg) => void;
  /** Called when a VM's stream had to restart from a snapshot (new epoch or lost position). */
  onSnapshot?: (vm: string, reason: string | undefined) => void;
}

const MAX_PROBLEMS = 50;

export class StreamClient {
  readonly stats: StreamStats = { messages: 0, numbered: 0, gaps: 0, duplicates: 0, lostResumes: 0, resumes: 0, reconnects: 0, problems: [] };
  /** Per VM: the epoch and last offset this client has accounted for. */
  readonly positions = new Map<string, { epoch: string; offset: number }>();
  private ws: WebSocket | undefined;
  private closedByUs = false;
  private nextId = 1;
  private readonly pending = new Map<string, { resolve: (m: Msg) => void; reject: (e: Error) => void }>();
  private connectedWaiters: (() => void)[] = [];
  private connected = false;
  private subscribedOnce = false;

  constructor(private readonly options: StreamClientOptions) {}

  start(): void {
    this.connect();
  }

  /** Close and reconnect (a client that drops its connection now and then). */
  bounce(): void {
    this.ws?.terminate();
  }

  stop(): void {
    this.closedByUs = true;
    this.ws?.terminate();
  }

  /** Resolves once subscribed (synced) again. */
  whenConnected(): Promise<void> {
    return this.connected ? Promise.resolve() : new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /** Sends a command and resolves with its result; rejects if the connection drops first. */
  command(fields: Record<string, unknown>): Promise<Msg> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.connected) return Promise.reject(new Error('not connected'));
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ type: 'command', id, ...fields }));
    });
  }

  private problem(text: string): void {
    if (this.stats.problems.length < MAX_PROBLEMS) this.stats.problems.push(text);
  }

  private connect(): void {
    const ws = new WebSocket(this.options.url, ['blockjob-gateway.v1']);
    this.ws = ws;
    ws.on('error', () => {});
    ws.on('open', () => {
      const since = Object.fromEntries([...this.positions].map(([vm, p]) => [vm, p]));
      ws.send(JSON.stringify({ type: 'subscribe', id: 's', sub: 'all', since, progress: { intervalMs: 0 } }));
    });
    ws.on('message', (data) => this.onMessage(JSON.parse(data.toString()) as Msg));
    ws.on('close', () => {
      this.connected = false;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error('connection closed before the result'));
      }
      if (this.closedByUs) return;
      this.stats.reconnects++;
      setTimeout(() => this.connect(), 100 + Math.floor(Math.random() * 200));
    });
  }

  private onMessage(msg: Msg): void {
    this.stats.messages++;
    switch (msg.type) {
      case 'subscribed': {
        if (this.subscribedOnce) this.stats.resumes++;
        for (const [vm, stream] of Object.entries(msg.streams as Record<string, Msg>)) {
          const known = this.positions.get(vm);
          if (stream.mode === 'snapshot') {
            if (known && known.epoch === stream.epoch) {
              this.stats.lostResumes++;
              this.problem(`resume of ${vm} at ${known.offset} on the same epoch got a snapshot (${stream.reason})`);
            }
            this.options.onSnapshot?.(vm, stream.reason);
          }
          this.positions.set(vm, { epoch: stream.epoch, offset: stream.mode === 'snapshot' ? stream.offset : (known?.offset ?? stream.offset) });
          if (stream.mode === 'snapshot') this.positions.set(vm, { epoch: stream.epoch, offset: -1 }); // set by synced
        }
        this.subscribedOnce = true;
        break;
      }
      case 'synced': {
        const p = this.positions.get(msg.vm);
        if (p && p.offset === -1) this.positions.set(msg.vm, { epoch: msg.epoch, offset: msg.offset });
        else if (p && p.offset !== msg.offset) {
          this.stats.gaps++;
          this.problem(`${msg.vm}: synced at ${msg.offset} after replay up to ${p.offset}`);
          this.positions.set(msg.vm, { epoch: msg.epoch, offset: msg.offset });
        }
        if (![...this.positions.values()].some((q) => q.offset === -1)) {
          this.connected = true;
          for (const wake of this.connectedWaiters.splice(0)) wake();
        }
        break;
      }
      case 'event':
      case 'vm': {
        this.stats.numbered++;
        const p = this.positions.get(msg.vm);
        if (!p || p.epoch !== msg.epoch) {
          this.stats.gaps++;
          this.problem(`${msg.vm}: ${msg.type} on epoch ${msg.epoch} without a subscribed cut`);
        } else if (msg.offset <= p.offset) {
          this.stats.duplicates++;
          this.problem(`${msg.vm}: offset ${msg.offset} again (last ${p.offset})`);
          return;
        } else if (msg.offset !== p.offset + 1 || msg.prev !== p.offset) {
          this.stats.gaps++;
          this.problem(`${msg.vm}: offset ${msg.offset} (prev ${msg.prev}) after ${p.offset}`);
        }
        this.positions.set(msg.vm, { epoch: msg.epoch, offset: msg.offset });
        break;
      }
      case 'result': {
        const p = this.pending.get(msg.id);
        if (p) {
          this.pending.delete(msg.id);
          p.resolve(msg);
        }
        break;
      }
      case 'error':
        this.problem(`error message: ${JSON.stringify(msg)}`);
        break;
    }
    this.options.onMessage?.(msg);
  }
}
