/** The libvirt layer's public API: the RPC client's contract (the client itself lands next). */
export * from './types.js';
