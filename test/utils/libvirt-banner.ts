// The missing-libvirt banner, free of vitest imports so global-setup can print it too.
import { libvirtTools } from '../../src/lab/libvirt-tools.js';
import { missingBanner } from './banner.js';

/** True when the lab can start (or reuse) a privileged libvirtd with TCG domains. */
export const libvirtAvailable = libvirtTools().problems.length === 0;

/** What is missing and how to fix it; empty when nothing is. */
export function libvirtMissingBanner(): string {
  const { problems, missingPackages } = libvirtTools();
  if (problems.length === 0) return '';
  return missingBanner('libvirt', problems.join('; '), [
    ...(missingPackages.length > 0 ? [`Install: apt-get install -y --no-install-recommends ${missingPackages.join(' ')}`] : []),
    '(.ci/run installs the packages and creates the libvirt-qemu user and /etc/libvirt/qemu.conf)',
  ]);
}
