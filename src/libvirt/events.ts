/**
 * Event messages (type MESSAGE) of the remote and QEMU programs, decoded into the public event
 * shapes minus what the client adds (watch, seq, session, receive times). A procedure this client
 * never registers decodes to undefined; a malformed body throws.
 */
import { LibvirtProtocolError } from '../errors.js';
import * as codec from './codec.js';
import { QEMU_PROGRAM, QemuProc, REMOTE_PROGRAM, RemoteProc } from './constants.js';
import type { DomainRef, LibvirtBlockJobEvent, LibvirtLifecycleEvent, LibvirtMonitorEvent } from './types.js';

type Added = 'domain' | 'watch' | 'seq' | 'session' | 'receivedAt' | 'receivedMono';

/** Callback ids of the domain-event and the QEMU monitor-event registrations are separate numberings. */
export type CallbackSpace = 'domain' | 'monitor';

export type DecodedEvent =
  | { space: 'domain'; callbackId: number; domain: DomainRef; event: Omit<LibvirtBlockJobEvent, Added> | Omit<LibvirtLifecycleEvent, Added> }
  | { space: 'monitor'; callbackId: number; domain: DomainRef; event: Omit<LibvirtMonitorEvent, Added> };

export function decodeEvent(program: number, proc: number, body: Buffer): DecodedEvent | undefined {
  if (program === REMOTE_PROGRAM && proc === RemoteProc.DOMAIN_EVENT_CALLBACK_LIFECYCLE) {
    const m = codec.decodeBody(body, 'lifecycle event', codec.readLifecycle);
    return {
      space: 'domain',
      callbackId: m.callbackId,
      domain: m.domain,
      event: { kind: 'lifecycle', event: codec.lifecycleEvent(m.eventCode), eventCode: m.eventCode, detail: m.detail },
    };
  }
  if (program === REMOTE_PROGRAM && proc === RemoteProc.DOMAIN_EVENT_BLOCK_JOB_2) {
    const m = codec.decodeBody(body, 'block-job-2 event', codec.readBlockJob2);
    return {
      space: 'domain',
      callbackId: m.callbackId,
      domain: m.domain,
      event: {
        kind: 'block-job-2',
        disk: m.disk,
        type: codec.blockJobType(m.typeCode),
        typeCode: m.typeCode,
        status: codec.blockJobStatus(m.statusCode),
        statusCode: m.statusCode,
      },
    };
  }
  if (program === QEMU_PROGRAM && proc === QemuProc.DOMAIN_MONITOR_EVENT) {
    const m = codec.decodeBody(body, 'QEMU monitor event', codec.readMonitorEvent);
    return {
      space: 'monitor',
      callbackId: m.callbackId,
      domain: m.domain,
      event: {
        kind: 'qemu-monitor',
        event: m.event,
        // QEMU writes -1/-1 when it could not read the clock (qmp-spec); libvirt relays it.
        qemuTimestamp: m.seconds < 0 ? null : m.seconds * 1000 + m.micros / 1000,
        seconds: m.seconds,
        micros: m.micros,
        data: parseDetails(m.event, m.details),
      },
    };
  }
  return undefined;
}

/** libvirt relays QEMU's `data` member as JSON text, or no details when the event had none. */
function parseDetails(event: string, details: string | null): Record<string, unknown> {
  if (details === null) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(details);
  } catch (err) {
    throw new LibvirtProtocolError('event-details', `${event}: details are not JSON: ${(err as Error).message}`, details.slice(0, 128), { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new LibvirtProtocolError('event-details', `${event}: details are not a JSON object`, details.slice(0, 128));
  }
  return parsed as Record<string, unknown>;
}
