// docs/client.md shows the service example verbatim: the ts block on the page and
// docs/examples/pivot-mirrors.ts (which test/qemu/docs-client-example.test.ts runs) must be identical.
import { expect, it } from 'vitest';
import { readRepo } from '../../utils/doc-sources.js';

it('docs/client.md shows docs/examples/pivot-mirrors.ts exactly as the test runs it', () => {
  const page = readRepo('docs/client.md');
  const blocks = [...page.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  expect(blocks).toContain(readRepo('docs/examples/pivot-mirrors.ts'));
  expect(page).toContain('test/qemu/docs-client-example.test.ts');
});
