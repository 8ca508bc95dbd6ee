/**
 * A scripted libvirtd on a real unix socket with real framing, for the faults the real daemon
 * cannot show on cue: malformed replies and events, a reply to a serial never sent, an oversized
 * length word, a daemon that stops answering keepalives, a polkit-only daemon, replies split into
 * single bytes or batched with events.
 *
 * It answers the negotiation like libvirtd 9.0 (auth none, open, keepalive supported, versions,
 * callback ids counting from 1 per connection); `handler` overrides any procedure.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { makeShortTempDir } from '../../src/lab/index.js';
import { decodeHeader, encodeMessage, writeDomain, type MessageHeader } from '../../src/libvirt/codec.js';
import * as c from '../../src/libvirt/constants.js';
import { RpcFramer } from '../../src/libvirt/framing.js';
import type { DomainRef } from '../../src/libvirt/types.js';
import { XdrWriter } from '../../src/libvirt/xdr.js';

export interface PeerCall {
  header: MessageHeader;
  body: Buffer;
  /** 1 for the first client connection, +1 for each one after. */
  connection: number;
}

/** What to answer: an OK body, an error body, raw bytes to write instead, or nothing at all. */
export type PeerAnswer = { ok: Buffer } | { error: Buffer } | { raw: Buffer } | 'silent';

export type PeerHandler = (call: PeerCall, peer: LibvirtPeer) => PeerAnswer | undefined;

export const PEER_DOMAIN: DomainRef = { name: 'vm1', uuid: '00112233-4455-6677-8899-aabbccddeeff', id: 7 };

export const xdr = (write: (w: XdrWriter) => void): Buffer => {
  const w = new XdrWriter();
  write(w);
  return w.toBuffer();
};

/** A virNetMessageError body as libvirtd writes it. */
export function remoteErrorBody(code: number, message: string): Buffer {
  return xdr((w) => {
    w.int(code).int(10).optional(message, (m) => w.string(m)).int(2).bool(false).bool(false).bool(false).bool(false).int(0).int(0).bool(false);
  });
}

export class LibvirtPeer {
  readonly calls: PeerCall[] = [];
  /** Keepalive messages the client sent, each PING marked answered or not (answerPings when it came). */
  readonly keepalives: { proc: number; connection: number; answered: boolean }[] = [];
  /** Answer the client's PINGs. */
  answerPings = true;
  private connections = 0;
  private socket: Socket | undefined;
  private callbackIds = 0;

  private constructor(
    private readonly server: Server,
    readonly path: string,
    private readonly dir: string,
    private readonly handler: PeerHandler | undefined,
  ) {}

  static async start(handler?: PeerHandler): Promise<LibvirtPeer> {
    const dir = makeShortTempDir('lvp-');
    const path = join(dir, 'libvirt-sock');
    let peer: LibvirtPeer | undefined;
    const server = createServer((socket) => peer!.accept(socket));
    peer = new LibvirtPeer(server, path, dir, handler);
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return peer;
  }

  get connectionCount(): number {
    return this.connections;
  }

  callsOf(proc: number, program = c.REMOTE_PROGRAM): PeerCall[] {
    return this.calls.filter((call) => call.header.proc === proc && call.header.prog === program);
  }

  /** Write raw bytes to the current client. */
  write(bytes: Buffer): void {
    this.socket?.write(bytes);
  }

  /** An event message (type MESSAGE, serial 0) of `program`/`proc` with `body`. */
  event(proc: number, body: Buffer, program = c.REMOTE_PROGRAM): Buffer {
    return encodeMessage({ prog: program, vers: 1, proc, type: c.MessageType.Message, serial: 0, status: c.MessageStatus.Ok }, body);
  }

  /** A QEMU monitor event for callback `callbackId`. */
  monitorEvent(callbackId: number, event: string, details: string | null, seconds = 1_700_000_000, micros = 123_456): Buffer {
    return this.event(
      c.QemuProc.DOMAIN_MONITOR_EVENT,
      xdr((w) => {
        w.int(callbackId);
        writeDomain(w, PEER_DOMAIN);
        w.string(event).hyper(seconds).uint(micros).optional(details, (d) => w.string(d));
      }),
      c.QEMU_PROGRAM,
    );
  }

  /** A block-job-2 event for callback `callbackId`. */
  blockJob2(callbackId: number, disk: string, type: number, status: number): Buffer {
    return this.event(
      c.RemoteProc.DOMAIN_EVENT_BLOCK_JOB_2,
      xdr((w) => {
        w.int(callbackId);
        writeDomain(w, PEER_DOMAIN);
        w.string(disk).int(type).int(status);
      }),
    );
  }

  reply(call: PeerCall, answer: { ok: Buffer } | { error: Buffer }): Buffer {
    const status = 'ok' in answer ? c.MessageStatus.Ok : c.MessageStatus.Error;
    return encodeMessage({ ...call.header, type: c.MessageType.Reply, status }, 'ok' in answer ? answer.ok : answer.error);
  }

  /** Drop the current client connection. */
  hangUp(): void {
    this.socket?.destroy();
  }

  async stop(): Promise<void> {
    this.socket?.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private accept(socket: Socket): void {
    const connection = ++this.connections;
    this.socket = socket;
    this.callbackIds = 0;
    const framer = new RpcFramer(
      (message) => this.onMessage(socket, connection, message),
      () => socket.destroy(),
    );
    socket.on('data', (chunk: Buffer) => framer.push(chunk));
    socket.on('error', () => {});
  }

  private onMessage(socket: Socket, connection: number, message: Buffer): void {
    const header = decodeHeader(message);
    const body = message.subarray(c.VIR_NET_MESSAGE_HEADER_BYTES);
    if (header.prog === c.KEEPALIVE_PROGRAM) {
      const answered = header.proc === c.KEEPALIVE_PROC_PING && this.answerPings;
      this.keepalives.push({ proc: header.proc, connection, answered });
      if (answered) socket.write(encodeMessage({ ...header, proc: c.KEEPALIVE_PROC_PONG }));
      return;
    }
    const call: PeerCall = { header, body, connection };
    this.calls.push(call);
    const answer = this.handler?.(call, this) ?? this.default(call);
    if (answer === 'silent') return;
    socket.write('raw' in answer ? answer.raw : this.reply(call, answer));
  }

  private default(call: PeerCall): { ok: Buffer } | { error: Buffer } {
    const { prog, proc } = call.header;
    if (prog === c.QEMU_PROGRAM && proc === c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_REGISTER) return { ok: xdr((w) => w.int(++this.callbackIds)) };
    if (prog === c.QEMU_PROGRAM) return { ok: Buffer.alloc(0) };
    switch (proc) {
      case c.RemoteProc.AUTH_LIST:
        return { ok: xdr((w) => w.uint(1).int(0)) };
      case c.RemoteProc.AUTH_POLKIT:
      case c.RemoteProc.CONNECT_SUPPORTS_FEATURE:
        return { ok: xdr((w) => w.int(1)) };
      case c.RemoteProc.CONNECT_GET_LIB_VERSION:
        return { ok: xdr((w) => w.uhyper(9_000_000)) };
      case c.RemoteProc.CONNECT_GET_VERSION:
        return { ok: xdr((w) => w.uhyper(7_002_022)) };
      case c.RemoteProc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY:
        return { ok: xdr((w) => w.int(++this.callbackIds)) };
      case c.RemoteProc.DOMAIN_LOOKUP_BY_NAME:
        return { ok: xdr((w) => writeDomain(w, PEER_DOMAIN)) };
      default:
        return { ok: Buffer.alloc(0) };
    }
  }
}
