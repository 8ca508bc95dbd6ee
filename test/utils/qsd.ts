/**
 * Test-side entry to the QEMU lab (src/lab): re-exports it and adds the vitest wiring, so a test
 * file needs one import and one call to be leak-proof:
 *
 *   import { describeQemu } from '../utils/qemu-gate.js';
 *   import { startQsd, cleanupLeftoversAfterAll } from '../utils/qsd.js';
 *   describeQemu('mirror', () => {
 *     cleanupLeftoversAfterAll();
 *     it('...', async () => { const qsd = await startQsd(); ... });
 *   });
 */
import { rmSync } from 'node:fs';
import { afterAll } from 'vitest';
import { cleanupLeftovers, makeShortTempDir, registerLeftover } from '../../src/lab/index.js';

export * from '../../src/lab/index.js';

/** Registers `afterAll(cleanupLeftovers)` in the current suite. */
export function cleanupLeftoversAfterAll(): void {
  afterAll(cleanupLeftovers);
}

/** A fresh short temp dir, removed by cleanupLeftovers (unix socket paths must stay under 108 bytes). */
export function makeTestDir(prefix = 'bjt-'): string {
  const dir = makeShortTempDir(prefix);
  registerLeftover({
    label: `temp dir ${dir}`,
    dispose: () => rmSync(dir, { recursive: true, force: true }),
    disposeNow: () => rmSync(dir, { recursive: true, force: true }),
  });
  return dir;
}
