/**
 * The calls this client makes, by procedure: program, number, how the arguments encode and the
 * return decodes, as remote_protocol.x and qemu_protocol.x declare them. Builders validate what the
 * wire cannot carry (a malformed UUID) by throwing, before anything is written.
 */
import type { LibvirtCallInfo } from '../errors.js';
import * as codec from './codec.js';
import * as c from './constants.js';
import type { DomainRef } from './types.js';
import type { Watch } from './watches.js';
import type { XdrReader, XdrWriter } from './xdr.js';

/** One call of one program: how to encode its arguments and decode its return. */
export interface CallSpec<R> {
  readonly program: number;
  readonly version: number;
  readonly proc: number;
  readonly info: LibvirtCallInfo;
  readonly encode?: (w: XdrWriter) => void;
  readonly decode: (r: XdrReader) => R;
}

const noArgs = (): void => {};

/** The calls, by procedure: arguments and return as the .x files declare them. */
const remote = <R>(proc: number, procedure: string, decode: (r: XdrReader) => R, encode?: (w: XdrWriter) => void, args?: Record<string, unknown>): CallSpec<R> => ({
  program: c.REMOTE_PROGRAM,
  version: c.REMOTE_PROTOCOL_VERSION,
  proc,
  info: args ? { procedure, args } : { procedure },
  decode,
  ...(encode ? { encode } : {}),
});

const qemu = <R>(proc: number, procedure: string, decode: (r: XdrReader) => R, encode: (w: XdrWriter) => void, args?: Record<string, unknown>): CallSpec<R> => ({
  program: c.QEMU_PROGRAM,
  version: c.QEMU_PROTOCOL_VERSION,
  proc,
  info: args ? { procedure, args } : { procedure },
  decode,
  encode,
});

const P = c.RemoteProc;
const domainArgs = (d: DomainRef, disk?: string): Record<string, unknown> => (disk === undefined ? { domain: d.name } : { domain: d.name, disk });

export const specs = {
  authList: () => remote(P.AUTH_LIST, 'REMOTE_PROC_AUTH_LIST', codec.readAuthList),
  /** remote_auth_polkit_ret { int complete; }: libvirtd checks our uid with polkit; an error is a refusal. */
  authPolkit: () => remote(P.AUTH_POLKIT, 'REMOTE_PROC_AUTH_POLKIT', codec.readInt),
  connectOpen: (uri: string, flags: number) =>
    remote(P.CONNECT_OPEN, 'REMOTE_PROC_CONNECT_OPEN', noArgs, (w) => w.optional(uri, (u) => w.string(u)).uint(flags), { uri, flags }),
  connectClose: () => remote(P.CONNECT_CLOSE, 'REMOTE_PROC_CONNECT_CLOSE', noArgs),
  supportsFeature: (feature: number) =>
    remote(P.CONNECT_SUPPORTS_FEATURE, 'REMOTE_PROC_CONNECT_SUPPORTS_FEATURE', codec.readInt, (w) => w.int(feature), { feature }),
  libVersion: () => remote(P.CONNECT_GET_LIB_VERSION, 'REMOTE_PROC_CONNECT_GET_LIB_VERSION', codec.readHyper),
  hypervisorVersion: () => remote(P.CONNECT_GET_VERSION, 'REMOTE_PROC_CONNECT_GET_VERSION', codec.readHyper),
  listAllDomains: () =>
    remote(P.CONNECT_LIST_ALL_DOMAINS, 'REMOTE_PROC_CONNECT_LIST_ALL_DOMAINS', codec.readDomainList, (w) =>
      // need_results = 1: we want the list, not just the count; flags 0 = active and inactive.
      w.int(1).uint(0),
    ),
  lookupByName: (name: string) =>
    remote(P.DOMAIN_LOOKUP_BY_NAME, 'REMOTE_PROC_DOMAIN_LOOKUP_BY_NAME', codec.readDomain, (w) => w.string(name), { name }),
  lookupByUuid: (uuid: string) => {
    const bytes = codec.uuidToBytes(uuid);
    return remote(P.DOMAIN_LOOKUP_BY_UUID, 'REMOTE_PROC_DOMAIN_LOOKUP_BY_UUID', codec.readDomain, (w) => w.fixedOpaque(bytes), { uuid });
  },
  domainXml: (d: DomainRef, flags: number) => {
    codec.uuidToBytes(d.uuid);
    return remote(P.DOMAIN_GET_XML_DESC, 'REMOTE_PROC_DOMAIN_GET_XML_DESC', codec.readString, (w) => (codec.writeDomain(w, d), w.uint(flags)), { ...domainArgs(d), flags });
  },
  blockJobInfo: (d: DomainRef, disk: string) => {
    codec.uuidToBytes(d.uuid);
    return remote(P.DOMAIN_GET_BLOCK_JOB_INFO, 'REMOTE_PROC_DOMAIN_GET_BLOCK_JOB_INFO', codec.readBlockJobInfo, (w) => {
      codec.writeDomain(w, d);
      w.string(disk).uint(c.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES);
    }, domainArgs(d, disk));
  },
  blockJobAbort: (d: DomainRef, disk: string, flags: number) => {
    codec.uuidToBytes(d.uuid);
    return remote(P.DOMAIN_BLOCK_JOB_ABORT, 'REMOTE_PROC_DOMAIN_BLOCK_JOB_ABORT', noArgs, (w) => {
      codec.writeDomain(w, d);
      w.string(disk).uint(flags);
    }, { ...domainArgs(d, disk), flags });
  },
  blockJobSetSpeed: (d: DomainRef, disk: string, bandwidth: number) => {
    codec.uuidToBytes(d.uuid);
    return remote(P.DOMAIN_BLOCK_JOB_SET_SPEED, 'REMOTE_PROC_DOMAIN_BLOCK_JOB_SET_SPEED', noArgs, (w) => {
      codec.writeDomain(w, d);
      w.string(disk).uhyper(bandwidth).uint(c.VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES);
    }, { ...domainArgs(d, disk), bandwidth });
  },
  domainRegister: (watch: Watch & { kind: 'domain' }) => {
    const eventId = watch.eventId === 'lifecycle' ? c.VIR_DOMAIN_EVENT_ID_LIFECYCLE : c.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2;
    return remote(P.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, 'REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY', codec.readInt, (w) => {
      w.int(eventId).optional(watch.domain, (d) => codec.writeDomain(w, d));
    }, { eventId, domain: watch.domain?.name ?? null });
  },
  domainDeregister: (callbackId: number) =>
    remote(P.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, 'REMOTE_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY', noArgs, (w) => w.int(callbackId), { callbackId }),
  monitorRegister: (watch: Watch & { kind: 'monitor' }) =>
    qemu(c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_REGISTER, 'QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_REGISTER', codec.readInt, (w) => {
      w.optional(watch.domain, (d) => codec.writeDomain(w, d)).optional(watch.event, (e) => w.string(e)).uint(0);
    }, { domain: watch.domain?.name ?? null, event: watch.event ?? null }),
  monitorDeregister: (callbackId: number) =>
    qemu(c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER, 'QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER', noArgs, (w) => w.int(callbackId), { callbackId }),
};
