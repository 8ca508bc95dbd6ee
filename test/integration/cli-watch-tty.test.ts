/**
 * `watch` as users run it, against a real gateway: on a pseudo-terminal (util-linux `script`, sized
 * 20x120 with stty) it draws on the alternate screen, every frame within the terminal's height,
 * active jobs first in natural order, a count of the finished ones hidden, SIMULATED when the gateway
 * says so, and it restores the terminal on SIGTERM; piped, it prints one JSON line per message.
 */
import { spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { registerLeftover } from '../../src/lab/index.js';
import { CLI_ENTRY, describeBuilt, runCli } from '../utils/built-cli.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { Leftovers } from '../utils/gateway-support.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

async function fleet() {
  const source = new FakeJobSource(['vm1', 'vm2']);
  for (const n of [34, 4, 12, 3]) source.transition('vm1', `mirror-${n}`, 'running');
  source.transition('vm2', 'commit-1', 'running', { type: 'commit' });
  for (let i = 0; i < 40; i++) {
    source.transition('vm1', `old-${i}`, 'running');
    source.transition('vm1', `old-${i}`, 'concluded', { outcome: 'completed' });
  }
  return leftovers.gateway({ source, info: { simulated: true } });
}

describeBuilt('watch on a terminal and in a pipe', () => {
  it('redraws in place within a 20-line terminal and restores the screen on SIGTERM', async () => {
    const gateway = await fleet();
    const shell = `stty rows 20 cols 120; node ${CLI_ENTRY} watch ${gateway.wsUrl} & echo "PID:$!"; wait $!`;
    const script = spawn('script', ['-qfec', shell, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const killScript = () => void script.kill('SIGKILL');
    registerLeftover({ label: `script pid ${script.pid}`, dispose: killScript, disposeNow: killScript });
    let output = '';
    script.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => script.on('exit', resolve));

    await expect.poll(() => /PID:(\d+)/.exec(output)?.[1], { timeout: 15_000 }).toBeDefined();
    const pid = Number(/PID:(\d+)/.exec(output)![1]);
    // A frame with every job known and the simulator label (from /v1/info).
    await expect.poll(() => /SIMULATED[\s\S]*commit-1[\s\S]*finished jobs? not shown/.test(output.split('\x1b[H').at(-1) ?? ''), { timeout: 20_000 }).toBe(true);
    process.kill(pid, 'SIGTERM');
    await exited;

    expect(output).toContain('\x1b[?1049h');
    expect(output.trimEnd().endsWith('\x1b[?25h\x1b[?1049l')).toBe(true);
    const frames = output.slice(output.indexOf('\x1b[?1049h')).split('\x1b[H').slice(1);
    expect(frames.length).toBeGreaterThan(0);
    for (const frame of frames) expect(frame.split(/\r*\n/).length).toBeLessThanOrEqual(20);
    const last = frames.filter((f) => f.includes('commit-1')).at(-1)!;
    const lines = last.split(/\r*\n/).map((l) => l.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''));
    expect(lines[0]).toContain('SIMULATED');
    const ids = lines.map((l) => l.split(/\s+/)[1]).filter((id) => id && /^(mirror|commit|old)-/.test(id));
    expect(ids.slice(0, 5)).toEqual(['mirror-3', 'mirror-4', 'mirror-12', 'mirror-34', 'commit-1']);
    expect(lines.at(-1)).toMatch(/… \d+ finished jobs not shown/);
    expect(lines.every((l) => l.length <= 120)).toBe(true);
  }, 60_000);

  it('prints one JSON line per message when piped', async () => {
    const gateway = await fleet();
    const run = runCli(['watch', gateway.wsUrl]);
    await run.line(/"type":"synced","sub":"[^"]*","vm":"vm2"/, 15_000);
    run.child.kill('SIGTERM');
    await run.exited;
    expect(run.stdout.filter(Boolean).every((line) => typeof JSON.parse(line).type === 'string')).toBe(true);
    expect(run.stdout.join('\n')).not.toContain('\x1b[');
  }, 60_000);
});
