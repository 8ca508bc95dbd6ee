// docs/operations.md documents exactly what the code has: the settings of schemas/config.schema.json
// with their defaults and flags, the metrics of the live Prometheus registry, log messages that the
// source really logs at the documented level, and the close codes of codes.ts.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVE_USAGE } from '../../../src/cli/serve.js';
import { GatewayCore } from '../../../src/gateway/core.js';
import { createMetrics } from '../../../src/gateway/metrics.js';
import { CLOSE_CODES } from '../../../src/protocol/codes.js';
import { JobRegistry } from '../../../src/jobs/registry.js';
import { code, readRepo, REPO_ROOT, tableUnder } from '../../utils/doc-sources.js';

const DOC = 'docs/operations.md';

interface SchemaNode {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, SchemaNode>;
}

/** Leaf settings of the config schema: `history.maxEntries` -> its schema. */
function schemaLeaves(node: SchemaNode, prefix = ''): Map<string, SchemaNode> {
  const leaves = new Map<string, SchemaNode>();
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (child.type === 'object' && child.properties) for (const [k, v] of schemaLeaves(child, path)) leaves.set(k, v);
    else leaves.set(path, child);
  }
  return leaves;
}

describe('operations.md: configuration reference', () => {
  const schema = JSON.parse(readRepo('schemas/config.schema.json')) as SchemaNode;
  const leaves = schemaLeaves(schema);
  const rows = tableUnder(DOC, 'Configuration reference');

  it('lists every setting of the config schema once, and nothing else', () => {
    const documented = rows.map((row) => code(row[0]!));
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...leaves.keys()].sort());
  });

  it("gives each setting the schema's type and default", () => {
    for (const [setting, , type, defaultCell] of rows) {
      const node = leaves.get(code(setting!))!;
      if (node.enum) expect([...type!.matchAll(/`([^`]+)`/g)].map((m) => m[1]), setting).toEqual(node.enum);
      else expect(type!.split(' ')[0], setting).toBe(node.type);
      expect(defaultCell === '' ? undefined : JSON.parse(code(defaultCell!)), setting).toEqual(node.default);
    }
  });

  it('names the serve flag of each setting that has one, and every serve flag', () => {
    const usageFlags = new Set([...SERVE_USAGE.matchAll(/^\s+(--[\w-]+)/gm)].map((m) => m[1]!));
    const documentedFlags = rows.map((row) => code(row[1]!).split(' ')[0]!).filter(Boolean);
    for (const flag of documentedFlags) expect(usageFlags, flag).toContain(flag);
    for (const flag of usageFlags) if (flag !== '--config' && flag !== '--help') expect(documentedFlags, flag).toContain(flag);
  });
});

describe('operations.md: metrics', () => {
  it('lists metrics that exist with the documented type and labels, and every metric the gateway defines', async () => {
    const registry = new JobRegistry();
    const metrics = createMetrics(new GatewayCore({ source: registry }));
    try {
      const live = new Map((await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, m]));
      const rows = tableUnder(DOC, 'Metrics');
      const documented = new Set<string>();
      for (const [name, type, labels] of rows) {
        const metricName = code(name!);
        documented.add(metricName);
        expect(live.get(metricName)?.type, metricName).toBe(type);
        const liveLabels = (metrics.registry.getSingleMetric(metricName) as unknown as { labelNames: string[] }).labelNames;
        expect([...labels!.matchAll(/`([^`]+)`/g)].map((m) => m[1]), metricName).toEqual(liveLabels);
      }
      const own = [...live.keys()].filter((name) => !/^blockjob_gateway_(process|nodejs)_/.test(name));
      for (const name of own) expect(documented, `metric ${name} is not documented`).toContain(name);
    } finally {
      await registry.close();
    }
  });
});

describe('operations.md: logs', () => {
  const sources = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
    });
  const files = sources(join(REPO_ROOT, 'src')).map((path) => readFileSync(path, 'utf8'));

  /** Levels at which the source logs `message` (the log call nearest before the literal). */
  const levelsOf = (message: string): string[] =>
    files.flatMap((text) =>
      [...text.matchAll(new RegExp(`'${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}'`, 'g'))].map((hit) => {
        const before = text.slice(Math.max(0, hit.index - 400), hit.index);
        return [...before.matchAll(/\.(trace|debug|info|warn|error|fatal)\(/g)].pop()?.[1] ?? 'none';
      }),
    );

  it('each documented message is logged by the source, at the documented level', () => {
    const rows = tableUnder(DOC, 'Logs');
    expect(rows.length).toBeGreaterThan(5);
    for (const [messageCell, level] of rows) {
      for (const [, message] of messageCell!.matchAll(/`([^`]+)`/g)) {
        expect(levelsOf(message!), message).toContain(level);
      }
    }
  });
});

describe('operations.md: close codes', () => {
  it('equals CLOSE_CODES in src/protocol/codes.ts', () => {
    const rows = tableUnder(DOC, 'Close codes').map(([c, name, meaning, action]) => ({ code: Number(c), name, meaning, action }));
    expect(rows).toEqual(Object.values(CLOSE_CODES));
  });
});
