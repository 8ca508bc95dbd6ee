// The missing-QEMU banner, free of vitest imports so global-setup can print it too.
import { qemuTools } from '../../src/lab/binaries.js';
import { inCi, missingBanner } from './banner.js';

export { inCi };

/** True when qemu-storage-daemon, qemu-img and qemu-io are all installed. */
export const qemuAvailable = qemuTools().missing.length === 0;

/** What is missing and how to install it; empty when nothing is. */
export function qemuMissingBanner(): string {
  const { missing, missingPackages } = qemuTools();
  if (missing.length === 0) return '';
  return missingBanner('QEMU', `missing ${missing.join(', ')}`, [
    `Install: apt-get install -y ${missingPackages.join(' ')}`,
    '(Debian packages qemu-system-common and qemu-utils provide qemu-storage-daemon, qemu-img, qemu-io)',
  ]);
}
