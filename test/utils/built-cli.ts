/**
 * The command as users run it: `node dist/cli/main.js`. `npm ci` builds dist through `prepare`, so
 * in CI it is always current; locally a missing or stale build skips these suites with a banner
 * (run `npm run build`), and in CI it fails instead.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { registerLeftover } from '../../src/lab/index.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_ENTRY = join(root, 'dist/cli/main.js');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export const cliBuilt = existsSync(CLI_ENTRY) && newestSource(join(root, 'src')) <= statSync(CLI_ENTRY).mtimeMs;

/** describe() when dist is current (or in CI, where a stale build must fail), else a visible skip. */
export function describeBuilt(name: string, fn: () => void): void {
  if (cliBuilt || process.env.CI === 'true') describe(name, fn);
  else describe.skip(`${name} [skipped: dist is missing or older than src; run npm run build]`, fn);
}

export interface CliRun {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
  /** Resolves with the first stdout line matching. */
  line(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/** The exit code, or 'running' if the process is still up after `ms` (a failed start must exit). */
export async function exitWithin(run: CliRun, ms: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const running = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('running'), ms)));
  const code = await Promise.race([run.exited, running]);
  clearTimeout(timer);
  if (code === 'running') run.child.kill('SIGKILL');
  return code;
}

/** Spawns the built CLI; the process is killed with the test file's leftovers. */
export function runCli(args: string[], env: Record<string, string> = {}): CliRun {
  const child = spawn(process.execPath, [CLI_ENTRY, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killNow = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  registerLeftover({ label: `blockjob-gateway ${args[0] ?? ''} pid ${child.pid}`, dispose: killNow, disposeNow: killNow });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const collect = (into: string[], isStdout: boolean) => {
    let partial = '';
    return (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        into.push(line);
        if (!isStdout) continue;
        for (const waiter of [...waiters]) {
          if (waiter.pattern.test(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
    };
  };
  child.stdout!.on('data', collect(stdout, true));
  child.stderr!.on('data', collect(stderr, false));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    stdout,
    stderr,
    exited,
    line(pattern, timeoutMs = 30_000) {
      const seen = stdout.find((l) => pattern.test(l));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no stdout line matching ${pattern} within ${timeoutMs} ms; stdout:\n${stdout.join('\n')}\nstderr:\n${stderr.join('\n')}`)),
          timeoutMs,
        );
        waiters.push({ pattern, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      });
    },
  };
}
