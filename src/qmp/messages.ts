/**
 * The QMP wire messages the client reads, checked at the edge (qmp-spec §2): the greeting, events
 * and replies. Only light peeking: a message is classified by its key, and only the fields the
 * client relies on are validated.
 */
import { QmpProtocolError } from '../errors.js';
import { evidence } from './framing.js';
import type { QemuVersion, QmpGreeting } from './types.js';

export type InboundMessage =
  | { kind: 'greeting'; greeting: QmpGreeting }
  | { kind: 'event'; event: string; data: Record<string, unknown>; qemuTimestamp: number | null }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; hasId: boolean; qmpClass: string; desc: string }
  | { kind: 'unknown' };

/** Classify one framed message; throws QmpProtocolError when a known kind is malformed. */
export function classifyMessage(message: Record<string, unknown>, text: string): InboundMessage {
  const bad = (why: string): never => {
    throw new QmpProtocolError(`malformed ${why}`, evidence(text));
  };
  if ('event' in message) {
    const { event, data, timestamp } = message;
    if (typeof event !== 'string') bad('event: "event" is not a string');
    if (data !== undefined && !isPlainObject(data)) bad('event: "data" is not an object');
    return {
      kind: 'event',
      event: event as string,
      data: (data as Record<string, unknown> | undefined) ?? {},
      qemuTimestamp: toEpochMs(timestamp),
    };
  }
  if ('return' in message) return { kind: 'return', id: message.id, value: message.return };
  if ('error' in message) {
    const error = message.error;
    if (!isPlainObject(error) || typeof error.class !== 'string') bad('error reply: no "class"');
    const { class: qmpClass, desc } = error as { class: string; desc?: unknown };
    return { kind: 'error', id: message.id, hasId: 'id' in message, qmpClass, desc: typeof desc === 'string' ? desc : '' };
  }
  if ('QMP' in message) return { kind: 'greeting', greeting: parseGreeting(message.QMP, text) };
  return { kind: 'unknown' };
}

function parseGreeting(body: unknown, text: string): QmpGreeting {
  const bad = (why: string): never => {
    throw new QmpProtocolError(`malformed greeting: ${why}`, evidence(text));
  };
  if (!isPlainObject(body)) return bad('"QMP" is not an object');
  const { version, capabilities } = body;
  if (!isPlainObject(version) || !isPlainObject(version.qemu)) return bad('no version.qemu');
  const { major, minor, micro } = version.qemu;
  if (![major, minor, micro].every((n) => Number.isInteger(n))) bad('version.qemu.{major,minor,micro} are not integers');
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === 'string')) {
    bad('capabilities is not a list of strings');
  }
  const parsed: QemuVersion = {
    qemu: { major: major as number, minor: minor as number, micro: micro as number },
    package: typeof version.package === 'string' ? version.package : '',
  };
  return { version: parsed, capabilities: [...(capabilities as string[])] };
}

/** QEMU's {seconds, microseconds} wall-clock stamp in ms; null for the -1/-1 "no clock" stamp or none. */
function toEpochMs(timestamp: unknown): number | null {
  if (!isPlainObject(timestamp)) return null;
  const { seconds, microseconds } = timestamp;
  if (typeof seconds !== 'number' || typeof microseconds !== 'number' || seconds < 0 || microseconds < 0) return null;
  return seconds * 1000 + microseconds / 1000;
}

/**
 * Whether two greetings could come from the same QEMU process. A different version, package or
 * capability set proves a different binary; identical greetings prove nothing.
 */
export function greetingsMatch(a: QmpGreeting, b: QmpGreeting): boolean {
  const va = a.version;
  const vb = b.version;
  return (
    va.qemu.major === vb.qemu.major &&
    va.qemu.minor === vb.qemu.minor &&
    va.qemu.micro === vb.qemu.micro &&
    va.package === vb.package &&
    [...a.capabilities].sort().join(',') === [...b.capabilities].sort().join(',')
  );
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
