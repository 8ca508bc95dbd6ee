/**
 * One socket to libvirtd, below the session: length framing, serials and the calls awaiting their
 * reply, keepalive, and routing each inbound message by its header. It knows nothing of sessions,
 * watches or reconnecting: what makes it unusable goes to `lost` (the client decides what follows),
 * and it stays silent once destroyed.
 *
 * Fatal here (the stream can no longer be trusted): a bad length word or header, a reply to a
 * serial never sent, an event body that does not decode (an event was lost), a dead keepalive, a
 * connect that hangs. A reply body that does not decode fails only its call.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  LibvirtConnectError,
  LibvirtKeepaliveError,
  LibvirtProtocolError,
  LibvirtRemoteError,
  LibvirtTimeoutError,
  LibvirtTooManyPendingError,
  withoutStack,
  type LibvirtError,
} from '../errors.js';
import type { Logger } from '../log.js';
import type { CallSpec } from './calls.js';
import * as codec from './codec.js';
import * as c from './constants.js';
import { decodeEvent, type DecodedEvent } from './events.js';
import { hexEvidence, RpcFramer } from './framing.js';
import { HeldEvents } from './held-events.js';
import { KeepaliveTimer } from './keepalive.js';
import { classifyHeader } from './messages.js';
import { XdrError } from './xdr.js';

/** Why a connection ended: `problem` goes to errors$ (news); `cause` to the calls it fails. */
export interface Loss {
  message: string;
  problem?: LibvirtError;
  cause?: unknown;
}

export interface ConnectionSettings {
  readonly name: string;
  readonly log: Logger;
  readonly socketPath: string;
  readonly connectTimeoutMs: number;
  readonly maxMessageBytes: number;
  readonly maxPendingCalls: number;
}

/** Counted over every connection of one client: inbound messages (the `seq` of each) and calls written. */
export interface WireCounters {
  seq: number;
  calls: number;
}

export interface ConnectionHooks {
  /** The socket is up (at once for an injected Duplex that is not a connecting net.Socket). */
  up(): void;
  /** A socket error; the client words it by its state and ends the connection. */
  transportError(err: Error): void;
  /** EOF or close with no framing fault pending. */
  transportEnd(): void;
  /** Fatal for this connection (see the header comment). */
  lost(loss: Loss): void;
  /** Worth reporting, not fatal: a reply body that did not decode, a stream packet, an unregistered event procedure. */
  problem(error: LibvirtError): void;
  event(decoded: DecodedEvent, seq: number): void;
}

interface PendingCall {
  readonly spec: CallSpec<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

export class RpcConnection {
  /** Events for a callback id no watch holds yet (see held-events.ts). */
  readonly held = new HeldEvents();
  private readonly framer: RpcFramer;
  private readonly pending = new Map<number, PendingCall>();
  /** Serials are per connection; 0 is never used for a call. */
  private serial = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private keepalive: KeepaliveTimer | undefined;
  private live = true;

  constructor(
    readonly socket: Duplex,
    private readonly settings: ConnectionSettings,
    private readonly counters: WireCounters,
    private readonly hooks: ConnectionHooks,
  ) {
    this.framer = new RpcFramer(
      (message) => this.onMessage(message),
      (error) => this.lose({ message: error.message, problem: error, cause: error }),
      { maxMessageBytes: settings.maxMessageBytes },
    );
    socket.on('data', (chunk: Buffer) => {
      if (this.live) this.framer.push(chunk);
    });
    socket.on('error', (err: Error) => {
      if (this.live) hooks.transportError(err);
    });
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onEnd());
  }

  /** Wait for the socket (bounded by connectTimeoutMs), then `up`. */
  open(): void {
    const { socket, settings } = this;
    if (socket instanceof net.Socket && socket.connecting) {
      this.connectTimer = setTimeout(() => {
        const error = new LibvirtConnectError(settings.socketPath, `connect timed out after ${settings.connectTimeoutMs} ms`);
        this.lose({ message: error.message, problem: error });
      }, settings.connectTimeoutMs);
      socket.once('connect', () => this.up());
    } else {
      this.up();
    }
  }

  /** Calls awaiting a reply. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Write a call and await its reply (or its timeout). */
  call<R>(spec: CallSpec<R>, timeoutMs: number): Promise<R> {
    const { name, log, maxPendingCalls } = this.settings;
    if (this.pending.size >= maxPendingCalls) return Promise.reject(new LibvirtTooManyPendingError(spec.info, maxPendingCalls));
    let body: Buffer | undefined;
    try {
      body = spec.encode ? codec.encodeBody(spec.encode) : undefined;
    } catch (err) {
      return Promise.reject(new TypeError(`${name}: ${spec.info.procedure}: bad arguments: ${(err as Error).message}`, { cause: err }));
    }
    this.serial = this.serial >= 0xffffffff ? 1 : this.serial + 1;
    const serial = this.serial;
    const message = codec.encodeMessage(
      { prog: spec.program, vers: spec.version, proc: spec.proc, type: c.MessageType.Call, serial, status: c.MessageStatus.Ok },
      body,
    );
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        log.warn({ libvirt: name, serial, procedure: spec.info.procedure, timeoutMs }, 'call timed out; a late reply will be dropped');
        reject(new LibvirtTimeoutError(spec.info, timeoutMs));
      }, timeoutMs);
      this.pending.set(serial, { spec: spec as CallSpec<unknown>, resolve: resolve as (value: unknown) => void, reject, timer });
      log.debug({ libvirt: name, serial, procedure: spec.info.procedure, args: spec.info.args }, '-->');
      this.socket.write(message);
      this.counters.calls++;
    });
  }

  /** PING libvirtd after silence; `count` unanswered PINGs end the connection. */
  startKeepalive(intervalMs: number, count: number): void {
    this.keepalive = new KeepaliveTimer(intervalMs, count, () => this.sendKeepalive(c.KEEPALIVE_PROC_PING), () => {
      const error = new LibvirtKeepaliveError(this.settings.socketPath, intervalMs, count);
      this.lose({ message: error.message, problem: error });
    });
    this.keepalive.start();
  }

  /** Stop every timer and drop the socket; nothing is reported afterwards. */
  destroy(): void {
    this.live = false;
    clearTimeout(this.connectTimer);
    this.keepalive?.stop();
    this.framer.stop();
    this.socket.destroy();
  }

  /** Reject every call awaiting its reply (after destroy: their outcome is unknown). */
  failPending(toError: (spec: CallSpec<unknown>) => Error): void {
    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(toError(call.spec));
    }
  }

  // ---- inbound --------------------------------------------------------------------------------

  private up(): void {
    if (!this.live) return;
    clearTimeout(this.connectTimer);
    this.hooks.up();
  }

  private onEnd(): void {
    if (!this.live) return;
    this.framer.end(); // a message cut short is a `truncated` protocol error (and a loss)
    if (this.live) this.hooks.transportEnd();
  }

  private lose(loss: Loss): void {
    if (this.live) this.hooks.lost(loss);
  }

  private onMessage(message: Buffer): void {
    const seq = ++this.counters.seq;
    this.keepalive?.heard();
    const header = codec.decodeHeader(message);
    const body = message.subarray(c.VIR_NET_MESSAGE_HEADER_BYTES);
    this.settings.log.debug(
      { libvirt: this.settings.name, seq, prog: header.prog, proc: header.proc, type: header.type, serial: header.serial, status: header.status, bytes: message.length },
      '<--',
    );
    const classified = classifyHeader(header);
    switch (classified.kind) {
      case 'fault':
        return this.headerFault(classified.reason, message);
      case 'ping':
        return this.sendKeepalive(c.KEEPALIVE_PROC_PONG);
      case 'pong':
        return; // heard() above is all a PONG is for
      case 'reply':
        return this.onReply(header, body, message);
      case 'event':
        return this.onEvent(header, body, message, seq);
      case 'stream':
        // Well framed, so it is reported and skipped rather than fatal (and may come in floods: no stack).
        this.hooks.problem(withoutStack(() => new LibvirtProtocolError('unexpected-message', `stream packet for serial ${header.serial}; this client opens no streams`, hexEvidence(message))));
    }
  }

  private headerFault(text: string, message: Buffer): void {
    const error = new LibvirtProtocolError('header', text, hexEvidence(message));
    this.lose({ message: error.message, problem: error, cause: error });
  }

  private onReply(header: codec.MessageHeader, body: Buffer, message: Buffer): void {
    const call = this.pending.get(header.serial);
    if (!call) {
      if (header.serial === 0 || header.serial > this.serial) return this.headerFault(`reply to serial ${header.serial}, which was never sent`, message);
      this.settings.log.warn({ libvirt: this.settings.name, serial: header.serial }, 'reply to a timed-out call dropped');
      return;
    }
    if (call.spec.program !== header.prog || call.spec.proc !== header.proc) {
      return this.headerFault(`reply for serial ${header.serial} names procedure ${header.proc}, the call was ${call.spec.info.procedure}`, message);
    }
    this.pending.delete(header.serial);
    clearTimeout(call.timer);
    try {
      if (header.status === c.MessageStatus.Error) {
        const e = codec.decodeBody(body, 'remote_error', codec.readRemoteError);
        call.reject(new LibvirtRemoteError(call.spec.info, e.code, c.VIR_ERROR_NAMES[e.code], e.domain, e.level, e.message, e));
      } else {
        call.resolve(codec.decodeBody(body, call.spec.info.procedure, call.spec.decode));
      }
    } catch (err) {
      // A body that does not decode fails its call only: the framing is intact.
      const error = bodyError(err, `reply to ${call.spec.info.procedure}`, message);
      call.reject(error);
      this.hooks.problem(error);
    }
  }

  private onEvent(header: codec.MessageHeader, body: Buffer, message: Buffer, seq: number): void {
    let decoded: DecodedEvent | undefined;
    try {
      decoded = decodeEvent(header.prog, header.proc, body);
    } catch (err) {
      // An event was lost: drop the connection, so the next session's resync covers it.
      const error = err instanceof LibvirtProtocolError ? err : bodyError(err, `event ${header.proc}`, message);
      this.lose({ message: error.message, problem: error, cause: err });
      return;
    }
    if (!decoded) {
      const text = `event procedure ${header.proc} of program 0x${header.prog.toString(16)} was never registered`;
      this.hooks.problem(withoutStack(() => new LibvirtProtocolError('unexpected-message', text, hexEvidence(message))));
      return;
    }
    this.hooks.event(decoded, seq);
  }

  private sendKeepalive(proc: number): void {
    if (!this.live) return;
    this.settings.log.debug({ libvirt: this.settings.name, keepalive: proc === c.KEEPALIVE_PROC_PING ? 'PING' : 'PONG' }, '-->');
    this.socket.write(
      codec.encodeMessage({ prog: c.KEEPALIVE_PROGRAM, vers: c.KEEPALIVE_PROTOCOL_VERSION, proc, type: c.MessageType.Message, serial: 0, status: c.MessageStatus.Ok }),
    );
  }
}

function bodyError(err: unknown, what: string, message: Buffer): LibvirtProtocolError {
  if (err instanceof XdrError) {
    const fault = err.trailing ? 'trailing-bytes' : 'body';
    return new LibvirtProtocolError(fault, `${what}: ${err.message}`, hexEvidence(message), { cause: err });
  }
  return new LibvirtProtocolError('body', `${what}: ${(err as Error).message}`, hexEvidence(message), { cause: err });
}
