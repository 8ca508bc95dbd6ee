// docs/errors.md must document every error code src/errors.ts declares, and nothing else.
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

it('docs/errors.md documents exactly the codes of src/errors.ts', () => {
  const union = /export type ErrorCode =([^;]+);/.exec(read('src/errors.ts'))?.[1] ?? '';
  const declared = [...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]).sort();
  const documented = [...read('docs/errors.md').matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]).sort();
  expect(declared.length).toBeGreaterThan(0);
  expect(documented).toEqual(declared);
});
