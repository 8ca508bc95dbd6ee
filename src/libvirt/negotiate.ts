/**
 * The opening calls of a connection, in libvirt's own order (remoteConnectOpen): auth list, auth
 * (none needs nothing; polkit is one call, libvirtd asks polkit about our uid; SASL is not spoken),
 * connect open, the keepalive feature probe (asking is what starts libvirtd's own pings to us, see
 * remoteDispatchConnectSupportsFeature), then both versions for the session record.
 */
import { LibvirtAuthError, LibvirtRemoteError } from '../errors.js';
import { specs, type CallSpec } from './calls.js';
import { AUTH_TYPES, VIR_CONNECT_RO, VIR_DRV_FEATURE_PROGRAM_KEEPALIVE } from './constants.js';
import type { LibvirtVersion } from './types.js';

export type Caller = <R>(spec: CallSpec<R>) => Promise<R>;

export interface Negotiated {
  libVersion: LibvirtVersion;
  hypervisorVersion: LibvirtVersion;
  /** libvirtd supports the keepalive program (and now pings us). */
  keepalive: boolean;
}

export async function negotiate(
  call: Caller,
  { socketPath, openUri, readOnly, keepalive }: { socketPath: string; openUri: string; readOnly: boolean; keepalive: boolean },
): Promise<Negotiated> {
  await authenticate(call, socketPath, await call(specs.authList()));
  await call(specs.connectOpen(openUri, readOnly ? VIR_CONNECT_RO : 0));
  const supported = keepalive && (await call(specs.supportsFeature(VIR_DRV_FEATURE_PROGRAM_KEEPALIVE))) === 1;
  return {
    keepalive: supported,
    libVersion: unpackVersion(await call(specs.libVersion())),
    hypervisorVersion: unpackVersion(await call(specs.hypervisorVersion())),
  };
}

/** None when offered (or nothing is), else polkit. */
async function authenticate(call: Caller, socketPath: string, offered: number[]): Promise<void> {
  const names = offered.map((t) => AUTH_TYPES[t] ?? `type ${t}`);
  if (offered.length === 0 || names.includes('none')) return;
  if (!names.includes('polkit')) throw new LibvirtAuthError(socketPath, names);
  try {
    await call(specs.authPolkit());
  } catch (err) {
    if (err instanceof LibvirtRemoteError) throw new LibvirtAuthError(socketPath, ['polkit'], { cause: err });
    throw err;
  }
}

/** libvirt packs versions as major * 1_000_000 + minor * 1_000 + micro. */
export function unpackVersion(packed: number): LibvirtVersion {
  return { major: Math.floor(packed / 1_000_000), minor: Math.floor(packed / 1_000) % 1_000, micro: packed % 1_000, packed };
}
