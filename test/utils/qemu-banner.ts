// The missing-QEMU banner, free of vitest imports so global-setup can print it too.
import { qemuTools } from '../../src/lab/binaries.js';

/** True when qemu-storage-daemon, qemu-img and qemu-io are all installed. */
export const qemuAvailable = qemuTools().missing.length === 0;

export const inCi = process.env.CI === 'true';

/** What is missing and how to install it; empty when nothing is. */
export function qemuMissingBanner(): string {
  const { missing, missingPackages } = qemuTools();
  if (missing.length === 0) return '';
  const line = '='.repeat(78);
  return [
    line,
    `QEMU tests ${inCi ? 'FAIL (CI=true)' : 'SKIPPED'}: missing ${missing.join(', ')}`,
    `Install: apt-get install -y ${missingPackages.join(' ')}`,
    '(Debian packages qemu-system-common and qemu-utils provide qemu-storage-daemon, qemu-img, qemu-io)',
    line,
  ].join('\n');
}
