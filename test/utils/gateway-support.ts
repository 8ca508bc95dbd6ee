/**
 * Test support for the gateway suites: a queueing ws client, and a helper that starts a gateway on
 * 127.0.0.1:0 and registers it for cleanup. The in-memory JobSource is test/utils/fake-source.ts.
 */
import WebSocket from 'ws';
import type { JobSource } from '../../src/jobs/types.js';
import { startGateway, type GatewayServerOptions, type RunningGateway } from '../../src/gateway/server.js';
import { validateServerMessage } from '../../src/protocol/validate.js';

export type Msg = Record<string, any>;

/** A ws client that queues every message, validates it against the server schemas, and waits by predicate. */
export class TestClient {
  readonly messages: Msg[] = [];
  private cursor = 0;
  private waiters: (() => void)[] = [];
  readonly invalid: string[] = [];
  closeCode: number | undefined;
  closeReason = '';
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString()) as Msg;
      const check = validateServerMessage(msg);
      if (!check.ok) this.invalid.push(`${msg.type}: ${check.error.message}`);
      this.messages.push(msg);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.wake();
        resolve(code);
      }),
    );
    ws.on('error', () => {});
  }

  static async connect(url: string, options: WebSocket.ClientOptions & { protocols?: string[] } = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options.protocols ?? [], options);
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })));
      ws.once('error', reject);
    });
    return client;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** The next not-yet-consumed message matching `predicate` (messages before it are consumed too). */
  async next(predicate: (m: Msg) => boolean = () => true, timeoutMs = 15_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.messages.length) {
        const m = this.messages[this.cursor++]!;
        if (predicate(m)) return m;
      }
      if (this.closeCode !== undefined) throw new Error(`socket closed (${this.closeCode} ${this.closeReason}) while waiting`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; last messages: ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Wait until `predicate` holds over all messages received so far. */
  async until(predicate: (all: Msg[]) => boolean, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.messages)) {
      if (Date.now() > deadline) throw new Error(`condition not met; last messages: ${JSON.stringify(this.messages.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  ofType(type: string, sub?: string): Msg[] {
    return this.messages.filter((m) => m.type === type && (sub === undefined || m.sub === sub));
  }

  close(): Promise<number> {
    if (this.closeCode === undefined) this.ws.close(1000);
    return this.closed;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}

/** Start gateways on port 0 and stop them (and their clients) afterwards. */
export class Leftovers {
  private readonly items: (() => Promise<unknown>)[] = [];

  async gateway(options: Partial<GatewayServerOptions> & { source: JobSource }): Promise<RunningGateway> {
    const gateway = await startGateway({ listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false, ...options });
    this.items.push(() => gateway.close({ graceMs: 200 }));
    return gateway;
  }

  async client(url: string, options?: WebSocket.ClientOptions & { protocols?: string[] }): Promise<TestClient> {
    const client = await TestClient.connect(url, options);
    this.items.push(() => {
      client.ws.terminate();
      return Promise.resolve();
    });
    return client;
  }

  add(dispose: () => Promise<unknown>): void {
    this.items.push(dispose);
  }

  async dispose(): Promise<void> {
    for (const item of this.items.splice(0).reverse()) await item().catch(() => {});
  }
}

/** Offsets of a sub's stream messages on one VM must chain: each prev equals the previous offset. */
export function assertChain(messages: Msg[], vm: string, startOffset: number): number {
  let last = startOffset;
  for (const m of messages) {
    if (m.vm !== vm || m.offset === undefined) continue;
    if (m.type === 'event' || m.type === 'vm') {
      if (m.prev !== last) throw new Error(`gap: ${m.type} offset ${m.offset} has prev ${m.prev}, expected ${last}`);
      last = m.offset;
    } else if (m.type === 'synced' || m.type === 'bookmark') {
      last = m.offset;
    }
  }
  return last;
}
