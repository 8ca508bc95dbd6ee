// The libvirt job source: libvirt's domains as VMs, their jobs judged by the same engine as QMP monitors.
export { LibvirtSource, type LibvirtSourceOptions } from './source.js';
export { LibvirtControl } from './control.js';
export { openLibvirtSource, type LibvirtEntry, type OpenedLibvirt } from './open.js';
