/**
 * docs/client.md's service example, run as written (docs/examples/pivot-mirrors.ts; a doc test keeps
 * the page and the file identical) against `serve` in front of a real qemu-storage-daemon: every
 * mirror of the VM is pivoted once QEMU says ready, never before, and each outcome is logged.
 */
import { expect, it } from 'vitest';
import { pivotMirrors } from '../../docs/examples/pivot-mirrors.js';
import { startMirror } from '../../src/lab/jobs.js';
import { describeBuilt } from '../utils/built-cli.js';
import { serveCli } from '../utils/cli-gateway.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';

const MiB = 1024 * 1024;

describeQemu('docs/client.md example against real QEMU', () => {
  cleanupLeftoversAfterAll();

  describeBuilt('pivot every mirror of a VM the moment it is ready', () => {
    it('pivots a mirror that is ready before the service starts and one that becomes ready later, once each', async () => {
      const qsd = await startQsd();
      const oracle = await qsd.oracle();
      const gateway = await serveCli(qsd, ['--listen', '127.0.0.1:0']);
      await startMirror(qsd, qsd, { jobId: 'early', dataMiB: 4, speed: 0 });
      await oracle.waitForStatus('early', 'ready', 30_000);

      const lines: string[] = [];
      const stop = new AbortController();
      const service = pivotMirrors(gateway.ws, 'vm1', stop.signal, (line) => lines.push(line));
      await expect.poll(() => lines.join('\n'), { timeout: 30_000, interval: 100 }).toContain('vm1/early: outcome completed, pivoted');

      await startMirror(qsd, qsd, { jobId: 'late', dataMiB: 16, speed: 8 * MiB });
      await expect.poll(() => lines.join('\n'), { timeout: 60_000, interval: 100 }).toContain('vm1/late: outcome completed, pivoted');
      // Truth: QEMU announced ready before it saw the complete, and each job was completed once.
      for (const id of ['early', 'late']) {
        const statuses = oracle.statusSequence(id);
        expect(statuses.indexOf('ready')).toBeGreaterThanOrEqual(0);
        expect(statuses.indexOf('ready')).toBeLessThan(statuses.indexOf('waiting') === -1 ? statuses.indexOf('pending') : statuses.indexOf('waiting'));
      }
      expect(lines.filter((l) => /^vm1\/(early|late): /.test(l))).toHaveLength(2);

      stop.abort();
      await service;
      gateway.run.child.kill('SIGTERM');
      expect(await gateway.run.exited).toBe(0);
    });
  });
});
