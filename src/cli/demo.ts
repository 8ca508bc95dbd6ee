/**
 * `blockjob-gateway demo` (what `npm start` runs): real qemu-storage-daemons with a live mix of
 * block jobs, the gateway and its dashboard on http://127.0.0.1:8080. Ctrl-C or SIGTERM stops
 * everything and removes every temp dir.
 */
import { startDemo } from '../demo/run.js';
import { ConfigError, UsageError } from '../errors.js';
import { createLogger } from './logger.js';
import { parseCommandLine } from './args.js';

export const usage = `Usage: blockjob-gateway demo [options]

Starts qemu-storage-daemons with scratch qcow2 images (or, without QEMU, the built-in QMP
simulator), a driver that keeps mirrors, streams, backups and commits going, and the gateway
with its live dashboard. Prints the URL and one line per job transition.

Options:
  --port N       HTTP/WebSocket port (default 8080; 0 picks a free one)
  --host ADDR    listen address (default 127.0.0.1; the demo has no tokens, keep it on loopback)
  --vms N        how many VMs (daemons) to run (default 3, at most 16)
  --simulate     use the built-in QMP simulator even where QEMU is installed (the dashboard, the
                 banner and /v1/info then say SIMULATED)
  -h, --help     print this text

Through npm, options go after --:  npm start -- --simulate   npm start -- --port 8081
qemu-storage-daemon is looked up on PATH and then in /usr/bin and /usr/local/bin, so hiding it from
PATH does not switch to the simulator: use --simulate (or set BLOCKJOB_GATEWAY_QEMU_DIRS to the only
directories to search). Without QEMU the demo falls back to the simulator by itself and says so.
`;

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  vms: { type: 'string' },
  simulate: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function integerFlag(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return parsed;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommandLine(argv, OPTIONS);
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const port = integerFlag('port', values.port, 8080, 0, 65535);
  const vms = integerFlag('vms', values.vms, 3, 1, 16);
  const host = values.host ?? '127.0.0.1';

  let demo;
  try {
    // The terminal shows transitions; the log only what went wrong.
    demo = await startDemo({ port, host, vms, simulate: values.simulate === true, logger: createLogger({ level: 'warn' }) });
  } catch (error) {
    if (error instanceof ConfigError && error.path === 'listen') {
      // `npm start --port N` would give the flag to npm, not to us: show the spelling that works.
      const other = port === 65535 ? 8081 : port + 1;
      process.stderr.write(
        `blockjob-gateway demo: ${error.message.replace(/^listen: /, '')}; choose another with --port: npm start -- --port ${other} (or blockjob-gateway demo --port ${other})\n`,
      );
      return 1;
    }
    throw error;
  }
  const label = demo.mode === 'simulated' ? ' (SIMULATED QEMU)' : '';
  process.stdout.write(`\nblockjob-gateway demo${label}: ${demo.fleet.vms.length} VMs, dashboard at ${demo.url}/\nPress Ctrl-C to stop.\n\n`);

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // A second Ctrl-C: leave now; the lab's exit hook still kills the daemons.
        process.exit(130);
      }
      stopping = true;
      process.stdout.write(`\n${signal}: stopping the driver, the gateway and the VMs…\n`);
      void demo.close().then(
        () => resolve(0),
        (error: unknown) => {
          process.stderr.write(`blockjob-gateway demo: cleanup failed: ${(error as Error).message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
