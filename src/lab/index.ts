// The QEMU lab: real qemu-storage-daemons, images and raw QMP connections for tests, the demo and the benchmarks.
export * from './binaries.js';
export * from './images.js';
export * from './json-splitter.js';
export * from './leftovers.js';
export * from './qsd.js';
export * from './raw-qmp.js';
export * from './redis.js';
export * from './tls.js';
export * from './libvirt-domain.js';
export * from './libvirt-tools.js';
export * from './libvirtd.js';
export * from './virsh-observer.js';
