/**
 * qcow2 images for the lab: `qemu-img create` and `qemu-io` writes, so jobs have real data to
 * move (and take long enough to observe).
 */
import { execFile } from 'node:child_process';
import { LabError } from '../errors.js';
import { qemuToolPath, type QemuTool } from './binaries.js';

/** Bytes `byte` written over [offsetMiB, offsetMiB + lengthMiB). */
export interface ImagePattern {
  offsetMiB: number;
  lengthMiB: number;
  /** 0..255 */
  byte: number;
}

export interface CreateImageOptions {
  /** Virtual size; may be omitted with a backing file (then the backing file's size). */
  sizeMiB?: number;
  /** Path of a qcow2 backing file. */
  backing?: string;
  /** Data to write after creation; one pattern or several, applied in order. */
  pattern?: ImagePattern | ImagePattern[];
}

const TOOL_TIMEOUT_MS = 120_000;
const MAX_TOOL_OUTPUT = 1024 * 1024;

/** Runs a QEMU tool; rejects with a LabError carrying its output. */
export function runQemuTool(tool: QemuTool, args: string[]): Promise<string> {
  const binary = qemuToolPath(tool);
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: TOOL_TIMEOUT_MS, maxBuffer: MAX_TOOL_OUTPUT }, (error, stdout, stderr) => {
      if (error) reject(new LabError(`${tool} ${args.join(' ')} failed: ${error.message}`, `${stdout}${stderr}`, { cause: error }));
      else resolve(stdout);
    });
  });
}

function checkPattern(pattern: ImagePattern): void {
  const { offsetMiB, lengthMiB, byte } = pattern;
  if (!Number.isInteger(byte) || byte < 0 || byte > 255) throw new LabError(`pattern byte must be an integer 0..255, got ${byte}`);
  if (!(offsetMiB >= 0) || !(lengthMiB > 0)) {
    throw new LabError(`pattern needs offsetMiB >= 0 and lengthMiB > 0, got ${offsetMiB}/${lengthMiB}`);
  }
}

/** The qemu-io command that writes a pattern. */
export function qemuIoWriteCommand(pattern: ImagePattern): string {
  checkPattern(pattern);
  return `write -P ${pattern.byte} ${pattern.offsetMiB}M ${pattern.lengthMiB}M`;
}

/** Writes a pattern into an image that no running process has open (qcow2 locking would refuse). */
export async function writePattern(file: string, pattern: ImagePattern, format = 'qcow2'): Promise<void> {
  await runQemuTool('qemu-io', ['-f', format, '-c', qemuIoWriteCommand(pattern), file]);
}

/** Creates a qcow2 image at `file` (and writes the patterns); returns `file`. */
export async function createQcow2Image(file: string, options: CreateImageOptions): Promise<string> {
  const { sizeMiB, backing } = options;
  if (sizeMiB === undefined && backing === undefined) throw new LabError(`image ${file}: give sizeMiB, a backing file, or both`);
  if (sizeMiB !== undefined && !(Number.isInteger(sizeMiB) && sizeMiB > 0)) {
    throw new LabError(`image ${file}: sizeMiB must be a positive integer, got ${sizeMiB}`);
  }
  const args = ['create', '-q', '-f', 'qcow2'];
  if (backing !== undefined) args.push('-b', backing, '-F', 'qcow2');
  args.push(file);
  if (sizeMiB !== undefined) args.push(`${sizeMiB}M`);
  await runQemuTool('qemu-img', args);
  const patterns = options.pattern === undefined ? [] : Array.isArray(options.pattern) ? options.pattern : [options.pattern];
  for (const pattern of patterns) await writePattern(file, pattern);
  return file;
}

/** Reads `qemu-img info --output=json` (e.g. to check the backing chain after a commit). */
export async function imageInfo(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await runQemuTool('qemu-img', ['info', '-U', '--output=json', file])) as Record<string, unknown>;
}

/** Compares two images' guest-visible contents (`qemu-img compare`); true when identical. */
export async function imagesEqual(a: string, b: string): Promise<boolean> {
  try {
    await runQemuTool('qemu-img', ['compare', '-U', a, b]);
    return true;
  } catch (error) {
    const cause = (error as LabError).cause as { code?: number } | undefined;
    if (cause?.code === 1) return false; // qemu-img compare: exit 1 means "images differ"
    throw error;
  }
}
