/**
 * The wire types: the message header, libvirt's error struct, and the argument/return/event
 * structs of the procedures this client uses, field by field as remote_protocol.x,
 * qemu_protocol.x and virnetprotocol.x declare them. Pure functions over XdrReader/XdrWriter; a
 * decoder throws XdrError on a malformed body and must consume the body exactly.
 */
import {
  BLOCK_JOB_STATUSES,
  BLOCK_JOB_TYPES,
  LIFECYCLE_EVENTS,
  MessageStatus,
  MessageType,
  REMOTE_AUTH_TYPE_LIST_MAX,
  REMOTE_DOMAIN_LIST_MAX,
  REMOTE_STRING_MAX,
  VIR_NET_MESSAGE_HEADER_BYTES,
  VIR_NET_MESSAGE_LEN_BYTES,
  VIR_UUID_BUFLEN,
} from './constants.js';
import type { BlockJobInfo, BlockJobStatus, BlockJobType, DomainRef, LifecycleEventType } from './types.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

// ---- header and whole messages --------------------------------------------------------------

export interface MessageHeader {
  prog: number;
  vers: number;
  proc: number;
  type: MessageType;
  serial: number;
  status: MessageStatus;
}

export function decodeHeader(message: Buffer): MessageHeader {
  const r = new XdrReader(message.subarray(0, VIR_NET_MESSAGE_HEADER_BYTES));
  return {
    prog: r.uint('header prog'),
    vers: r.uint('header vers'),
    proc: r.int('header proc'),
    type: r.int('header type'),
    serial: r.uint('header serial'),
    status: r.int('header status'),
  };
}

/** Length word + header + body, ready to write. */
export function encodeMessage(header: MessageHeader, body?: Buffer): Buffer {
  const bodyLength = body?.length ?? 0;
  const out = Buffer.allocUnsafe(VIR_NET_MESSAGE_LEN_BYTES + VIR_NET_MESSAGE_HEADER_BYTES + bodyLength);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(header.prog, 4);
  out.writeUInt32BE(header.vers, 8);
  out.writeInt32BE(header.proc, 12);
  out.writeInt32BE(header.type, 16);
  out.writeUInt32BE(header.serial, 20);
  out.writeInt32BE(header.status, 24);
  if (body) body.copy(out, 28);
  return out;
}

// ---- shared structs -----------------------------------------------------------------------------

export function uuidToString(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const UUID_PATTERN = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** Accepts libvirt's forms (with or without dashes); throws TypeError otherwise. */
export function uuidToBytes(uuid: string): Buffer {
  if (!UUID_PATTERN.test(uuid)) throw new TypeError(`not a UUID: ${JSON.stringify(uuid)}`);
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

/** remote_nonnull_domain. */
export function readDomain(r: XdrReader): DomainRef {
  const name = r.string(REMOTE_STRING_MAX, 'domain name');
  const uuid = uuidToString(r.fixedOpaque(VIR_UUID_BUFLEN, 'domain uuid'));
  const id = r.int('domain id');
  return { name, uuid, id };
}

export function writeDomain(w: XdrWriter, domain: DomainRef): void {
  w.string(domain.name).fixedOpaque(uuidToBytes(domain.uuid)).int(domain.id);
}

const optionalString = (r: XdrReader, what: string): string | null => r.optional(() => r.string(REMOTE_STRING_MAX, what), what);

/** virNetMessageError: what libvirtd sends with status ERROR. */
export interface RemoteErrorBody {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

export function readRemoteError(r: XdrReader): RemoteErrorBody {
  const code = r.int('error code');
  const domain = r.int('error domain');
  const message = optionalString(r, 'error message');
  const level = r.int('error level');
  r.optional(() => readDomain(r), 'error dom');
  const str1 = optionalString(r, 'error str1');
  const str2 = optionalString(r, 'error str2');
  const str3 = optionalString(r, 'error str3');
  const int1 = r.int('error int1');
  const int2 = r.int('error int2');
  r.optional(() => {
    r.string(REMOTE_STRING_MAX, 'error net name');
    r.fixedOpaque(VIR_UUID_BUFLEN, 'error net uuid');
  }, 'error net');
  return { code, domain, message, level, str1, str2, str3, int1, int2 };
}

/** Decode a whole body with `read` and insist nothing is left over. */
export function decodeBody<T>(body: Buffer, what: string, read: (r: XdrReader) => T): T {
  const r = new XdrReader(body);
  const value = read(r);
  r.end(what);
  return value;
}

export function encodeBody(write: (w: XdrWriter) => void): Buffer {
  const w = new XdrWriter();
  write(w);
  return w.toBuffer();
}

// ---- enums to names -------------------------------------------------------------------------------

function named<T extends string>(names: readonly T[], code: number): T | 'unknown' {
  return names[code] ?? 'unknown';
}

export const blockJobType = (code: number): BlockJobType => named(BLOCK_JOB_TYPES, code);
export const blockJobStatus = (code: number): BlockJobStatus => named(BLOCK_JOB_STATUSES, code);
export const lifecycleEvent = (code: number): LifecycleEventType => named(LIFECYCLE_EVENTS, code);

// ---- procedure returns ----------------------------------------------------------------------------

export const readAuthList = (r: XdrReader): number[] => r.array(REMOTE_AUTH_TYPE_LIST_MAX, () => r.int('auth type'), 'auth types');

export const readHyper = (r: XdrReader): number => r.uhyper('version');

export const readInt = (r: XdrReader): number => r.int();

export function readDomainList(r: XdrReader): DomainRef[] {
  const domains = r.array(REMOTE_DOMAIN_LIST_MAX, () => readDomain(r), 'domains');
  const count = r.uint('domain count');
  if (count !== domains.length) throw new XdrError(`domain count ${count} differs from the ${domains.length} domains sent`, r.position - 4);
  return domains;
}

export const readString = (r: XdrReader): string => r.string(REMOTE_STRING_MAX, 'xml');

export function readBlockJobInfo(r: XdrReader): BlockJobInfo | null {
  const at = r.position;
  const found = r.int('found');
  const typeCode = r.int('type');
  const bandwidth = r.uhyper('bandwidth');
  const cur = r.uhyper('cur');
  const end = r.uhyper('end');
  // found: 1 = a job, 0 = none; libvirt's remote driver treats anything else as "none" too, but a
  // value outside {0, 1} is not something libvirtd writes: report it.
  if (found !== 0 && found !== 1) throw new XdrError(`found must be 0 or 1, got ${found}`, at);
  return found === 1 ? { type: blockJobType(typeCode), typeCode, bandwidth, cur, end } : null;
}

// ---- events --------------------------------------------------------------------------------------

export interface LifecycleBody {
  callbackId: number;
  domain: DomainRef;
  eventCode: number;
  detail: number;
}

export function readLifecycle(r: XdrReader): LifecycleBody {
  return { callbackId: r.int('callbackID'), domain: readDomain(r), eventCode: r.int('event'), detail: r.int('detail') };
}

export interface BlockJob2Body {
  callbackId: number;
  domain: DomainRef;
  disk: string;
  typeCode: number;
  statusCode: number;
}

export function readBlockJob2(r: XdrReader): BlockJob2Body {
  return {
    callbackId: r.int('callbackID'),
    domain: readDomain(r),
    disk: r.string(REMOTE_STRING_MAX, 'dst'),
    typeCode: r.int('type'),
    statusCode: r.int('status'),
  };
}

export interface MonitorEventBody {
  callbackId: number;
  domain: DomainRef;
  event: string;
  seconds: number;
  micros: number;
  details: string | null;
}

export function readMonitorEvent(r: XdrReader): MonitorEventBody {
  return {
    callbackId: r.int('callbackID'),
    domain: readDomain(r),
    event: r.string(REMOTE_STRING_MAX, 'event'),
    seconds: r.hyper('seconds'),
    micros: r.uint('micros'),
    details: optionalString(r, 'details'),
  };
}
