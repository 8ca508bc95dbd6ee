/**
 * Everything the lab starts (processes, temp dirs, sockets) registers here, so one call cleans up
 * after a test file or a demo run, and process exit kills stragglers synchronously.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh temp dir with a short path (`/tmp/<prefix>XXXXXX`): unix socket paths must stay under 108
 * bytes, so a long $TMPDIR is passed over. Not registered: the caller owns it.
 */
export function makeShortTempDir(prefix: string): string {
  const base = tmpdir().length <= 40 ? tmpdir() : '/tmp';
  return mkdtempSync(join(base, prefix));
}

export interface Leftover {
  /** What it is, for error messages ("qemu-storage-daemon pid 123"). */
  label: string;
  /** Orderly cleanup (quit a daemon, remove a dir). */
  dispose(): Promise<void> | void;
  /** Synchronous last resort at process exit (SIGKILL, rmSync). */
  disposeNow?(): void;
}

const leftovers = new Set<Leftover>();

/** Registers a leftover; returns the function that unregisters it (call it once disposed). */
export function registerLeftover(leftover: Leftover): () => void {
  leftovers.add(leftover);
  return () => leftovers.delete(leftover);
}

/** Disposes every registered leftover, newest first; throws an AggregateError if any failed. */
export async function cleanupLeftovers(): Promise<void> {
  const errors: unknown[] = [];
  for (const leftover of [...leftovers].reverse()) {
    leftovers.delete(leftover);
    try {
      await leftover.dispose();
    } catch (error) {
      errors.push(new Error(`cleanup of ${leftover.label} failed`, { cause: error }));
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, `${errors.length} leftovers could not be cleaned up`);
}

/** How many leftovers are registered (tests assert that helpers clean up after themselves). */
export function leftoverCount(): number {
  return leftovers.size;
}

process.once('exit', () => {
  for (const leftover of [...leftovers].reverse()) {
    try {
      leftover.disposeNow?.();
    } catch {
      // exiting anyway: best effort
    }
  }
});
