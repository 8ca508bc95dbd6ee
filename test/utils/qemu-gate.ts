/** Gate for suites that need real QEMU tools (the rule: gate.ts). */
import { qemuTools } from '../../src/lab/binaries.js';
import { describeNeeding } from './gate.js';
import { inCi, qemuAvailable, qemuMissingBanner } from './qemu-banner.js';

export { inCi, qemuAvailable, qemuMissingBanner };

/** Like `describe`, for suites that drive real QEMU. */
export function describeQemu(name: string, fn: () => void): void {
  describeNeeding({ available: qemuAvailable, what: 'QEMU', missing: () => qemuTools().missingPackages.join(' and '), banner: qemuMissingBanner }, name, fn);
}
