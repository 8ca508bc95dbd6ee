// The QEMU gate as a laptop and as CI see it when QEMU is missing: skip with a banner, or fail loudly.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { QEMU_DIRS_ENV } from '../../src/lab/index.js';

const vitest = fileURLToPath(new URL('../../node_modules/vitest/vitest.mjs', import.meta.url));
const config = fileURLToPath(new URL('../fixtures/qemu-gate/vitest.config.ts', import.meta.url));

/** Runs the fixture project in a child vitest with no QEMU on the search path. */
function runGateFixture(ci: boolean): Promise<{ status: number; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, [QEMU_DIRS_ENV]: '', NO_COLOR: '1' };
  delete env.CI;
  if (ci) env.CI = 'true';
  return new Promise((resolve) => {
    execFile(process.execPath, [vitest, 'run', '--config', config], { env, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ status: error ? Number(error.code ?? -1) : 0, output: `${stdout}${stderr}` });
    });
  });
}

describe.concurrent('QEMU gate with QEMU missing', () => {
  it('outside CI: skips the suite and prints the banner once, naming the packages', async () => {
    const { status, output } = await runGateFixture(false);
    expect(status).toBe(0);
    expect(output.match(/QEMU tests SKIPPED/g)).toHaveLength(1);
    expect(output).toContain('apt-get install -y qemu-system-common qemu-utils');
    expect(output).toMatch(/1 skipped/);
  });

  it('in CI: fails loudly', async () => {
    const { status, output } = await runGateFixture(true);
    expect(status).toBe(1);
    expect(output).toContain('needs QEMU, which is missing on this CI machine');
    expect(output).toContain('QEMU tests FAIL (CI=true)');
  });
});
