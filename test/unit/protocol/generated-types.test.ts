import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

it('src/generated/ (the message types and the config defaults) is up to date with schemas/', async () => {
  const run = promisify(execFile);
  const result = await run(process.execPath, ['scripts/gen-types.mjs', '--check'], { cwd: new URL('../../../', import.meta.url).pathname }).then(
    () => 'up to date',
    (error: { stderr?: string }) => error.stderr ?? String(error),
  );
  expect(result).toBe('up to date');
});
