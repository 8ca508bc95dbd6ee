/**
 * Gate for suites that need real QEMU tools. Outside CI a missing tool skips the suite (and
 * global-setup prints a banner once); in CI (CI=true) it is a failing test, because a green run
 * that silently skipped QEMU would prove nothing.
 */
import { describe, it } from 'vitest';
import { qemuTools } from '../../src/lab/binaries.js';
import { inCi, qemuAvailable, qemuMissingBanner } from './qemu-banner.js';

export { inCi, qemuAvailable, qemuMissingBanner };

/**
 * Like `describe`, for suites that drive real QEMU. Skipped with a telling name when the tools are
 * missing outside CI; replaced by one failing test in CI.
 */
export function describeQemu(name: string, fn: () => void): void {
  if (qemuAvailable) {
    describe(name, fn);
  } else if (inCi) {
    describe(name, () => {
      it('needs QEMU, which is missing on this CI machine', () => {
        throw new Error(qemuMissingBanner());
      });
    });
  } else {
    describe.skip(`${name} [skipped: needs ${qemuTools().missingPackages.join(' and ')}]`, fn);
  }
}
