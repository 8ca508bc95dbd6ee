/**
 * Gate for suites that need a real libvirtd (the rule: gate.ts).
 *
 * Test files that use it live in test/libvirt/, which vitest runs one file at a time (the
 * "libvirt" project in vitest.config.ts): they share the machine's one privileged libvirtd, and
 * a test that restarts it must not pull it from under another file.
 */
import { describeNeeding } from './gate.js';
import { libvirtAvailable, libvirtMissingBanner } from './libvirt-banner.js';

export { libvirtAvailable, libvirtMissingBanner };

export function describeLibvirt(name: string, fn: () => void): void {
  describeNeeding({ available: libvirtAvailable, what: 'libvirtd', missing: () => 'libvirtd', banner: libvirtMissingBanner }, name, fn);
}
