/**
 * Finds the QEMU tools the lab drives. Looked up once on PATH (plus the usual system dirs), so a
 * missing package is reported by name instead of surfacing later as a spawn ENOENT.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { LabError } from '../errors.js';

/** Each tool the lab needs, and the Debian package that ships it. */
export const QEMU_TOOLS = {
  'qemu-storage-daemon': 'qemu-system-common',
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
} as const;

export type QemuTool = keyof typeof QEMU_TOOLS;

export interface QemuToolsDetection {
  /** Absolute path of each tool that was found. */
  paths: Partial<Record<QemuTool, string>>;
  missing: QemuTool[];
  /** Debian packages that would provide the missing tools (deduplicated). */
  missingPackages: string[];
}

const FALLBACK_DIRS = ['/usr/bin', '/usr/local/bin'];

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Colon-separated dirs that replace the search (e.g. a QEMU build in /opt/qemu/bin). */
export const QEMU_DIRS_ENV = 'BLOCKJOB_GATEWAY_QEMU_DIRS';

/**
 * $BLOCKJOB_GATEWAY_QEMU_DIRS when set; otherwise PATH, then the usual system dirs (a sanitized
 * PATH should not hide an installed QEMU).
 */
export function defaultSearchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[QEMU_DIRS_ENV];
  if (override !== undefined) return override.split(delimiter).filter(Boolean);
  return [...(env.PATH ?? '').split(delimiter).filter(Boolean), ...FALLBACK_DIRS];
}

function findIn(dirs: readonly string[], tool: string): string | undefined {
  for (const dir of dirs) {
    const candidate = join(dir, tool);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function detectQemuTools(searchDirs: readonly string[] = defaultSearchDirs()): QemuToolsDetection {
  const paths: Partial<Record<QemuTool, string>> = {};
  const missing: QemuTool[] = [];
  for (const tool of Object.keys(QEMU_TOOLS) as QemuTool[]) {
    const found = findIn(searchDirs, tool);
    if (found) paths[tool] = found;
    else missing.push(tool);
  }
  const missingPackages = [...new Set(missing.map((tool) => QEMU_TOOLS[tool]))];
  return { paths, missing, missingPackages };
}

let cached: QemuToolsDetection | undefined;

/** The detection for this process (PATH does not change under us). */
export function qemuTools(): QemuToolsDetection {
  cached ??= detectQemuTools();
  return cached;
}

/** Path of a tool, or a clear error naming the package to install. */
export function qemuToolPath(tool: QemuTool): string {
  const found = qemuTools().paths[tool];
  if (found) return found;
  throw new LabError(`${tool} not found on PATH; install the Debian package ${QEMU_TOOLS[tool]}`);
}
