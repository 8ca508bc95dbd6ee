/**
 * Issue 13 bug 6: a wrong gateway URL. Connection errors are reported at once with their cause, every
 * command honours a connect timeout (also its --timeout), and `watch` says what it retries and why.
 * "Nothing listens" is a real closed loopback port; "never answers" is a real TCP server that accepts
 * and stays silent (a firewall or a hung proxy).
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeBuilt, runCli, type CliRun } from '../utils/built-cli.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';

/** A port that was free a moment ago: nothing listens there. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves with the exit code and how long the run took. */
async function timed(run: CliRun): Promise<{ code: number | string; ms: number }> {
  const started = Date.now();
  const code = await run.exited;
  return { code, ms: Date.now() - started };
}

describeBuilt('connection errors are reported at once, with their cause', () => {
  cleanupLeftoversAfterAll();
  let silent: Server;
  const sockets = new Set<Socket>();
  let silentUrl = '';
  beforeAll(async () => {
    silent = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentUrl = `ws://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => silent.close(resolve));
  });

  it('complete and wait against a closed port: exit 3 at once, saying connection refused', async () => {
    const url = `ws://127.0.0.1:${await closedPort()}`;
    for (const args of [
      ['complete', url, '--vm', 'vm1', '--job', 'j0'],
      ['cancel', url, '--vm', 'vm1', '--job', 'j0'],
      ['wait', url, '--vm', 'vm1', '--job', 'j0', '--for', 'ready'],
    ]) {
      const run = runCli(args);
      const { code, ms } = await timed(run);
      expect(code, args[0]).toBe(3);
      // "At once": well below any timeout, with room for a loaded machine.
      expect(ms, args[0]).toBeLessThan(8_000);
      expect(run.stderr.join('\n'), args[0]).toMatch(/connection refused \(ECONNREFUSED\)/);
      expect(run.stderr.join('\n'), args[0]).toContain(`${url}/v1/ws`);
    }
  });

  it('complete against a server that never answers honours --timeout and --connect-timeout', async () => {
    for (const flags of [['--timeout', '2s'], ['--connect-timeout', '2s']]) {
      const run = runCli(['complete', silentUrl, '--vm', 'vm1', '--job', 'j0', ...flags]);
      const { code, ms } = await timed(run);
      expect(code, flags[0]).toBe(3);
      expect(ms, flags[0]).toBeLessThan(12_000);
      expect(run.stderr.join('\n'), flags[0]).toMatch(/no answer .*within 2000 ms/);
    }
  });

  it('watch says what it is retrying and why', async () => {
    const url = `ws://127.0.0.1:${await closedPort()}`;
    const run = runCli(['watch', url]);
    await expect
      .poll(() => run.stderr.join('\n'), { timeout: 15_000, interval: 100 })
      .toMatch(new RegExp(`cannot connect to ${url.replace(/[.]/g, '\\.')}/v1/ws: connection refused \\(ECONNREFUSED\\); retrying in \\d`));
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  });
});
