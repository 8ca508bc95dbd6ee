// The layers docs/architecture.md draws are rules in .dependency-cruiser.cjs; here the whole import
// graph (src, test, bench) is checked against them: no import cycle, no upward import, a client
// that runs in browsers, and in src/gateway only use/ws.ts imports `ws`.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cruise, type ICruiseOptions, type ICruiseResult, type IForbiddenRuleType, type IModule } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import { beforeAll, describe, expect, it } from 'vitest';
import { readRepo, REPO_ROOT } from '../../utils/doc-sources.js';

const CONFIG = join(REPO_ROOT, '.dependency-cruiser.cjs');
const rules = (createRequire(import.meta.url)(CONFIG) as { forbidden: IForbiddenRuleType[] }).forbidden;

async function cruiseGraph(paths: string[], baseDir: string, extra: Partial<ICruiseOptions> = {}): Promise<ICruiseResult> {
  const options = await extractDepcruiseOptions(CONFIG);
  const { output } = await cruise(paths, { ...options, ...extra, baseDir, validate: true, ruleSet: { forbidden: rules } }, undefined, {
    tsConfig: extractTSConfig(join(REPO_ROOT, 'tsconfig.json')),
  });
  return output as ICruiseResult;
}

const violationsOf = (graph: ICruiseResult): string[] =>
  graph.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}${v.cycle ? ` (cycle ${v.cycle.map((c) => c.name).join(' -> ')})` : ''}`);

describe('the import graph', () => {
  let graph: ICruiseResult;
  beforeAll(async () => {
    graph = await cruiseGraph(['src', 'test', 'bench'], REPO_ROOT);
  }, 180_000);

  it('has no import cycle, no upward import between layers and no unresolvable import', () => {
    expect(graph.summary.totalCruised).toBeGreaterThan(100);
    expect(violationsOf(graph)).toEqual([]);
  });

  it('places every folder of src in a layer', () => {
    const layers = new Set(rules.flatMap((rule) => (rule.name?.startsWith('layer-') ? [rule.name.slice('layer-'.length)] : [])));
    const folders = readdirSync(join(REPO_ROOT, 'src')).filter((name) => statSync(join(REPO_ROOT, 'src', name)).isDirectory());
    expect(folders.filter((folder) => !layers.has(folder))).toEqual([]);
  });

  it('lets the client reach no Node built-in and no server module through any runtime import', () => {
    const modules = new Map(graph.modules.map((m) => [m.source, m]));
    const portable = (source: string): boolean => source.startsWith('src/client/') && !/^src\/client\/node(-socket)?\.ts$/.test(source);
    const seen = new Set<string>();
    const bad: string[] = [];
    const visit = (module: IModule, path: string[]): void => {
      for (const dep of module.dependencies) {
        if (dep.dependencyTypes.includes('type-only')) continue; // erased: never loaded in a browser
        const trail = [...path, dep.resolved];
        if (dep.coreModule || /^node_modules\/(ws|pino|prom-client|ioredis|ajv)/.test(dep.resolved)) bad.push(trail.join(' -> '));
        else if (dep.resolved.startsWith('src/') && !seen.has(dep.resolved)) {
          seen.add(dep.resolved);
          const next = modules.get(dep.resolved);
          if (next) visit(next, trail);
        }
      }
    };
    const roots = graph.modules.filter((m) => portable(m.source));
    expect(roots.length).toBeGreaterThan(0);
    for (const root of roots) visit(root, [root.source]);
    expect(bad).toEqual([]);
  });

  it('in src/client only node.ts (the Node 20 WebSocket adapter) imports a package', () => {
    const importers = graph.modules.filter((m) => m.source.startsWith('src/client/') && m.dependencies.some((d) => d.resolved.startsWith('node_modules/') || d.coreModule));
    expect(importers.map((m) => m.source)).toEqual(['src/client/node.ts']);
  });

  it('in src/gateway only use/ws.ts imports ws', () => {
    const importers = graph.modules.filter((m) => m.source.startsWith('src/gateway/') && m.dependencies.some((d) => d.module === 'ws'));
    expect(importers.map((m) => m.source)).toEqual(['src/gateway/use/ws.ts']);
  });
});

it('the rules catch a cycle, an upward import and a Node import in the client', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'layers-'));
  try {
    const files: Record<string, string> = {
      'src/qmp/a.ts': "import { b } from '../gateway/b.js';\nexport const a = (): number => b;\n",
      'src/gateway/b.ts': "import { a } from '../qmp/a.js';\nexport const b = 1;\nexport const c = a;\n",
      'src/client/c.ts': "import { readFileSync } from 'node:fs';\nexport const c = readFileSync;\n",
    };
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
    const names = new Set((await cruiseGraph(['src'], dir)).summary.violations.map((v) => v.rule.name));
    expect([...names].sort()).toEqual(['client-runs-in-browsers', 'layer-gateway', 'layer-qmp', 'no-circular']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

it('the docs draw the layers qmp -> jobs -> gateway -> cli, with protocol and client', () => {
  const doc = readRepo('docs/architecture.md');
  expect(doc).toMatch(/src\/qmp\/[\s\S]*src\/jobs\/[\s\S]*src\/gateway\/[\s\S]*src\/cli\//);
  expect(doc).toContain('src/protocol/');
  expect(doc).toContain('.dependency-cruiser.cjs');
});
