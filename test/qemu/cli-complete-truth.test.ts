/**
 * Issue 13 bugs 4 and 5 on a real qemu-storage-daemon behind `serve`: what the command line says
 * about a job that somebody else completed. A script asking "is it pivoted?" must get the truth.
 */
import { expect, it } from 'vitest';
import { startMirror } from '../../src/lab/jobs.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { serveCli } from '../utils/cli-gateway.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';

const MiB = 1024 * 1024;

describeQemu('the command line tells the truth about a job completed by someone else', () => {
  cleanupLeftoversAfterAll();

  describeBuilt('complete twice, wait after the fact', () => {
    it('two completes: both exit 0; the later one says another client completed it and that it pivoted; wait --for ready says it was ready and is now concluded', async () => {
      const qsd = await startQsd();
      const gateway = await serveCli(qsd, ['--listen', '127.0.0.1:0']);
      await startMirror(qsd, qsd, { jobId: 'm0', dataMiB: 8, speed: 0 });

      // Two at once: whichever loses must not report a failure for a job that pivoted as asked.
      const [a, b] = [0, 1].map(() => runCli(['complete', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--timeout', '60s']));
      expect(await a!.exited).toBe(0);
      expect(await b!.exited).toBe(0);
      for (const run of [a!, b!]) expect(run.stdout.join('\n')).toMatch(/^complete: (ok|already completed by another client): vm1\/m0/m);

      // Once it is over, a third complete is the certain loser.
      const late = runCli(['complete', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--timeout', '30s']);
      expect(await late.exited).toBe(0);
      expect(late.stdout.join('\n')).toMatch(/completed by another client.*outcome=completed pivoted=true/);
      const lateJson = runCli(['complete', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--timeout', '30s', '--json']);
      expect(await lateJson.exited).toBe(0);
      expect(JSON.parse(lateJson.stdout.join('\n'))).toMatchObject({ completedBy: 'another client', job: { id: 'm0', outcome: 'completed', pivoted: true } });

      // Bug 5: it was ready; it is now concluded and pivoted. Not "ended before it was ready".
      const wait = runCli(['wait', gateway.ws, '--vm', 'vm1', '--job', 'm0', '--for', 'ready', '--timeout', '30s']);
      expect(await wait.exited).toBe(1);
      const said = wait.stderr.join('\n');
      expect(said).not.toMatch(/before it was ready/);
      expect(said).toMatch(/was ready.*has since concluded: outcome completed, pivoted/);

      gateway.run.child.kill('SIGTERM');
      expect(await gateway.run.exited).toBe(0);
    });
  });
});
