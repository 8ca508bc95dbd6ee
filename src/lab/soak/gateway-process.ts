/**
 * The gateway under soak: the real CLI (`serve`) as a child process on a fixed port, so it can be
 * killed with SIGKILL and restarted on the same URL; sampled for RSS, descriptors and event-loop lag.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { LabError } from '../../errors.js';
import { registerLeftover } from '../leftovers.js';

/** The built CLI, from src/lab/soak (vitest) and dist/lab/soak (npm run soak) alike. */
const CLI = fileURLToPath(new URL('../../../dist/cli/main.js', import.meta.url));

export interface Sample {
  /** ms since the run started */
  at: number;
  /** which gateway process (0 = first; +1 per restart) */
  life: number;
  rssMiB: number;
  fds: number;
  /** nodejs_eventloop_lag_max_seconds from /metrics, as ms */
  lagMaxMs: number | undefined;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export class GatewayProcess {
  private child: ChildProcess | undefined;
  life = -1;
  /** Crash output of the current process (stderr tail). */
  stderr = '';
  readonly url: string;
  readonly wsUrl: string;
  private readonly unregister: () => void;

  constructor(
    readonly port: number,
    private readonly qmp: Record<string, string>,
  ) {
    this.url = `http://127.0.0.1:${port}`;
    this.wsUrl = `ws://127.0.0.1:${port}/v1/ws`;
    this.unregister = registerLeftover({
      label: `soak gateway on port ${port}`,
      dispose: async () => {
        await this.stop();
      },
      disposeNow: () => {
        if (this.child?.pid && this.child.exitCode === null) process.kill(this.child.pid, 'SIGKILL');
      },
    });
  }

  get pid(): number | undefined {
    return this.child?.exitCode === null ? this.child.pid : undefined;
  }

  async start(): Promise<void> {
    const args = [CLI, 'serve', '--listen', `127.0.0.1:${this.port}`, '--log-level', 'warn', '--log-format', 'json'];
    for (const [vm, address] of Object.entries(this.qmp)) args.push('--qmp', `${vm}=${address}`);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    this.life++;
    this.stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-16_384);
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new LabError(`gateway exited at start (${child.exitCode})`, this.stderr);
      const ok = await fetch(`${this.url}/healthz`).then((r) => r.ok, () => false);
      if (ok) return;
      if (Date.now() > deadline) throw new LabError('gateway did not answer /healthz within 20 s', this.stderr);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** SIGKILL: no drain, no goodbye. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM, as systemd stops it; resolves with how long the drain took. */
  async stop(): Promise<number> {
    const child = this.child;
    this.unregister();
    if (!child || child.exitCode !== null) return 0;
    const started = Date.now();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    return Date.now() - started;
  }

  async sample(at: number): Promise<Sample | undefined> {
    const pid = this.pid;
    if (pid === undefined) return undefined;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      const fds = readdirSync(`/proc/${pid}/fd`).length;
      const metrics = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(5_000) }).then((r) => r.text(), () => '');
      const lag = /^\w*nodejs_eventloop_lag_max_seconds(?:\{[^}]*\})? ([0-9.e+-]+)$/m.exec(metrics)?.[1];
      return { at, life: this.life, rssMiB: rssKiB / 1024, fds, lagMaxMs: lag === undefined ? undefined : Number(lag) * 1000 };
    } catch {
      return undefined; // it died between the checks
    }
  }
}
