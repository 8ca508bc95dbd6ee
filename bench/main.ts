/**
 * `npm run bench [-- --quick] [-- --only NAME[,NAME]]`: runs each measurement in a fresh bench host
 * process (bench/host.ts), prints the table, writes the raw JSON to bench/results/ and, after a full
 * run of all of them, docs/benchmarks.md with the sweeps drawn as SVG charts in docs/bench/.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { renderCharts } from './lib/charts.js';
import { describeLoad, sampleLoad } from './lib/load.js';
import { benchmarksDoc, machine, textTable, type Machine } from './lib/report.js';
import { RpcChild } from './lib/rpc.js';
import type { ScenarioResult } from './lib/scenario.js';
import { SCENARIO_NAMES } from './scenarios/index.js';

const USAGE = `Usage: npm run bench -- [--quick] [--only ${SCENARIO_NAMES.join('|')}[,...]]

  --quick        every measurement shortened (the whole quick run under two minutes), for a smoke run
  --only NAMES   run only these measurements (comma-separated)
  --no-docs      do not rewrite docs/benchmarks.md (it is rewritten only by a full run of all of them)
  --docs         rewrite docs/benchmarks.md even from a run of only some measurements (the doc names the command)
  --cpu-prof     profile the gateway process (node --cpu-prof) into bench/results/profiles/
  --docs-from F  only rewrite docs/benchmarks.md from a raw results file of a full run (after editing bench/notes.md);
                 F may list several files (comma-separated), e.g. one per --only run: their results are joined

Environment: BENCH_BURST_SIZES (e.g. 10000 or 1000,5000) and BENCH_BURST_REPEATS (e.g. 10) narrow the burst
sweep for A/B pairs, BENCH_FANOUT_SIZES (e.g. 19800) the fan-out's; such a run never rewrites docs/benchmarks.md.
`;

const ROOT = new URL('../', import.meta.url);

interface Options {
  quick: boolean;
  only: string[];
  docs: boolean;
  forceDocs: boolean;
  cpuProf: boolean;
  docsFrom?: string;
}

function parseCommandLine(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: 'boolean' }, only: { type: 'string' }, 'no-docs': { type: 'boolean' }, docs: { type: 'boolean' }, 'cpu-prof': { type: 'boolean' }, 'docs-from': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return 'help';
  const only = values.only === undefined ? [...SCENARIO_NAMES] : values.only.split(',').map((name) => name.trim());
  const unknown = only.filter((name) => !SCENARIO_NAMES.includes(name));
  if (unknown.length > 0) throw new Error(`unknown measurement ${unknown.join(', ')}: choose from ${SCENARIO_NAMES.join(', ')}`);
  return { quick: values.quick ?? false, only, docs: !values['no-docs'], forceDocs: values.docs ?? false, cpuProf: values['cpu-prof'] ?? false, ...(values['docs-from'] !== undefined ? { docsFrom: values['docs-from'] } : {}) };
}

/** What bench/results/<timestamp>.json holds. */
interface RawRun {
  started: string;
  command: string;
  machine: Machine;
  quick: boolean;
  /** How loaded the machine was at the start, measured and by load average (a loaded machine inflates every wall-clock figure). */
  load: string;
  results: ScenarioResult[];
  failures: string[];
}

/** docs/benchmarks.md: the table and machine of a full run, then the hand-written reading in bench/notes.md. */
async function writeDocs(run: RawRun & { rawFile: string }): Promise<void> {
  const notesFile = new URL('bench/notes.md', ROOT);
  const notes = existsSync(notesFile) ? readFileSync(notesFile, 'utf8') : '';
  const chartDir = new URL('docs/bench/', ROOT);
  mkdirSync(chartDir, { recursive: true });
  const charts = await renderCharts(run.results.flatMap((result) => result.series ?? []));
  for (const chart of charts) writeFileSync(new URL(`${chart.file}.svg`, chartDir), chart.svg);
  const target = new URL('docs/benchmarks.md', ROOT);
  writeFileSync(
    target,
    benchmarksDoc({
      results: run.results, machine: run.machine, command: run.command, date: run.started, rawFile: run.rawFile, notes,
      charts: charts.map((chart) => ({ path: `bench/${chart.file}.svg`, title: chart.title })),
      load: run.load ?? 'not recorded',
    }),
  );
  process.stdout.write(`${fileURLToPath(target)} updated\n`);
}

let current: RpcChild | undefined;
let interrupted = false;

async function runScenario(name: string, options: Options): Promise<ScenarioResult> {
  const profile = options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${fileURLToPath(new URL('bench/results/profiles/', ROOT))}`, `--cpu-prof-name=${name}-host.cpuprofile`] : [];
  const host = new RpcChild(new URL('./host.js', import.meta.url), [], ['--expose-gc', ...profile]);
  current = host;
  try {
    return await host.call<ScenarioResult>('run', { name, quick: options.quick }, 15 * 60_000);
  } finally {
    await host.close();
    current = undefined;
  }
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (options.docsFrom !== undefined) {
    const runs = options.docsFrom.split(',').map((file) => JSON.parse(readFileSync(file.trim(), 'utf8')) as RawRun);
    const run: RawRun = {
      ...runs[0]!,
      command: runs.map((r) => r.command).join('; '),
      started: runs.map((r) => r.started).join(' .. '),
      load: runs.map((r) => r.load).join('; '),
      quick: runs.some((r) => r.quick),
      results: runs.flatMap((r) => r.results),
      failures: runs.flatMap((r) => r.failures),
    };
    if (run.quick || (run.results.length !== SCENARIO_NAMES.length && !options.forceDocs)) throw new Error(`${options.docsFrom} is not a full run of every measurement (add --docs to use it anyway)`);
    await writeDocs({ ...run, rawFile: options.docsFrom });
    return 0;
  }
  // Ctrl-C reaches every process of the group; the hosts clean up, this one waits for them.
  process.on('SIGINT', () => (interrupted = true));
  process.on('SIGTERM', () => {
    interrupted = true;
    current?.terminate();
  });

  const started = new Date();
  const load = describeLoad(await sampleLoad());
  process.stderr.write(`bench: ${load}\n`);
  const results: ScenarioResult[] = [];
  const failures: string[] = [];
  for (const name of options.only) {
    if (interrupted) break;
    const t0 = performance.now();
    process.stderr.write(`bench: ${name}${options.quick ? ' (quick)' : ''}...\n`);
    try {
      results.push(await runScenario(name, options));
      process.stderr.write(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    } catch (error) {
      if (interrupted) break;
      failures.push(name);
      process.stderr.write(`bench: ${name} failed: ${(error as Error).message}\n`);
    }
  }
  if (interrupted) {
    process.stderr.write('bench: interrupted; every process and temp dir was cleaned up\n');
    return 130;
  }

  process.stdout.write(`\n${textTable(results)}\n`);
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const resultsDir = new URL('bench/results/', ROOT);
  mkdirSync(resultsDir, { recursive: true });
  const rawFile = `bench/results/${stamp}.json`;
  const command = `npm run bench${options.quick ? ' -- --quick' : ''}${options.only.length < SCENARIO_NAMES.length ? ` -- --only ${options.only.join(',')}` : ''}`;
  const run: RawRun = { started: started.toISOString(), command, machine: machine(), quick: options.quick, load, results, failures };
  writeFileSync(new URL(rawFile, ROOT), `${JSON.stringify(run, null, 2)}\n`);
  process.stdout.write(`\nraw results: ${rawFile}\n`);

  const complete = results.length === SCENARIO_NAMES.length || options.forceDocs;
  const narrowed = Boolean(process.env.BENCH_BURST_SIZES || process.env.BENCH_BURST_REPEATS || process.env.BENCH_FANOUT_SIZES);
  if (options.docs && !options.quick && !options.cpuProf && !narrowed && failures.length === 0 && complete) await writeDocs({ ...run, rawFile });
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
