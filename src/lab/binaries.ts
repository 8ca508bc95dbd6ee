/**
 * Finds the tools the lab drives (QEMU's here; the Redis and libvirt labs use the same lookup).
 * Looked up once on PATH (plus the usual system dirs), so a missing package is reported by name
 * instead of surfacing later as a spawn ENOENT.
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

/** Where the tools of one table were found, and what is missing. */
export interface ToolsDetection<T extends string> {
  /** Absolute path of each tool that was found. */
  paths: Partial<Record<T, string>>;
  missing: T[];
  /** Debian packages that would provide the missing tools (deduplicated). */
  missingPackages: string[];
}

export type QemuToolsDetection = ToolsDetection<QemuTool>;

const FALLBACK_DIRS = ['/usr/bin', '/usr/local/bin'];

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Colon-separated dirs that replace the search (e.g. a QEMU build in /opt/qemu/bin). */
export const QEMU_DIRS_ENV = 'BLOCKJOB_GATEWAY_QEMU_DIRS';

/** PATH, then the usual system dirs (a sanitized PATH should not hide an installed tool). */
export function pathDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  return [...(env.PATH ?? '').split(delimiter).filter(Boolean), ...FALLBACK_DIRS];
}

/** $BLOCKJOB_GATEWAY_QEMU_DIRS when set; otherwise pathDirs. */
export function defaultSearchDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[QEMU_DIRS_ENV];
  if (override !== undefined) return override.split(delimiter).filter(Boolean);
  return pathDirs(env);
}

/** Looks up each tool of `table` (tool -> Debian package) in `dirs`, first match wins. */
export function detectTools<T extends string>(table: Readonly<Record<T, string>>, dirs: readonly string[]): ToolsDetection<T> {
  const paths: Partial<Record<T, string>> = {};
  const missing: T[] = [];
  for (const tool of Object.keys(table) as T[]) {
    const found = dirs.map((dir) => join(dir, tool)).find(isExecutable);
    if (found) paths[tool] = found;
    else missing.push(tool);
  }
  return { paths, missing, missingPackages: [...new Set(missing.map((tool) => table[tool]))] };
}

/** Path of a detected tool, or a clear error naming the package to install. */
export function detectedToolPath<T extends string>(table: Readonly<Record<T, string>>, detection: ToolsDetection<T>, tool: T): string {
  const found = detection.paths[tool];
  if (found) return found;
  throw new LabError(`${tool} not found on PATH; install the Debian package ${table[tool]}`);
}

export function detectQemuTools(searchDirs: readonly string[] = defaultSearchDirs()): QemuToolsDetection {
  return detectTools(QEMU_TOOLS, searchDirs);
}

let cached: QemuToolsDetection | undefined;

/** The detection for this process (PATH does not change under us). */
export function qemuTools(): QemuToolsDetection {
  cached ??= detectQemuTools();
  return cached;
}

/** Path of a tool, or a clear error naming the package to install. */
export function qemuToolPath(tool: QemuTool): string {
  return detectedToolPath(QEMU_TOOLS, qemuTools(), tool);
}
