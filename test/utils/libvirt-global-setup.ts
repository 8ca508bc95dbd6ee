// Runs once per `vitest run` (libvirt project): announces a libvirt lab that cannot run.
import { libvirtMissingBanner } from './libvirt-banner.js';

export default function setup(): void {
  const banner = libvirtMissingBanner();
  if (banner) process.stderr.write(`\n${banner}\n\n`);
}
