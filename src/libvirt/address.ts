/**
 * Local libvirt URIs to what goes on the wire: the unix socket to dial and the URI to open. The
 * transport part (`+unix`) and client-side parameters (`?socket=`) are the client's business; the
 * daemon gets the bare driver URI, as libvirt's own remote driver sends it.
 */
import { ConfigError } from '../errors.js';

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';
const SYSTEM_SOCKET_DIR = '/run/libvirt';

export interface LibvirtAddress {
  /** The URI sent in connect open, e.g. `qemu:///system`. */
  openUri: string;
  socketPath: string;
}

export function resolveLibvirtAddress(uri: string, readOnly: boolean, socketPath?: string): LibvirtAddress {
  const match = /^([a-z][a-z0-9]*)(?:\+([a-z]+))?:\/\/([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i.exec(uri);
  if (!match) throw new ConfigError(`not a libvirt URI: ${JSON.stringify(uri)} (expected e.g. qemu:///system)`, 'libvirt.uri');
  const [, driver, transport, host, path = '/', query] = match;
  if ((transport !== undefined && transport !== 'unix') || host !== '') {
    throw new ConfigError(
      `${uri}: only local unix-socket connections are supported (qemu:///system, qemu+unix:///system?socket=...); run the gateway on the libvirt host`,
      'libvirt.uri',
    );
  }
  const params = new URLSearchParams(query ?? '');
  const explicit = socketPath ?? params.get('socket') ?? undefined;
  return { openUri: `${driver}://${path}`, socketPath: explicit ?? defaultSocket(path, readOnly) };
}

/** libvirt's own defaults: the system daemon under /run/libvirt; a session daemon under XDG_RUNTIME_DIR (root's session is the system daemon). */
function defaultSocket(path: string, readOnly: boolean): string {
  const name = readOnly ? 'libvirt-sock-ro' : 'libvirt-sock';
  const isRoot = process.getuid?.() === 0;
  if (path === '/session' && !isRoot) {
    const runtime = process.env.XDG_RUNTIME_DIR;
    if (!runtime) throw new ConfigError('qemu:///session needs XDG_RUNTIME_DIR to find the session daemon socket', 'libvirt.uri');
    return `${runtime}/libvirt/libvirt-sock`;
  }
  return `${SYSTEM_SOCKET_DIR}/${name}`;
}
