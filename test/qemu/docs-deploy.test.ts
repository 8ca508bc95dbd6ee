// docs/deploy.md against real QEMU: every `-qmp` argument the docs show (plain QEMU, libvirt, Proxmox)
// is a chardev qemu-storage-daemon accepts and serves QMP on, and the qsd-example, serve-example and
// script-example blocks run as written (paths moved to a temp dir, port 8080 to a free one): the
// script waits for a real speed-limited mirror to be ready, pivots it, and sees it completed.
import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { markedBlock, qmpArguments, qmpToChardev, shellCommands, shellWords } from '../utils/doc-sources.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, createQcow2Image, makeTestDir, Qsd, RawQmp } from '../utils/qsd.js';

const DOC = 'docs/deploy.md';
const SOCKET_DIR = '/run/blockjob-gateway/';
const IMAGE_DIR = '/srv/images/';

/** The doc's paths, moved into `dir`. */
const relocate = (text: string, dir: string) => text.replaceAll(SOCKET_DIR, `${dir}/`).replaceAll(IMAGE_DIR, `${dir}/`);

describeQemu('docs/deploy.md against qemu-storage-daemon', () => {
  cleanupLeftoversAfterAll();

  it('every -qmp argument in the docs, as the equivalent --chardev, starts a QMP monitor', async () => {
    const dir = makeTestDir('bjg-qmp-');
    const values = [...new Set(qmpArguments().map((found) => found.value))];
    expect(values.length).toBeGreaterThanOrEqual(2);
    const args = values.flatMap((value, i) => ['--chardev', qmpToChardev(relocate(value, dir), `gw${i}`), '--monitor', `chardev=gw${i}`]);
    const qsd = await Qsd.start({ monitors: [], extraArgs: args });
    for (const value of values) {
      const path = /^unix:([^,]+)/.exec(relocate(value, dir))![1]!;
      const qmp = await RawQmp.connect(path);
      const version = await qmp.execute<{ qemu: { major: number } }>('query-version');
      expect(version.qemu.major, value).toBeGreaterThanOrEqual(2);
      await qmp.close();
    }
    await qsd.dispose();
  });

  describeBuilt('the example session', () => {
    it('qsd-example, serve-example and script-example run as documented', { timeout: 120_000 }, async () => {
      const dir = makeTestDir('bjg-doc-');
      await createQcow2Image(`${dir}/disk0.qcow2`, { sizeMiB: 64, pattern: { offsetMiB: 0, lengthMiB: 32, byte: 0x5a } });

      // qsd-example, with one more monitor for this test to start the job on (the gateway holds "gw").
      const [qsdCommand] = shellCommands(markedBlock(DOC, 'qsd-example').text);
      const qsdWords = shellWords(relocate(qsdCommand!, dir));
      expect(qsdWords[0]).toBe('qemu-storage-daemon');
      const qsd = await Qsd.start({ monitors: [], extraArgs: qsdWords.slice(1) });

      // serve-example, on a free port.
      const [serveCommand] = shellCommands(markedBlock(DOC, 'serve-example').text);
      const serveWords = shellWords(relocate(serveCommand!, dir).replace('127.0.0.1:8080', '127.0.0.1:0'));
      expect(serveWords.slice(0, 2)).toEqual(['blockjob-gateway', 'serve']);
      const serve = runCli(serveWords.slice(1));
      const listening = await serve.line(/serving 1 (QMP )?VM\(s\) at http:\/\/127\.0\.0\.1:\d+/);
      const port = /127\.0\.0\.1:(\d+)/.exec(listening)![1]!;
      const httpBase = `http://127.0.0.1:${port}`;
      const jobs = async () => ((await (await fetch(`${httpBase}/v1/jobs`)).json()) as { vms: Array<{ vm: string; status: string; jobs: Array<Record<string, unknown>> }> }).vms;
      const until = async <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const value = await probe();
          if (value !== undefined) return value;
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      await until('the gateway to connect to the documented monitor', async () => ((await jobs()).find((v) => v.vm === 'storage1')?.status === 'connected' ? true : undefined));

      // The script's mirror: 32 MiB at 16 MiB/s, so the ready window is real.
      await createQcow2Image(`${dir}/target.qcow2`, { sizeMiB: 64 });
      await qsd.addQcow2Node('target', `${dir}/target.qcow2`);
      await qsd.execute('blockdev-mirror', { 'job-id': 'mirror0', device: 'disk0', target: 'target', sync: 'full', speed: 16 * 1024 * 1024 });
      await until('the gateway to see mirror0', async () => ((await jobs())[0]?.jobs.some((job) => job.id === 'mirror0') ? true : undefined));

      // script-example, line by line: each must exit 0.
      const script = shellCommands(markedBlock(DOC, 'script-example').text.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`));
      expect(script.map((command) => shellWords(command)[1])).toEqual(['wait', 'complete', 'wait']);
      for (const command of script) {
        const run = runCli(shellWords(command).slice(1), { BLOCKJOB_GATEWAY_TOKEN: '' });
        expect(await run.exited, `${command}\n${run.stdout.join('\n')}\n${run.stderr.join('\n')}`).toBe(0);
      }
      const final = (await jobs())[0]!.jobs.find((job) => job.id === 'mirror0')!;
      expect(final).toMatchObject({ state: expect.stringMatching(/^(concluded|dismissed)$/), outcome: 'completed', pivoted: true });

      // SIGTERM drains and exits 0, as deploy.md says.
      serve.child.kill('SIGTERM');
      expect(await serve.exited).toBe(0);
      await qsd.dispose();
    });

    it('the walk-through runs as written: qemu-img, the daemon, the gateway, QMP through socat, the script', { timeout: 120_000 }, async () => {
      const dir = makeTestDir('bjg-walk-');
      const sh = (script: string) => execFileSync('sh', ['-ec', script], { encoding: 'utf8', timeout: 60_000 });

      // Images, with the doc's directories moved into the temp dir.
      sh(relocate(markedBlock(DOC, 'walk-images').text, dir).replace(/^mkdir .*$/m, ''));
      expect(sh(`qemu-img info --output=json ${dir}/disk0.qcow2`)).toContain('"format": "qcow2"');

      const [qsdCommand] = shellCommands(markedBlock(DOC, 'walk-qsd').text);
      const qsdWords = shellWords(relocate(qsdCommand!, dir));
      expect(qsdWords[0]).toBe('qemu-storage-daemon');
      const qsd = await Qsd.start({ monitors: [], extraArgs: qsdWords.slice(1) });

      const [serveCommand] = shellCommands(markedBlock(DOC, 'serve-example').text);
      const serve = runCli(shellWords(relocate(serveCommand!, dir).replace('127.0.0.1:8080', '127.0.0.1:0')).slice(1));
      const port = /127\.0\.0\.1:(\d+)/.exec(await serve.line(/serving 1 (QMP )?VM\(s\) at http:\/\/127\.0\.0\.1:\d+/))![1]!;

      // QMP as the doc sends it: every answer a return, and the mirror starts.
      const answers = sh(relocate(markedBlock(DOC, 'walk-qmp').text, dir))
        .split(/\r?\n/)
        .filter((line) => line.startsWith('{"return"') || line.startsWith('{"error"'));
      expect(answers).toEqual(['{"return": {}}', '{"return": {}}', '{"return": {}}']);

      const script = shellCommands(markedBlock(DOC, 'script-example').text.replaceAll('127.0.0.1:8080', `127.0.0.1:${port}`));
      let last = '';
      for (const command of script) {
        const run = runCli(shellWords(command).slice(1), { BLOCKJOB_GATEWAY_TOKEN: '' });
        expect(await run.exited, `${command}\n${run.stdout.join('\n')}\n${run.stderr.join('\n')}`).toBe(0);
        last = run.stdout.join('\n');
      }
      expect(last).toMatch(/^concluded: storage1\/mirror0 mirror (concluded|dismissed) outcome=completed pivoted=true/);

      serve.child.kill('SIGTERM');
      expect(await serve.exited).toBe(0);
      await qsd.dispose();
    });
  });
});
