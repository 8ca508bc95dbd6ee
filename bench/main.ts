/**
 * `npm run bench [-- --quick] [-- --only NAME[,NAME]]`: runs each measurement in a fresh bench host
 * process (bench/host.ts), prints the table, writes the raw JSON to bench/results/ and, after a full
 * run of all of them, docs/benchmarks.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchmarksDoc, machine, textTable, type Machine } from './lib/report.js';
import { RpcChild } from './lib/rpc.js';
import { SCENARIOS, type ScenarioName, type ScenarioResult } from './lib/scenario.js';

const USAGE = `Usage: npm run bench -- [--quick] [--only ready|fanout|idle|monitors|burst|fleet|libvirt[,...]]

  --quick        every measurement shortened (under a minute each), for a smoke run
  --only NAMES   run only these measurements (comma-separated)
  --no-docs      do not rewrite docs/benchmarks.md (it is rewritten only by a full run of all of them)
  --cpu-prof     profile the gateway process (node --cpu-prof) into bench/results/profiles/
  --docs-from F  only rewrite docs/benchmarks.md from a raw results file of a full run (after editing bench/notes.md)
`;

const ROOT = new URL('../', import.meta.url);

interface Options {
  quick: boolean;
  only: ScenarioName[];
  docs: boolean;
  cpuProf: boolean;
  docsFrom?: string;
}

function parseCommandLine(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: 'boolean' }, only: { type: 'string' }, 'no-docs': { type: 'boolean' }, 'cpu-prof': { type: 'boolean' }, 'docs-from': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) return 'help';
  const only = values.only === undefined ? [...SCENARIOS] : values.only.split(',').map((name) => name.trim());
  const unknown = only.filter((name) => !SCENARIOS.includes(name as ScenarioName));
  if (unknown.length > 0) throw new Error(`unknown measurement ${unknown.join(', ')}: choose from ${SCENARIOS.join(', ')}`);
  return { quick: values.quick ?? false, only: only as ScenarioName[], docs: !values['no-docs'], cpuProf: values['cpu-prof'] ?? false, ...(values['docs-from'] !== undefined ? { docsFrom: values['docs-from'] } : {}) };
}

/** What bench/results/<timestamp>.json holds. */
interface RawRun {
  started: string;
  command: string;
  machine: Machine;
  quick: boolean;
  results: ScenarioResult[];
  failures: string[];
}

/** docs/benchmarks.md: the table and machine of a full run, then the hand-written reading in bench/notes.md. */
function writeDocs(run: RawRun & { rawFile: string }): void {
  const notesFile = new URL('bench/notes.md', ROOT);
  const notes = existsSync(notesFile) ? readFileSync(notesFile, 'utf8') : '';
  const target = new URL('docs/benchmarks.md', ROOT);
  writeFileSync(target, benchmarksDoc({ results: run.results, machine: run.machine, command: run.command, date: run.started, rawFile: run.rawFile, notes }));
  process.stdout.write(`${fileURLToPath(target)} updated\n`);
}

let current: RpcChild | undefined;
let interrupted = false;

async function runScenario(name: ScenarioName, options: Options): Promise<ScenarioResult> {
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
    const run = JSON.parse(readFileSync(options.docsFrom, 'utf8')) as RawRun;
    if (run.quick || run.results.length !== SCENARIOS.length) throw new Error(`${options.docsFrom} is not a full run of all the measurements`);
    writeDocs({ ...run, rawFile: options.docsFrom });
    return 0;
  }
  // Ctrl-C reaches every process of the group; the hosts clean up, this one waits for them.
  process.on('SIGINT', () => (interrupted = true));
  process.on('SIGTERM', () => {
    interrupted = true;
    current?.terminate();
  });

  const started = new Date();
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
  const command = `npm run bench${options.quick ? ' -- --quick' : ''}${options.only.length < SCENARIOS.length ? ` -- --only ${options.only.join(',')}` : ''}`;
  const run: RawRun = { started: started.toISOString(), command, machine: machine(), quick: options.quick, results, failures };
  writeFileSync(new URL(rawFile, ROOT), `${JSON.stringify(run, null, 2)}\n`);
  process.stdout.write(`\nraw results: ${rawFile}\n`);

  if (options.docs && !options.quick && !options.cpuProf && failures.length === 0 && results.length === SCENARIOS.length) {
    writeDocs({ ...run, rawFile });
  }
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
