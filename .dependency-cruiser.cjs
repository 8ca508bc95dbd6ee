/**
 * The layer rules, checked by test/unit/docs/architecture.test.ts (and `npm run deps`).
 *
 * Each folder of src/ is one layer and may import only the layers listed for it (and itself); the
 * root modules (errors, log, backoff, deadlines, deliver, version, index) and the generated schema types sit below
 * everything. Any import cycle fails, type-only imports included.
 */
const ROOT = ['errors', 'log', 'backoff', 'deadlines', 'deliver', 'version', 'index'];

/** layer -> the layers it may import. Lower layers first. */
const LAYERS = {
  generated: [],
  qmp: [],
  libvirt: [],
  protocol: [],
  jobs: ['qmp', 'libvirt'],
  gateway: ['jobs', 'protocol'],
  fleet: ['jobs', 'protocol', 'gateway'],
  client: ['protocol'],
  sim: ['qmp', 'jobs'],
  lab: ['qmp', 'jobs'],
  demo: ['qmp', 'jobs', 'protocol', 'gateway', 'lab', 'sim', 'client'],
  cli: ['qmp', 'libvirt', 'jobs', 'protocol', 'gateway', 'fleet', 'client', 'sim', 'lab', 'demo'],
};

const BELOW_ALL = [`^src/(${ROOT.join('|')})\\.ts$`, '^src/generated/'];
const layerPath = (layer) => `^src/${layer}/`;

const layerRules = Object.entries(LAYERS).map(([layer, allowed]) => ({
  name: `layer-${layer}`,
  comment: `src/${layer} may import only ${allowed.length ? allowed.map((l) => `src/${l}`).join(', ') + ' and ' : ''}the root modules`,
  severity: 'error',
  from: { path: layerPath(layer) },
  to: { path: '^src/', pathNot: [layerPath(layer), ...allowed.map(layerPath), ...(layer === 'generated' ? [] : BELOW_ALL)] },
}));

/** The browser-safe part of the client: everything but its Node adapter. */
const PORTABLE_CLIENT = { path: '^src/client/', pathNot: '^src/client/node(-socket)?\\.ts$' };

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'no import cycle, type-only imports included', severity: 'error', from: {}, to: { circular: true } },
    {
      name: 'root-modules-stay-below',
      comment: 'the root modules import only each other and the generated types',
      severity: 'error',
      from: { path: BELOW_ALL[0] },
      to: { path: '^src/', pathNot: BELOW_ALL },
    },
    ...layerRules,
    {
      name: 'client-runs-in-browsers',
      comment: 'the client library imports no Node built-ins and no server-side package; only its Node adapter may',
      severity: 'error',
      from: PORTABLE_CLIENT,
      to: { dependencyTypes: ['core'] },
    },
    {
      name: 'client-no-server-packages',
      severity: 'error',
      from: PORTABLE_CLIENT,
      to: { path: '^node_modules/(ws|pino|pino-pretty|prom-client|ioredis|ajv|ajv-formats)/' },
    },
    { name: 'src-not-to-test', comment: 'the product never imports its tests', severity: 'error', from: { path: '^src/' }, to: { path: '^(test|bench)/' } },
    { name: 'not-to-unresolvable', severity: 'error', from: {}, to: { couldNotResolve: true } },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    // Resolve packages through their `exports` maps as Node's ESM loader does.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'node', 'default', 'types'] },
  },
};
