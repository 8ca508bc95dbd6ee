/**
 * What an inbound header says, before any body is read: libvirtd sends a client replies, events
 * (type MESSAGE) of the remote and QEMU programs, keepalive PING/PONG, and stream packets (only
 * for streams the client opened: this one opens none). Anything else means the two sides disagree
 * about the stream, which the client treats as fatal for the connection.
 */
import type { MessageHeader } from './codec.js';
import {
  KEEPALIVE_PROC_PING,
  KEEPALIVE_PROC_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  MessageStatus,
  MessageType,
  QEMU_PROGRAM,
  QEMU_PROTOCOL_VERSION,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
} from './constants.js';

export type InboundKind = 'ping' | 'pong' | 'reply' | 'event' | 'stream';

export type Classified = { kind: InboundKind } | { kind: 'fault'; reason: string };

const program = (prog: number): string => `program 0x${prog.toString(16)}`;

export function classifyHeader(header: MessageHeader): Classified {
  const { prog, vers, proc, type, status } = header;
  if (prog === KEEPALIVE_PROGRAM) {
    if (vers !== KEEPALIVE_PROTOCOL_VERSION || type !== MessageType.Message) return { kind: 'fault', reason: `keepalive message with version ${vers}, type ${type}` };
    if (proc === KEEPALIVE_PROC_PING) return { kind: 'ping' };
    if (proc === KEEPALIVE_PROC_PONG) return { kind: 'pong' };
    return { kind: 'fault', reason: `unknown keepalive procedure ${proc}` };
  }
  if (prog !== REMOTE_PROGRAM && prog !== QEMU_PROGRAM) return { kind: 'fault', reason: `unknown ${program(prog)}` };
  const expected = prog === REMOTE_PROGRAM ? REMOTE_PROTOCOL_VERSION : QEMU_PROTOCOL_VERSION;
  if (vers !== expected) return { kind: 'fault', reason: `unknown version ${vers} of ${program(prog)}` };
  switch (type) {
    case MessageType.Reply:
      if (status !== MessageStatus.Ok && status !== MessageStatus.Error) return { kind: 'fault', reason: `reply with status ${status}` };
      return { kind: 'reply' };
    case MessageType.Message:
      if (status !== MessageStatus.Ok) return { kind: 'fault', reason: `event with status ${status}` };
      return { kind: 'event' };
    case MessageType.Stream:
      return { kind: 'stream' };
    default:
      return { kind: 'fault', reason: `message type ${type} is not one libvirtd sends to a client` };
  }
}
