// docs/architecture.md draws layers (qmp -> jobs -> gateway -> cli) and says only
// src/gateway/use/ws.ts imports `ws` in the gateway: the import graph must agree with the drawing.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { readRepo, REPO_ROOT } from './doc-sources.js';

const SRC = join(REPO_ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** `src/<top>/...` -> `<top>` of each module a file imports (relative imports), plus bare package names. */
function importsOf(file: string): { layers: Set<string>; packages: Set<string> } {
  const layers = new Set<string>();
  const packages = new Set<string>();
  for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/(?:import|export)[^'"]*?from\s+'([^']+)'/g)) {
    if (specifier!.startsWith('.')) layers.add(relative(SRC, resolve(dirname(file), specifier!)).split('/')[0]!);
    else packages.add(specifier!);
  }
  return { layers, packages };
}

/** What each layer may import from the project (besides itself): only what lies below it. */
const BELOW: Readonly<Record<string, readonly string[]>> = {
  qmp: ['errors.js', 'log.js', 'backoff.js', 'generated'],
  libvirt: ['errors.js', 'log.js', 'backoff.js'],
  jobs: ['errors.js', 'log.js', 'backoff.js', 'generated', 'qmp', 'libvirt'],
  protocol: ['errors.js', 'generated'],
  // The public client runs in browsers too: the pure protocol codes and the backoff policy, nothing of the server.
  client: ['errors.js', 'backoff.js', 'generated', 'protocol'],
  gateway: ['errors.js', 'log.js', 'backoff.js', 'version.js', 'generated', 'qmp', 'libvirt', 'jobs', 'protocol'],
};

it('the docs draw the layers qmp -> jobs -> gateway -> cli', () => {
  expect(readRepo('docs/architecture.md')).toMatch(/src\/qmp\/[\s\S]*src\/jobs\/[\s\S]*src\/gateway\/[\s\S]*src\/cli\//);
});

for (const [layer, allowed] of Object.entries(BELOW)) {
  it(`src/${layer} imports only from the layers below it`, () => {
    for (const file of sourceFiles(join(SRC, layer))) {
      for (const imported of importsOf(file).layers) {
        if (imported === layer) continue;
        expect(allowed, `${relative(REPO_ROOT, file)} imports from src/${imported}`).toContain(imported);
      }
    }
  });
}

it('in src/client only node.ts (the Node 20 WebSocket adapter) imports a package', () => {
  const importers = sourceFiles(join(SRC, 'client')).filter((file) => importsOf(file).packages.size > 0);
  expect(importers.map((file) => relative(REPO_ROOT, file))).toEqual(['src/client/node.ts']);
});

it('in src/gateway only use/ws.ts imports ws', () => {
  const importers = sourceFiles(join(SRC, 'gateway')).filter((file) => importsOf(file).packages.has('ws'));
  expect(importers.map((file) => relative(REPO_ROOT, file))).toEqual(['src/gateway/use/ws.ts']);
});
