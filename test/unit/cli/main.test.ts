import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { COMMANDS, EXIT_USAGE, main, type CommandEntry } from '../../../src/cli/main.js';
import { ConfigError, UsageError } from '../../../src/errors.js';

function capture() {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { out: (text: string) => void out.push(text), err: (text: string) => void err.push(text) }, out, err };
}

const packageVersion = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

function table(run: (argv: string[]) => Promise<number>): Record<string, CommandEntry> {
  return {
    echo: { summary: 'echo its arguments', load: async () => run },
  };
}

describe('cli main', () => {
  it('--help prints usage listing every command, exit 0', async () => {
    const { io, out, err } = capture();
    expect(await main(['--help'], io)).toBe(0);
    for (const name of Object.keys(COMMANDS)) expect(out.join('')).toMatch(new RegExp(`^  ${name} `, 'm'));
    expect(err).toEqual([]);
  });

  it('--version prints the package version', async () => {
    const { io, out } = capture();
    expect(await main(['--version'], io)).toBe(0);
    expect(out.join('')).toBe(`${packageVersion}\n`);
  });

  it('an unknown flag is a usage error on stderr, exit 2', async () => {
    const { io, out, err } = capture();
    expect(await main(['--frobnicate'], io)).toBe(EXIT_USAGE);
    expect(err.join('')).toContain('unknown flag --frobnicate');
    expect(out).toEqual([]);
  });

  it('no command prints usage on stderr, exit 2; an unknown command names the known ones', async () => {
    const none = capture();
    expect(await main([], none.io)).toBe(EXIT_USAGE);
    expect(none.err.join('')).toContain('Usage: blockjob-gateway <command>');
    const unknown = capture();
    expect(await main(['frobnicate'], unknown.io, table(async () => 0))).toBe(EXIT_USAGE);
    expect(unknown.err.join('')).toContain("unknown command 'frobnicate' (commands: echo)");
  });

  it('passes the arguments after the command through and returns its exit code', async () => {
    const seen: string[][] = [];
    const { io } = capture();
    const code = await main(['echo', '--qmp', 'vm1=unix:/p', '--help'], io, table(async (argv) => (seen.push(argv), 7)));
    expect(code).toBe(7);
    expect(seen).toEqual([['--qmp', 'vm1=unix:/p', '--help']]);
  });

  it('maps errors escaping a command: usage -> 2, gateway errors -> 1 with their code', async () => {
    const usage = capture();
    expect(await main(['echo'], usage.io, table(async () => Promise.reject(new UsageError('--vm is required'))))).toBe(EXIT_USAGE);
    expect(usage.err.join('')).toContain('blockjob-gateway echo: --vm is required');
    const config = capture();
    expect(await main(['echo'], config.io, table(async () => Promise.reject(new ConfigError('must be a number', 'listen.port'))))).toBe(1);
    expect(config.err.join('')).toBe('blockjob-gateway echo: error [GW_ERR_CONFIG]: listen.port: must be a number\n');
    const internal = capture();
    expect(await main(['echo'], internal.io, table(async () => Promise.reject(new TypeError('boom'))))).toBe(1);
    expect(internal.err.join('')).toContain('internal error [GW_ERR_INTERNAL]: TypeError: boom');
  });
});

// The real entry point as users run it (`npx blockjob-gateway` runs dist/cli/main.js). `npm ci`
// builds dist through `prepare`; a missing or stale build is skipped locally and fails in CI.
const entry = new URL('../../../dist/cli/main.js', import.meta.url).pathname;
const sources = ['main.ts', 'args.ts'].map((file) => new URL(`../../../src/cli/${file}`, import.meta.url).pathname);
const built = existsSync(entry) && sources.every((source) => statSync(source).mtimeMs <= statSync(entry).mtimeMs);
const describeBuilt = built || process.env.CI === 'true' ? describe : describe.skip;

describeBuilt(`built entry dist/cli/main.js${built ? '' : ' [skipped: missing or older than src/cli; run npm run build]'}`, () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [entry, ...args], { encoding: 'utf8', timeout: 30_000 });

  it('is built and current', () => {
    expect(built).toBe(true);
  });

  it('starts with a node shebang', () => {
    expect(readFileSync(entry, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
  });

  it('--help prints usage, exit 0', () => {
    const result = cli('--help');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('Usage: blockjob-gateway <command> [options]');
  });

  it('--version prints the package version', () => {
    expect(cli('--version').stdout).toBe(`${packageVersion}\n`);
  });

  it('an unknown flag exits 2 with a usage error on stderr', () => {
    const result = cli('--frobnicate');
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown flag --frobnicate');
    expect(result.stdout).toBe('');
  });
});
