#!/usr/bin/env node
/**
 * `blockjob-gateway <command>`: global flags and subcommand dispatch. Each command lives in its own
 * module, loaded only when run, and is a `(argv) => Promise<exit code>`; this file only routes.
 */
import { realpathSync } from 'node:fs';
import { packageVersion } from '../version.js';
import { fileURLToPath } from 'node:url';
import { config as rxjsConfig } from 'rxjs';
import { GatewayError, UsageError } from '../errors.js';
import { parseGlobal } from './args.js';

/** Runs one subcommand with the arguments after its name; resolves with the exit code. */
export type CommandRunner = (argv: string[]) => Promise<number>;

export interface CommandEntry {
  summary: string;
  /** Loads the command's module (only the one that runs). */
  load(): Promise<CommandRunner>;
}

/** Where output goes (a seam for tests). */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

export const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

export const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  serve: { summary: 'run the gateway: QMP monitors in, WebSocket and HTTP out', load: async () => (await import('./serve.js')).run },
  demo: { summary: 'real qemu-storage-daemons, a mix of jobs and the gateway with its dashboard', load: async () => (await import('./demo.js')).run },
  watch: { summary: 'a live table of the jobs behind a gateway', load: async () => (await import('./watch.js')).run },
  wait: { summary: 'block until a job is ready or concluded (for scripts)', load: async () => (await import('./wait.js')).run },
  complete: { summary: 'complete (pivot) a job, once it is truly ready', load: async () => (await import('./control.js')).runner('complete') },
  cancel: { summary: 'cancel a job', load: async () => (await import('./control.js')).runner('cancel') },
  pause: { summary: 'pause a job', load: async () => (await import('./control.js')).runner('pause') },
  resume: { summary: 'resume a paused job', load: async () => (await import('./control.js')).runner('resume') },
  'set-speed': { summary: "change a job's speed limit (bytes/s; 0 = unlimited)", load: async () => (await import('./control.js')).runner('set-speed') },
  finalize: { summary: 'finalize a pending job (one started with auto-finalize off)', load: async () => (await import('./control.js')).runner('finalize') },
  dismiss: { summary: 'dismiss a concluded job (one started with auto-dismiss off)', load: async () => (await import('./control.js')).runner('dismiss') },
};

export function usage(commands: Readonly<Record<string, CommandEntry>> = COMMANDS): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, entry]) => `  ${name.padEnd(width)}  ${entry.summary}`);
  return `Usage: blockjob-gateway <command> [options]

Push, don't poll: QEMU block job states over WebSocket, truthful about readiness,
with race-free job control.

Commands:
${lines.join('\n')}

Options:
  -h, --help     print this text (blockjob-gateway <command> --help for a command's options)
  -V, --version  print the version

Exit codes: 0 success, 1 failure, 2 usage error (every command); wait and the job verbs document the rest.
`;
}

/** The CLI as a function: parses `argv` (without node and script), runs the command, returns the exit code. */
export async function main(argv: readonly string[], io: CliIo = processIo, commands: Readonly<Record<string, CommandEntry>> = COMMANDS): Promise<number> {
  const usageError = (message: string, prefix = 'blockjob-gateway'): number => {
    io.err(`${prefix}: ${message}\nRun 'blockjob-gateway --help' for usage.\n`);
    return EXIT_USAGE;
  };
  let invocation;
  try {
    invocation = parseGlobal(argv);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message);
    throw error;
  }
  if (invocation.version) {
    io.out(`${packageVersion()}\n`);
    return 0;
  }
  if (invocation.help) {
    io.out(usage(commands));
    return 0;
  }
  const name = invocation.command;
  if (name === undefined) {
    io.err(usage(commands));
    return EXIT_USAGE;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) return usageError(`unknown command '${name}' (commands: ${Object.keys(commands).join(', ')})`);
  const prefix = `blockjob-gateway ${name}`;
  try {
    const run = await entry.load();
    return await run(invocation.rest);
  } catch (error) {
    if (error instanceof UsageError) return usageError(error.message, prefix);
    if (error instanceof GatewayError) {
      io.err(`${prefix}: error [${error.code}]: ${error.message}\n`);
      return EXIT_FAILURE;
    }
    io.err(`${prefix}: internal error [GW_ERR_INTERNAL]: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    return EXIT_FAILURE;
  }
}

function invokedDirectly(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    // npx and npm bins call us through a symlink.
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (invokedDirectly()) {
  // An exception thrown inside one subscriber must not take the whole gateway down (RxJS would rethrow it later).
  rxjsConfig.onUnhandledError = (error: unknown) => {
    process.stderr.write(`blockjob-gateway: error in a stream subscriber (continuing): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  };
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`blockjob-gateway: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = EXIT_FAILURE;
    },
  );
}
