/**
 * A scripted QMP peer on a real unix socket with real framing, for what QEMU 7.2 cannot show on
 * cue: old versions (no `status`, no `ready`), a monitor that never greets (busy), replies that
 * never come, exact byte framing, dropped connections, and replays of recorded transcripts.
 *
 * Like QEMU it serves one client at a time (a second connection waits, ungreeted, until the first
 * leaves), refuses commands before qmp_capabilities, and delivers events only after negotiation.
 *
 *   const peer = await startScriptedPeer({ version: { major: 2, minor: 5, micro: 0 },
 *     handler: (execute) => (execute === 'query-block-jobs' ? { return: [] } : undefined) });
 *   // client connects to peer.address ...
 *   await peer.waitForCommand('query-block-jobs');
 *   peer.emitEvent('BLOCK_JOB_READY', { device: 'j0', type: 'mirror', len: 1, offset: 1, speed: 0 });
 */
import { rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { JsonObjectSplitter, makeShortTempDir, parseJsonObject, registerLeftover } from '../../src/lab/index.js';
import { transcriptGreeting, type Transcript } from './transcript.js';

export type QmpPeerReply = { return: unknown } | { error: { class: string; desc: string } };

/**
 * Answers one command: a reply, `undefined` for no reply at all, or a Promise of either (a late
 * reply). `qmp_capabilities` reaches it only with `autoNegotiate: false`.
 */
export type CommandHandler = (
  execute: string,
  args: Record<string, unknown> | undefined,
  id: unknown,
  peer: ScriptedPeer,
) => QmpPeerReply | undefined | Promise<QmpPeerReply | undefined>;

export interface ReceivedCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
  /** The whole message as parsed. */
  message: Record<string, unknown>;
  /** 1 for the first client connection, +1 for each one after. */
  connection: number;
  /** Position in `received` (keeps counting when old entries are dropped). */
  index: number;
}

export interface ScriptedPeerOptions {
  /** Full greeting object (`{"QMP":{...}}`), or null to never greet (a busy monitor). Overrides `version`. */
  greeting?: Record<string, unknown> | null;
  /** Version for the default greeting. @default 7.2.22 */
  version?: { major: number; minor: number; micro: number };
  /** Capabilities for the default greeting. @default ['oob'] */
  capabilities?: string[];
  handler?: CommandHandler;
  /** Answer qmp_capabilities like QEMU (and refuse other commands before it). @default true */
  autoNegotiate?: boolean;
  /** Keep at most this many received commands. @default 10000 */
  maxReceived?: number;
  /** Connections waiting for the single client slot beyond this are closed. @default 16 */
  maxWaitingClients?: number;
  /** A unix socket in a fresh temp dir, or TCP on 127.0.0.1 with a free port. @default 'unix' */
  listen?: 'unix' | 'tcp';
}

/** The greeting QEMU sends, for a given version. */
export function qmpGreeting(version: { major: number; minor: number; micro: number }, capabilities: string[] = ['oob']): Record<string, unknown> {
  return {
    QMP: {
      version: { qemu: { micro: version.micro, minor: version.minor, major: version.major }, package: `scripted-peer ${version.major}.${version.minor}.${version.micro}` },
      capabilities,
    },
  };
}

function qmpTimestamp(now = Date.now()): { seconds: number; microseconds: number } {
  return { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
}

interface Waiter<T> {
  test(value: T): boolean;
  resolve(value: T): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class ScriptedPeer {
  readonly received: ReceivedCommand[] = [];
  /** Client connections accepted so far (including ones still waiting for the slot). */
  connections = 0;
  handler: CommandHandler | undefined;
  /** Greet new clients; false plays a monitor that never does (busy). Starts as `greeting !== null`. */
  greets: boolean;
  /** Called once a client completed qmp_capabilities, right after the reply is written (connection number). */
  onNegotiated: ((connection: number) => void) | undefined;

  private client: { socket: Socket; number: number; negotiated: boolean } | undefined;
  private readonly waiting: Array<{ socket: Socket; number: number }> = [];
  private nextIndex = 0;
  private readonly commandWaiters = new Set<Waiter<ReceivedCommand>>();
  private readonly clientWaiters = new Set<Waiter<number>>();
  private readonly unregister: () => void;
  private isClosed = false;

  private constructor(
    /** `unix:/...` or `tcp:127.0.0.1:PORT`, as the QMP client takes it. */
    readonly address: string,
    private readonly server: Server,
    private readonly options: ScriptedPeerOptions,
    /** Temp dir holding the unix socket; removed by close(). */
    private readonly dir?: string,
  ) {
    this.handler = options.handler;
    this.greets = options.greeting !== null;
    server.on('connection', (socket) => this.onConnection(socket));
    this.unregister = registerLeftover({
      label: `scripted QMP peer on ${address}`,
      dispose: () => this.close(),
      disposeNow: () => {
        server.close();
        if (dir) rmSync(dir, { recursive: true, force: true });
      },
    });
  }

  static async start(options: ScriptedPeerOptions = {}): Promise<ScriptedPeer> {
    const server = createServer();
    const listening = new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', resolve);
    });
    if (options.listen === 'tcp') {
      server.listen(0, '127.0.0.1');
      await listening;
      return new ScriptedPeer(`tcp:127.0.0.1:${(server.address() as AddressInfo).port}`, server, options);
    }
    const dir = makeShortTempDir('bjp-');
    const path = join(dir, 'peer.sock');
    server.listen(path);
    await listening.catch((error: unknown) => {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    });
    return new ScriptedPeer(`unix:${path}`, server, options, dir);
  }

  /** The unix socket path (unix peers only). */
  get path(): string {
    if (!this.address.startsWith('unix:')) throw new Error(`scripted peer listens on ${this.address}, not on a unix socket`);
    return this.address.slice('unix:'.length);
  }

  /** Whether a client holds the slot (greeted or not). */
  get hasClient(): boolean {
    return this.client !== undefined;
  }

  /** Whether the current client has completed qmp_capabilities. */
  get negotiated(): boolean {
    return this.client?.negotiated ?? false;
  }

  /**
   * Sends an event to the current client, as QEMU does: only once it has negotiated (unless
   * `force`). Returns whether it was sent.
   */
  emitEvent(event: string, data?: Record<string, unknown>, options: { force?: boolean; timestamp?: { seconds: number; microseconds: number } } = {}): boolean {
    if (!this.client || (!this.client.negotiated && !options.force)) return false;
    const message: Record<string, unknown> = { event, ...(data === undefined ? {} : { data }), timestamp: options.timestamp ?? qmpTimestamp() };
    this.sendMessage(message);
    return true;
  }

  /** Sends one message as QEMU frames it: compact JSON ending in CRLF. */
  sendMessage(message: Record<string, unknown>): void {
    this.sendRaw(`${JSON.stringify(message)}\r\n`);
  }

  /** Writes exactly these bytes to the current client (pretty JSON, split writes, garbage...). */
  sendRaw(data: string | Buffer): void {
    if (!this.client) throw new Error('scripted peer: no client connected');
    this.client.socket.write(data);
  }

  /** Bytes written to the current client that the kernel has not taken yet (pace floods by it). */
  get backlog(): number {
    return this.client?.socket.writableLength ?? 0;
  }

  /** Closes the current client's connection (like QEMU going away for that client). */
  dropClient(): void {
    this.client?.socket.destroy();
  }

  /** Resolves with the connection number once a client holds the slot (the current one counts). */
  waitForClient(timeoutMs = 30_000, minConnection = 1): Promise<number> {
    if (this.client && this.client.number >= minConnection) return Promise.resolve(this.client.number);
    return this.addWaiter(this.clientWaiters, (number) => number >= minConnection, timeoutMs, `client connection #${minConnection}`);
  }

  /** Resolves with the first received command named `execute` at index >= fromIndex (already received or still to come). */
  waitForCommand(execute: string, timeoutMs = 30_000, fromIndex = 0): Promise<ReceivedCommand> {
    const test = (command: ReceivedCommand): boolean => command.execute === execute && command.index >= fromIndex;
    const seen = this.received.find(test);
    if (seen) return Promise.resolve(seen);
    return this.addWaiter(this.commandWaiters, test, timeoutMs, `command ${execute}`);
  }

  /** Index the next received command will get: pass it to waitForCommand to ignore older ones. */
  get nextCommandIndex(): number {
    return this.nextIndex;
  }

  /**
   * Plays a recorded transcript to the current client in wire order: each recorded command waits
   * for the client to send the same command, each recorded reply answers it (with the client's
   * id), each event is emitted where it was recorded, so "events before the reply" stays true.
   * The greeting and the qmp_capabilities exchange are skipped (the peer does them itself; build
   * the peer with `greeting: transcriptGreeting(t)` to replay that too). Replaces `handler` while
   * it runs; a command the transcript does not expect fails the replay.
   */
  async replay(transcript: Transcript, options: { pace?: 'asap' | 'recorded'; timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    interface Pending { execute: string; answer(reply: QmpPeerReply): void }
    const arrived: Pending[] = [];
    let onArrival: (() => void) | undefined;
    const nextClientCommand = async (expected: string): Promise<Pending> => {
      const deadline = Date.now() + timeoutMs;
      while (arrived.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`replay: the client did not send ${expected} within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          onArrival = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      return arrived.shift()!;
    };
    const previousHandler = this.handler;
    this.handler = (execute) =>
      new Promise<QmpPeerReply>((answer) => {
        arrived.push({ execute, answer });
        onArrival?.();
      });
    /** Recorded command id (as JSON) -> how to answer the client's matching command. */
    const awaitingReply = new Map<string, Pending>();
    const negotiationIds = new Set<string>();
    let previousT = 0;
    try {
      for (const { dir, t, msg } of transcript.messages) {
        if ('QMP' in msg) continue;
        const recordedId = JSON.stringify(msg.id);
        if (dir === 'out' && msg.execute === 'qmp_capabilities') {
          negotiationIds.add(recordedId);
          continue;
        }
        if (options.pace === 'recorded') {
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, t - previousT)));
          previousT = t;
        }
        if (dir === 'out') {
          const command = await nextClientCommand(String(msg.execute));
          if (command.execute !== msg.execute) throw new Error(`replay: expected ${String(msg.execute)}, the client sent ${command.execute}`);
          awaitingReply.set(recordedId, command);
        } else if (typeof msg.event === 'string') {
          this.emitEvent(msg.event, msg.data as Record<string, unknown> | undefined);
        } else if (('return' in msg || 'error' in msg) && !negotiationIds.has(recordedId)) {
          const command = awaitingReply.get(recordedId);
          if (!command) throw new Error(`replay: recorded reply ${recordedId} has no matching client command`);
          awaitingReply.delete(recordedId);
          command.answer('error' in msg ? { error: msg.error as { class: string; desc: string } } : { return: msg.return });
        }
      }
    } finally {
      this.handler = previousHandler;
    }
  }

  /** Closes every connection and the server, and removes the socket dir. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const { socket } of this.waiting) socket.destroy();
    this.waiting.length = 0;
    this.client?.socket.destroy();
    const closeError = new Error('scripted peer closed');
    for (const waiter of [...this.commandWaiters, ...this.clientWaiters]) {
      clearTimeout(waiter.timer);
      waiter.reject(closeError);
    }
    this.commandWaiters.clear();
    this.clientWaiters.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.unregister();
  }

  private addWaiter<T>(set: Set<Waiter<T>>, test: (value: T) => boolean, timeoutMs: number, what: string): Promise<T> {
    if (this.isClosed) return Promise.reject(new Error('scripted peer closed'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter<T> = {
        test,
        resolve,
        reject,
        timer: setTimeout(() => {
          set.delete(waiter);
          reject(new Error(`scripted peer: no ${what} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      set.add(waiter);
    });
  }

  private settle<T>(set: Set<Waiter<T>>, value: T): void {
    for (const waiter of set) {
      if (waiter.test(value)) {
        set.delete(waiter);
        clearTimeout(waiter.timer);
        waiter.resolve(value);
      }
    }
  }

  private onConnection(socket: Socket): void {
    const number = ++this.connections;
    socket.on('error', () => undefined); // 'close' follows
    if (this.client) {
      if (this.waiting.length >= (this.options.maxWaitingClients ?? 16)) {
        socket.destroy();
        return;
      }
      const entry = { socket, number };
      this.waiting.push(entry);
      socket.once('close', () => {
        const at = this.waiting.indexOf(entry);
        if (at >= 0) this.waiting.splice(at, 1);
      });
      return;
    }
    this.serve(socket, number);
  }

  private serve(socket: Socket, number: number): void {
    const client = { socket, number, negotiated: false };
    this.client = client;
    let splitter = new JsonObjectSplitter(64 * 1024);
    socket.on('data', (chunk: Buffer) => {
      let texts: string[];
      try {
        texts = splitter.push(chunk);
      } catch (error) {
        // QEMU answers unparsable input with an id-less error and resets its parser.
        splitter = new JsonObjectSplitter(64 * 1024);
        this.reply(client, undefined, { error: { class: 'GenericError', desc: `JSON parse error, ${(error as Error).message}` } });
        return;
      }
      for (const text of texts) {
        let message: Record<string, unknown>;
        try {
          message = parseJsonObject(text);
        } catch {
          this.reply(client, undefined, { error: { class: 'GenericError', desc: 'JSON parse error, invalid JSON' } });
          continue;
        }
        this.onCommand(client, message);
      }
    });
    socket.once('close', () => {
      if (this.client !== client) return;
      this.client = undefined;
      const next = this.waiting.shift();
      if (next && !this.isClosed) this.serve(next.socket, next.number);
    });
    const greeting = this.options.greeting === undefined
      ? qmpGreeting(this.options.version ?? { major: 7, minor: 2, micro: 22 }, this.options.capabilities)
      : this.options.greeting;
    if (greeting !== null && this.greets) socket.write(`${JSON.stringify(greeting)}\r\n`);
    this.settle(this.clientWaiters, number);
  }

  private onCommand(client: { socket: Socket; number: number; negotiated: boolean }, message: Record<string, unknown>): void {
    const execute = typeof message.execute === 'string' ? message.execute : undefined;
    const hasId = 'id' in message;
    if (!execute) {
      this.reply(client, hasId ? { id: message.id } : undefined, { error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } });
      return;
    }
    const command: ReceivedCommand = {
      execute,
      ...(message.arguments === undefined ? {} : { arguments: message.arguments as Record<string, unknown> }),
      ...(hasId ? { id: message.id } : {}),
      message,
      connection: client.number,
      index: this.nextIndex++,
    };
    this.received.push(command);
    if (this.received.length > (this.options.maxReceived ?? 10_000)) this.received.shift();
    this.settle(this.commandWaiters, command);
    const idPart = hasId ? { id: message.id } : undefined;
    if (this.options.autoNegotiate !== false) {
      if (execute === 'qmp_capabilities') {
        if (client.negotiated) {
          this.reply(client, idPart, { error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } });
        } else {
          client.negotiated = true;
          this.reply(client, idPart, { return: {} });
          this.onNegotiated?.(client.number);
        }
        return;
      }
      if (!client.negotiated) {
        this.reply(client, idPart, { error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
        return;
      }
    }
    const handler = this.handler;
    const outcome = handler
      ? handler(execute, command.arguments, command.id, this)
      : { error: { class: 'CommandNotFound', desc: `The command ${execute} has not been found` } };
    void Promise.resolve(outcome).then(
      (reply) => {
        if (!reply) return;
        if (execute === 'qmp_capabilities' && 'return' in reply) client.negotiated = true;
        this.reply(client, idPart, reply);
      },
      (error: unknown) => this.reply(client, idPart, { error: { class: 'GenericError', desc: `scripted peer handler threw: ${String(error)}` } }),
    );
  }

  private reply(client: { socket: Socket }, idPart: { id: unknown } | undefined, reply: QmpPeerReply): void {
    if (client.socket.destroyed || this.client?.socket !== client.socket) return;
    client.socket.write(`${JSON.stringify({ ...reply, ...idPart })}\r\n`);
  }
}

/** Starts a scripted peer on a fresh temp unix socket; registered as a leftover. */
export function startScriptedPeer(options?: ScriptedPeerOptions): Promise<ScriptedPeer> {
  return ScriptedPeer.start(options);
}

export { transcriptGreeting };
