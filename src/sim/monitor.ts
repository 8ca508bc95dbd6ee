/**
 * One simulated QMP monitor: a real unix socket speaking QMP like a QEMU chardev monitor.
 * It serves one client at a time: a second client is accepted but gets no greeting until the
 * first one leaves (exactly what a busy QEMU monitor does). Before `qmp_capabilities` only that
 * command is accepted and no events are delivered.
 */
import { mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import { JsonObjectFramer } from '../qmp/framing.js';
import { QmpErrorReply, qmpErrors } from './errors.js';
import { qemuFrame } from './qemu-json.js';
import type { EventSink, SimVm } from './vm.js';

export interface SimMonitorLimits {
  /** Inbound message bound; larger input is a protocol error and a disconnect. @default 1 MiB */
  maxMessageBytes: number;
  /** A client that does not read: above this many unsent bytes it is disconnected. @default 8 MiB */
  maxOutputBytes: number;
  /** Clients waiting for the monitor beyond this are refused (closed at once). @default 16 */
  maxWaitingClients: number;
}

export const DEFAULT_MONITOR_LIMITS: SimMonitorLimits = {
  maxMessageBytes: 1024 * 1024,
  maxOutputBytes: 8 * 1024 * 1024,
  maxWaitingClients: 16,
};

export class SimMonitor {
  private server: net.Server | undefined;
  private active: SimClient | undefined;
  private readonly waiting: net.Socket[] = [];

  constructor(
    readonly vm: SimVm,
    readonly name: string,
    readonly path: string,
    private readonly limits: SimMonitorLimits = DEFAULT_MONITOR_LIMITS,
  ) {}

  get address(): string {
    return `unix:${this.path}`;
  }

  /** Whether a client currently holds the monitor. */
  get busy(): boolean {
    return this.active !== undefined;
  }

  async listen(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await rm(this.path, { force: true });
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  /** End every client connection (EOF, as when QEMU closes the chardev); keep listening. */
  dropClients(): void {
    for (const socket of this.waiting.splice(0)) socket.destroy();
    this.active?.socket.destroy();
  }

  /** Stop listening and drop every client; the socket file is removed. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.dropClients();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.path, { force: true });
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => socket.destroy());
    if (!this.active) {
      this.serve(socket);
      return;
    }
    if (this.waiting.length >= this.limits.maxWaitingClients) {
      socket.destroy();
      return;
    }
    this.waiting.push(socket);
    socket.once('close', () => {
      const index = this.waiting.indexOf(socket);
      if (index >= 0) this.waiting.splice(index, 1);
    });
  }

  private serve(socket: net.Socket): void {
    const client = new SimClient(this.vm, socket, this.limits);
    this.active = client;
    socket.once('close', () => {
      client.detach();
      if (this.active !== client) return;
      this.active = undefined;
      const next = this.waiting.shift();
      if (next && !next.destroyed && this.server) this.serve(next);
    });
    client.greet();
  }
}

/** One connected client of a monitor: framing in, replies and events out. */
class SimClient {
  private negotiated = false;
  private readonly framer: JsonObjectFramer;
  private readonly sink: EventSink = (frame) => this.write(frame);

  constructor(
    private readonly vm: SimVm,
    readonly socket: net.Socket,
    private readonly limits: SimMonitorLimits,
  ) {
    this.framer = new JsonObjectFramer(
      (message) => this.onMessage(message),
      (error) => {
        // QEMU answers bad input without an id, then carries on; an oversized input we drop.
        const desc = error.message.startsWith('expected a JSON object')
          ? 'QMP input must be a JSON object'
          : `JSON parse error, ${error.message}`;
        this.reply(undefined, new QmpErrorReply('GenericError', desc));
        if (error.message.startsWith('message too large')) socket.destroy();
      },
      { maxMessageBytes: limits.maxMessageBytes },
    );
    socket.on('data', (chunk: Buffer) => this.framer.push(chunk));
  }

  greet(): void {
    this.write(qemuFrame(this.vm.greeting()));
  }

  detach(): void {
    this.vm.detach(this.sink);
  }

  private onMessage(message: Record<string, unknown>): void {
    const id = message['id'];
    const command = message['execute'] ?? message['exec-oob'];
    if (typeof command !== 'string') {
      this.reply(id, new QmpErrorReply('GenericError', "QMP input lacks member 'execute'"));
      return;
    }
    const args = message['arguments'] ?? {};
    if (typeof args !== 'object' || args === null || Array.isArray(args)) {
      this.reply(id, new QmpErrorReply('GenericError', "QMP input member 'arguments' must be an object"));
      return;
    }
    if (!this.negotiated) {
      if (command !== 'qmp_capabilities') {
        this.reply(id, qmpErrors.capabilitiesFirst());
        return;
      }
      this.negotiated = true;
      this.reply(id, undefined, {});
      this.vm.attach(this.sink); // events flow only after negotiation
      return;
    }
    try {
      const result = this.vm.execute(command, args as Record<string, unknown>);
      this.reply(id, undefined, result);
    } catch (err) {
      if (!(err instanceof QmpErrorReply)) throw err;
      this.reply(id, err);
    }
  }

  private reply(id: unknown, error: QmpErrorReply | undefined, result?: unknown): void {
    // Key order as QEMU writes it: {"return": …, "id": …} but {"id": …, "error": …}.
    const withId = id === undefined ? {} : { id };
    const body = error
      ? { ...withId, error: { class: error.qmpClass, desc: error.desc } }
      : { return: result, ...withId };
    this.write(qemuFrame(body));
  }

  private write(frame: string): void {
    if (this.socket.destroyed) return;
    if (this.socket.writableLength > this.limits.maxOutputBytes) {
      this.socket.destroy(); // a client that stopped reading must not grow our memory
      return;
    }
    this.socket.write(frame);
  }
}
