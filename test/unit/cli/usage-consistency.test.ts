/**
 * One rule for usage errors across the CLI (issue 13, item 13): exit 2 everywhere, one line naming
 * the command and the problem plus a hint (never the whole help again), readable flag errors, and
 * each verb's --help listing only the flags it takes. Runs the built CLI, as users do; no gateway is
 * needed for these (usage is checked before connecting), except the http:// one, which needs none
 * to listen.
 */
import { execFile } from 'node:child_process';
import { it } from 'vitest';
import { CLI_ENTRY, describeBuilt } from '../../utils/built-cli.js';

/** Runs the built CLI; async, so the cases (each a process start, ~0.4 s of CPU) run side by side. */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_ENTRY, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, BLOCKJOB_GATEWAY_TOKEN: '' } }, (error, stdout, stderr) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve({ status: error ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
    });
  });
}

const URL_ = 'ws://127.0.0.1:9';
const COMMANDS: Record<string, string[]> = {
  watch: [URL_],
  wait: [URL_, '--vm', 'vm1', '--job', 'j0', '--for', 'ready'],
  complete: [URL_, '--vm', 'vm1', '--job', 'j0'],
  cancel: [URL_, '--vm', 'vm1', '--job', 'j0'],
  pause: [URL_, '--vm', 'vm1', '--job', 'j0'],
  resume: [URL_, '--vm', 'vm1', '--job', 'j0'],
  'set-speed': [URL_, '--vm', 'vm1', '--job', 'j0', '--speed', '8M'],
  finalize: [URL_, '--vm', 'vm1', '--job', 'j0'],
  dismiss: [URL_, '--vm', 'vm1', '--job', 'j0'],
};

describeBuilt('CLI usage errors, one rule', () => {
  it.concurrent.for(Object.entries(COMMANDS))('%s: an unknown flag exits 2 with one line and a hint, not the whole help', async ([command, args], { expect }) => {
    const result = await cli(command, ...args, '--bogus');
    expect(result.status).toBe(2);
    expect(result.stderr).toBe(`${command}: unknown flag --bogus\nRun 'blockjob-gateway ${command} --help' for its options.\n`);
    expect(result.stdout).toBe('');
  });

  it.concurrent.for(Object.entries(COMMANDS))('%s: a missing value and a bad URL are usage errors too (exit 2)', async ([command, args], { expect }) => {
    const [missing, badUrl] = await Promise.all([cli(command, ...args, '--token'), cli(command, 'ftp://example', ...args.slice(1))]);
    expect([missing.status, missing.stderr.split('\n')[0]]).toEqual([2, `${command}: flag --token: needs a value`]);
    expect(badUrl.status).toBe(2);
    expect(badUrl.stderr).toMatch(new RegExp(`^${command}: 'ftp://example' is not a gateway URL \\(ws://, wss://, http:// or https://\\)\\n`));
  });

  it.concurrent('a bad duration names the command and the flag', async ({ expect }) => {
    const [result, verb] = await Promise.all([cli('wait', ...COMMANDS.wait!, '--timeout', 'banana'), cli('complete', ...COMMANDS.complete!, '--timeout', 'banana')]);
    expect(result.status).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe("wait: --timeout: 'banana' is not a duration (e.g. 30s, 10m, 1h)");
    expect([verb.status, verb.stderr.split('\n')[0]]).toEqual([2, "complete: --timeout: 'banana' is not a duration (e.g. 30s, 10m, 1h)"]);
  });

  it.concurrent('each verb lists only the flags it takes', async ({ expect }) => {
    const verbs = ['complete', 'cancel', 'pause', 'resume', 'finalize', 'dismiss', 'set-speed'];
    const texts = await Promise.all(verbs.map(async (verb) => (await cli(verb, '--help')).stdout));
    const help = (verb: string): string => texts[verbs.indexOf(verb)]!;
    expect(help('complete')).toContain('--when');
    expect(help('complete')).not.toContain('--force');
    expect(help('cancel')).toContain('--force');
    expect(help('cancel')).not.toContain('--when');
    for (const verb of ['pause', 'resume', 'finalize', 'dismiss']) expect([verb, /--when|--force|--speed/.test(help(verb))]).toEqual([verb, false]);
    expect(help('set-speed')).toMatch(/--speed BYTES\/S .*0 = unlimited/);
    expect(help('set-speed')).not.toMatch(/--when|--force/);
  });

  it.concurrent('accepts the http:// URL the demo prints (mapped to ws://): the failure is the connection, not usage', async ({ expect }) => {
    const result = await cli('wait', 'http://127.0.0.1:9/', '--vm', 'vm1', '--job', 'j0', '--for', 'ready', '--connect-timeout', '2s');
    expect(result.status).toBe(3);
    expect(result.stderr).toMatch(/ws:\/\/127\.0\.0\.1:9/);
  });

  it.concurrent('wait for a job that never appears: --help says why it waits and how to bound it', async ({ expect }) => {
    expect((await cli('wait', '--help')).stdout).toMatch(/does not exist yet[\s\S]*--timeout/);
  });
});
