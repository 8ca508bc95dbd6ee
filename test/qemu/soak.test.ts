/**
 * A slice of the chaos soak (src/lab/soak, `npm run soak`): a fixed seed, then one random seed that
 * it prints, each ~1 minute against real qemu-storage-daemons, with gateway and daemon SIGKILLs.
 * Every pushed sequence must equal QEMU's own (drain blips aside), every outcome must match, every
 * complete sent on a pushed ready must succeed, and neither subscriber may see a gap or a duplicate.
 */
import { expect, it } from 'vitest';
import { summarize } from '../../src/lab/soak/report.js';
import { runSoak } from '../../src/lab/soak/run.js';
import { cliBuilt } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';

const SLICE_MS = Number(process.env.SOAK_SLICE_MS ?? 55_000);

describeQemu('chaos soak slice (real QEMU, the gateway CLI as a child process)', () => {
  cleanupLeftoversAfterAll();
  const seeds = [20261130, Math.floor(Math.random() * 2 ** 31)];
  for (const [i, seed] of seeds.entries()) {
    it(`${i === 0 ? 'fixed' : 'random'} seed ${seed}: pushed sequences and outcomes equal QEMU's, no gap, no duplicate`, async () => {
      expect(cliBuilt, 'the soak runs the built CLI: npm run build first (npm test does)').toBe(true);
      console.log(`soak slice: seed ${seed} (replay: npm run soak -- --seed ${seed} --duration ${Math.round(SLICE_MS / 1000)}s)`);
      const report = await runSoak({ seed, jobs: 10_000, durationMs: SLICE_MS, concurrency: 4, gatewayKillEveryMs: 20_000, qemuKillEveryMs: 25_000 });
      const { text, ok } = summarize(report);
      console.log(text);
      expect(report.jobs).toBeGreaterThan(10);
      expect(report.gatewayKills + report.qemuKills).toBeGreaterThan(0);
      expect(report.mismatches).toEqual([]);
      expect(ok).toBe(true);
    }, SLICE_MS + 240_000);
  }
});
