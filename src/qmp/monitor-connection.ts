/**
 * One transport connection of a QmpClient, from the socket's connect to its loss:
 *
 *   connecting ──socket up──> negotiating ──greeting, qmp_capabilities ok──> ready
 *
 * It wires the socket (with the read-burst bound), runs the phase timers (connect, greeting,
 * negotiation), negotiates, numbers and classifies each inbound message and routes it: greeting and
 * the capabilities reply here, events and replies to the client. Any fault ends it once, reported to
 * the client with why. The client decides everything that outlives a connection (session, state,
 * pending commands, reconnecting).
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { QmpCommandError, QmpConnectError, QmpDisconnectedError, QmpMonitorBusyError, QmpProtocolError, type QmpError } from '../errors.js';
import { JsonObjectFramer, evidence, type FramedMessage } from './framing.js';
import { debugEnabled, type Logger, type ThrottledLog } from '../log.js';
import { classifyMessage, type InboundMessage } from './messages.js';
import type { ResolvedOptions } from './client-options.js';
import { nextCommandId } from './pending.js';
import { READ_BURST_BYTES, resetBurstAfterTurn } from './transport.js';
import type { QmpGreeting } from './types.js';

/** Why a connection ended: `problem` goes to errors$ (non-fatal news); `cause` to pending commands. */
export interface Loss {
  message: string;
  problem?: QmpError;
  cause?: unknown;
}

export type Reply = InboundMessage & { kind: 'return' | 'error' };
export type EventMessage = InboundMessage & { kind: 'event' };

/** What every connection of one client shares: names for logs and errors, limits, counters. */
export interface ConnectionContext {
  readonly name: string;
  readonly addressText: string;
  readonly log: Logger;
  /** What the peer sends that we drop (unknown messages, replies to ids never sent): one line a minute per kind. */
  readonly dropped: ThrottledLog;
  readonly options: ResolvedOptions;
  /** Inbound messages are numbered across connections: consumers order replies against events by it. */
  inboundSeq: number;
  commandCount: number;
}

/** The client, as its connections see it. Each call is made synchronously, in wire order. */
export interface ConnectionHost {
  connectionUp(connection: MonitorConnection): void;
  sessionNegotiated(connection: MonitorConnection, greeting: QmpGreeting, seq: number): void;
  eventReceived(event: EventMessage, seq: number): void;
  replyReceived(reply: Reply, seq: number): void;
  connectionLost(connection: MonitorConnection, loss: Loss): void;
}

export class MonitorConnection {
  /** Bytes read in this turn of the event loop (see READ_BURST_BYTES). */
  burstBytes = 0;
  private readonly framer: JsonObjectFramer;
  private phase: 'connecting' | 'negotiating' | 'ready' = 'connecting';
  /** The timer of the current phase: connect, greeting or negotiation. */
  private phaseTimer: NodeJS.Timeout | undefined;
  private greeting: QmpGreeting | undefined;
  private capabilitiesId: string | undefined;
  private ended = false;

  constructor(
    private readonly host: ConnectionHost,
    private readonly context: ConnectionContext,
    readonly socket: Duplex,
  ) {
    this.framer = new JsonObjectFramer(
      (message, text) => this.onMessage(message, text),
      (error) => this.fail({ message: error.message, problem: error, cause: error }),
      { maxMessageBytes: context.options.maxMessageBytes },
    );
  }

  /** Wire the socket; call once the client holds this connection (a transport already up reports at once). */
  open(): void {
    const socket = this.socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.ended) return;
      // The count is per turn: the first read of a turn has it reset at the turn's end.
      if (this.burstBytes === 0) resetBurstAfterTurn(this);
      this.burstBytes += chunk.length;
      this.framer.push(chunk);
      if (this.burstBytes >= READ_BURST_BYTES && !this.ended) this.waitATurn();
    });
    socket.on('error', (err: Error) => this.onTransportError(err));
    socket.on('end', () => this.onTransportEnd());
    socket.on('close', () => this.onTransportEnd());

    if (socket instanceof net.Socket && socket.connecting) {
      const timeoutMs = this.context.options.connectTimeoutMs;
      this.phaseTimer = setTimeout(() => {
        const error = new QmpConnectError(this.context.addressText, `connect timed out after ${timeoutMs} ms`);
        this.fail({ message: error.message, problem: error });
      }, timeoutMs);
      socket.once('connect', () => this.onTransportUp());
    } else {
      this.onTransportUp();
    }
  }

  write(text: string): void {
    const { log, name } = this.context;
    if (debugEnabled(log)) log.debug({ monitor: name, qmp: text }, '-->');
    this.socket.write(`${text}\n`);
  }

  /** Stop for good without a report (the client is closing, or this connection was lost). Idempotent. */
  end(): void {
    this.ended = true;
    clearTimeout(this.phaseTimer);
    this.framer.reset();
    this.socket.destroy();
  }

  /** End on a fault and tell the client why, once. */
  fail(loss: Loss): void {
    if (this.ended) return;
    this.end();
    this.host.connectionLost(this, loss);
  }

  /** Stops reading until the event loop has turned once, so others get their share of it. */
  private waitATurn(): void {
    this.socket.pause();
    setImmediate(() => {
      if (!this.ended) this.socket.resume();
    });
  }

  private onTransportUp(): void {
    if (this.ended) return;
    clearTimeout(this.phaseTimer);
    const { log, name, addressText, options } = this.context;
    log.debug({ monitor: name, address: addressText }, 'connected; waiting for the greeting');
    this.phase = 'negotiating';
    this.host.connectionUp(this);
    if (this.ended) return; // a state$ subscriber closed the client
    const waitedMs = options.greetingTimeoutMs;
    this.phaseTimer = setTimeout(() => {
      const error = new QmpMonitorBusyError(addressText, waitedMs);
      this.fail({ message: error.message, problem: error });
    }, waitedMs);
  }

  private onTransportError(err: Error): void {
    if (this.ended) return;
    const { addressText } = this.context;
    const error =
      this.phase === 'ready'
        ? new QmpDisconnectedError(addressText, `transport error: ${err.message}`, { cause: err })
        : new QmpConnectError(addressText, `${this.phase === 'connecting' ? 'connect' : 'negotiation'} failed: ${err.message}`, { cause: err });
    this.fail({ message: error.message, problem: error, cause: err });
  }

  private onTransportEnd(): void {
    if (this.ended) return;
    this.framer.end(); // reports a message cut short by EOF (in the log), harmless otherwise
    if (this.ended) return;
    const { addressText } = this.context;
    // Also a clean close (QEMU exited): the VM's `disconnected` says why, with a code.
    const error =
      this.phase === 'ready'
        ? new QmpDisconnectedError(addressText, 'the monitor closed the connection (EOF)')
        : new QmpConnectError(addressText, `the monitor closed the connection ${this.greeting ? 'before negotiation completed' : 'before the greeting'}`);
    this.fail({ message: error.message, problem: error });
  }

  private onMessage(message: FramedMessage, text: string): void {
    const context = this.context;
    const seq = ++context.inboundSeq;
    if (debugEnabled(context.log)) context.log.debug({ monitor: context.name, seq, qmp: text }, '<--');
    let inbound: InboundMessage;
    try {
      inbound = classifyMessage(message, text);
    } catch (err) {
      this.fail({ message: (err as Error).message, problem: err as QmpProtocolError, cause: err });
      return;
    }
    switch (inbound.kind) {
      case 'greeting':
        return this.onGreeting(inbound.greeting, text);
      case 'event':
        if (this.phase === 'ready') return this.host.eventReceived(inbound, seq);
        // QEMU sends no events before negotiation (monitor.c); a peer that does is ignored, not trusted.
        context.dropped.warn({ monitor: context.name, seq, event: inbound.event }, 'event before negotiation dropped');
        return;
      case 'return':
      case 'error':
        return this.onReply(inbound, seq, text);
      case 'unknown':
        context.dropped.warn({ monitor: context.name, seq, qmp: evidence(text) }, 'unrecognized message dropped');
    }
  }

  private onGreeting(greeting: QmpGreeting, text: string): void {
    if (this.greeting || this.phase !== 'negotiating') {
      const error = new QmpProtocolError('unexpected second greeting', evidence(text));
      this.fail({ message: error.message, problem: error });
      return;
    }
    clearTimeout(this.phaseTimer);
    this.greeting = greeting;
    const id = nextCommandId(this.context);
    this.capabilitiesId = id;
    const { addressText, options } = this.context;
    const timeoutMs = options.negotiateTimeoutMs;
    this.phaseTimer = setTimeout(() => {
      const error = new QmpConnectError(addressText, `no reply to qmp_capabilities within ${timeoutMs} ms`);
      this.fail({ message: error.message, problem: error });
    }, timeoutMs);
    // No capabilities enabled: `oob` buys nothing here (no job command is allow-oob) and would
    // change QEMU's queueing of in-band commands.
    this.write(JSON.stringify({ execute: 'qmp_capabilities', id }));
  }

  private onReply(reply: Reply, seq: number, text: string): void {
    if (reply.kind === 'error' && !reply.hasId) {
      // qmp-spec 2.4.2: QEMU could not even parse a request. We never send one it cannot parse,
      // so the two sides disagree about the stream: fatal, as in qemu.qmp.
      const error = new QmpProtocolError(`id-less error reply: ${reply.qmpClass}: ${reply.desc}`, evidence(text));
      this.fail({ message: error.message, problem: error });
      return;
    }
    if (this.capabilitiesId !== undefined && reply.id === this.capabilitiesId) {
      this.onCapabilitiesReply(reply, seq);
      return;
    }
    this.host.replyReceived(reply, seq);
  }

  private onCapabilitiesReply(reply: Reply, seq: number): void {
    clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
    this.capabilitiesId = undefined;
    if (reply.kind === 'error') {
      const refusal = new QmpCommandError(reply.qmpClass, reply.desc, { execute: 'qmp_capabilities' });
      const error = new QmpConnectError(this.context.addressText, `negotiation refused: ${refusal.message}`, { cause: refusal });
      this.fail({ message: error.message, problem: error });
      return;
    }
    this.phase = 'ready';
    this.host.sessionNegotiated(this, this.greeting!, seq);
  }
}
