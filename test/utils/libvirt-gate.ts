/**
 * Gate for suites that need a real libvirtd. Outside CI a missing piece skips the suite (and
 * global-setup prints a banner once); in CI (CI=true) it is a failing test.
 *
 * Test files that use it live in test/libvirt/, which vitest runs one file at a time (the
 * "libvirt" project in vitest.config.ts): they share the machine's one privileged libvirtd, and
 * a test that restarts it must not pull it from under another file.
 */
import { describe, it } from 'vitest';
import { libvirtAvailable, libvirtMissingBanner } from './libvirt-banner.js';
import { inCi } from './qemu-banner.js';

export { libvirtAvailable, libvirtMissingBanner };

export function describeLibvirt(name: string, fn: () => void): void {
  if (libvirtAvailable) {
    describe(name, fn);
  } else if (inCi) {
    describe(name, () => {
      it('needs libvirtd, which cannot run on this CI machine', () => {
        throw new Error(libvirtMissingBanner());
      });
    });
  } else {
    describe.skip(`${name} [skipped: needs libvirtd]`, fn);
  }
}
