/**
 * Finds what the libvirt lab drives: the daemons, virsh, the emulator for TCG domains, and the
 * system setup `.ci/run` makes (the libvirt-qemu user, qemu.conf). Looked up once, so a missing
 * piece is named with its remedy instead of surfacing as a daemon that dies at start.
 */
import { readFileSync } from 'node:fs';
import { isExecutable } from './binaries.js';

/** Each binary the lab needs, and the Debian package that ships it. */
export const LIBVIRT_TOOLS = {
  '/usr/sbin/libvirtd': 'libvirt-daemon libvirt-daemon-driver-qemu',
  '/usr/sbin/virtlogd': 'libvirt-daemon',
  '/usr/bin/virsh': 'libvirt-clients',
  '/usr/bin/qemu-system-x86_64': 'qemu-system-x86',
} as const;

export interface LibvirtDetection {
  /** Human-readable problems, empty when the lab can run. */
  problems: string[];
  /** Debian packages that would provide the missing binaries. */
  missingPackages: string[];
}

function userExists(name: string): boolean {
  try {
    return readFileSync('/etc/passwd', 'utf8').split('\n').some((line) => line.startsWith(`${name}:`));
  } catch {
    return false;
  }
}

export function detectLibvirt(): LibvirtDetection {
  const problems: string[] = [];
  const packages = new Set<string>();
  for (const [binary, pkg] of Object.entries(LIBVIRT_TOOLS)) {
    if (!isExecutable(binary)) {
      problems.push(`missing ${binary}`);
      for (const name of pkg.split(' ')) packages.add(name);
    }
  }
  // Only a privileged daemon serves qemu:///system; the lab starts it, so it needs root.
  if (process.getuid?.() !== 0) problems.push('not running as root (the lab starts the privileged libvirtd)');
  // The QEMU driver resolves its built-in user before reading qemu.conf (reference libvirt.md §1).
  if (packages.size === 0 && !userExists('libvirt-qemu')) problems.push('no libvirt-qemu user (run the setup in .ci/run)');
  return { problems, missingPackages: [...packages] };
}

let cached: LibvirtDetection | undefined;

/** The detection for this process. */
export function libvirtTools(): LibvirtDetection {
  cached ??= detectLibvirt();
  return cached;
}
