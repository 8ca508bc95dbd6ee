/** The libvirt layer's public API: the RPC client, its contract, the pieces it is built from, and libvirt's naming rules. */
export * from './types.js';
export { LibvirtClient } from './client.js';
export { resolveLibvirtAddress, DEFAULT_LIBVIRT_URI, type LibvirtAddress } from './address.js';
export { DEFAULT_KEEPALIVE } from './keepalive.js';
export { RpcFramer } from './framing.js';
export * from './job-ids.js';
export * from './domain-xml.js';
