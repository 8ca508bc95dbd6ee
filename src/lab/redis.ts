/**
 * A real redis-server for tests and benchmarks: started on a free loopback port in a fresh data dir
 * with AOF on, stopped by PID, restartable on the same port and dir (so "Redis was down for 5 s"
 * can be shown with nothing lost), and a 3-master Redis Cluster built with `redis-cli --cluster
 * create` (TLS-only on its bus too, if asked). A server may include a config file of its own first
 * (deploy/redis-fleet.conf, as users run it). Everything registers as a leftover, so a test run never leaks a daemon.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabError } from '../errors.js';
import { detectedToolPath, detectTools, pathDirs, type ToolsDetection } from './binaries.js';
import { makeShortTempDir, registerLeftover } from './leftovers.js';

/** Each tool the Redis lab needs, and the Debian package that ships it. */
export const REDIS_TOOLS = { 'redis-server': 'redis-server', 'redis-cli': 'redis-tools' } as const;
export type RedisTool = keyof typeof REDIS_TOOLS;

export type RedisToolsDetection = ToolsDetection<RedisTool>;

let detected: RedisToolsDetection | undefined;

/** Where redis-server and redis-cli are (PATH, then /usr/bin and /usr/local/bin), looked up once. */
export function redisTools(): RedisToolsDetection {
  detected ??= detectTools(REDIS_TOOLS, pathDirs());
  return detected;
}

function toolPath(tool: RedisTool): string {
  return detectedToolPath(REDIS_TOOLS, redisTools(), tool);
}

/** A loopback TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new LabError('no free port'))));
    });
  });
}

export interface RedisServerOptions {
  /** Data dir (AOF, nodes.conf). @default a fresh temp dir, removed at cleanup */
  dir?: string;
  /** @default a free port */
  port?: number;
  /** Run as a cluster node (`cluster-enabled yes`). */
  cluster?: boolean;
  /** A cluster node's bus port. @default a free port (Redis's own default, port + 10000, may be taken) */
  clusterPort?: number;
  /** Serve TLS only (`port 0`, `tls-port`): the URL becomes rediss://, redis-cli trusts `caFile`. */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /** ACL user created besides `default` (which then requires this password too); with `include`, the file's user redis-cli logs in as. */
  user?: { name: string; password: string };
  /**
   * A config file read first, as a user includes deploy/redis-fleet.conf: its ACL, persistence and
   * memory policy then rule, and the lab's lines after it only say where this server listens (its
   * TLS files) and keeps its data.
   */
  include?: string;
  /** @default 15000 */
  startTimeoutMs?: number;
}

const STOP_TIMEOUT_MS = 10_000;
const STDERR_TAIL_CHARS = 16 * 1024;

/** One redis-server process; `restart()` brings it back on the same port and data dir. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private output = '';
  private readonly unregister: () => void;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
    private readonly ownsDir: boolean,
  ) {
    this.unregister = registerLeftover({
      label: `redis-server port ${port}`,
      dispose: () => this.dispose(),
      disposeNow: () => {
        if (this.running && this.child?.pid) process.kill(this.child.pid, 'SIGKILL');
        if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
      },
    });
  }

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const ownsDir = options.dir === undefined;
    const dir = options.dir ?? makeShortTempDir('bjr-');
    // Free ports are only free when asked: another process may bind one first, so a start that
    // lost that race is tried again on new ports (unless the caller fixed them).
    for (let attempt = 1; ; attempt++) {
      const clusterPort = options.cluster ? (options.clusterPort ?? (await freePort())) : undefined;
      const server = new RedisServer(options.port ?? (await freePort()), dir, { ...options, ...(clusterPort !== undefined ? { clusterPort } : {}) }, ownsDir);
      try {
        await server.launch();
        return server;
      } catch (error) {
        await server.stop();
        server.unregister();
        const raced = error instanceof LabError && error.message.includes('Address already in use') && options.port === undefined && options.clusterPort === undefined;
        if (!raced || attempt >= 3) {
          if (ownsDir) rmSync(dir, { recursive: true, force: true });
          throw error;
        }
      }
    }
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** `redis://[user:password@]127.0.0.1:port` (`rediss://` with TLS). */
  get url(): string {
    const user = this.options.user;
    const auth = user ? `${encodeURIComponent(user.name)}:${encodeURIComponent(user.password)}@` : '';
    return `${this.options.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${this.port}`;
  }

  /** Run redis-cli against this server; returns stdout (throws on a non-zero exit). */
  cli(...args: string[]): string {
    const auth = this.options.user ? ['--user', this.options.user.name, '--pass', this.options.user.password, '--no-auth-warning'] : [];
    const tls = this.options.tls ? ['--tls', '--cacert', this.options.tls.caFile] : [];
    const result = spawnSync(toolPath('redis-cli'), ['-p', String(this.port), ...tls, ...auth, ...args], { encoding: 'utf8', timeout: 30_000 });
    if (result.status !== 0) throw new LabError(`redis-cli ${args.join(' ')} failed: ${result.stderr || result.stdout}`);
    return result.stdout;
  }

  /** SIGTERM (redis fsyncs the AOF and exits), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** Start again on the same port and data dir (the AOF brings the data back). */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async dispose(): Promise<void> {
    await this.stop();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
    this.unregister();
  }

  private async launch(): Promise<void> {
    const tls = this.options.tls;
    const include = this.options.include;
    const lines = [
      ...(include ? [`include ${include}`] : []),
      ...(tls
        ? ['port 0', `tls-port ${this.port}`, `tls-cert-file ${tls.certFile}`, `tls-key-file ${tls.keyFile}`, `tls-ca-cert-file ${tls.caFile}`, 'tls-auth-clients no']
        : [`port ${this.port}`]),
      'bind 127.0.0.1',
      `dir ${this.dir}`,
      ...(include ? [] : ['appendonly yes', 'appendfsync everysec', 'save ""']),
      'daemonize no',
      'protected-mode yes',
      'loglevel warning',
      'logfile ""',
    ];
    if (this.options.cluster) {
      lines.push('cluster-enabled yes', `cluster-config-file ${join(this.dir, 'nodes.conf')}`, 'cluster-node-timeout 5000');
      if (this.options.clusterPort !== undefined) lines.push(`cluster-port ${this.options.clusterPort}`);
      // The bus speaks TLS too, and the nodes announce their TLS port to clients (the plain one is 0).
      if (tls) lines.push('tls-cluster yes');
    }
    const user = this.options.user;
    if (user && !include) {
      // The hash form: any password (spaces included) and no plain text in the file.
      const hash = createHash('sha256').update(user.password).digest('hex');
      lines.push(`user default on #${hash} ~* &* +@all`, `user ${user.name} on #${hash} ~* &* +@all`);
    }
    const conf = join(this.dir, 'redis.conf');
    writeFileSync(conf, `${lines.join('\n')}\n`, { mode: 0o600 });
    this.output = '';
    const child = spawn(toolPath('redis-server'), [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const collect = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-STDERR_TAIL_CHARS);
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 15_000);
    for (;;) {
      if (!this.running) throw new LabError(`redis-server on port ${this.port} exited during start: ${this.output.trim()}`);
      try {
        if (this.cli('ping').trim() === 'PONG') return;
      } catch {
        // not listening yet, or still loading the AOF
      }
      if (Date.now() > deadline) throw new LabError(`redis-server on port ${this.port} did not answer PING in time: ${this.output.trim()}`);
      await sleep(50);
    }
  }
}

export function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  return RedisServer.start(options);
}

/** What a cluster's nodes share: TLS (on the bus too) and an ACL user. */
export type RedisClusterOptions = Pick<RedisServerOptions, 'tls' | 'user'>;

/** Three masters, no replicas, all slots assigned. */
export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const nodes: RedisServer[] = [];
    try {
      for (let i = 0; i < 3; i++) nodes.push(await RedisServer.start({ ...options, cluster: true }));
      nodes[0]!.cli('--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes');
      const deadline = Date.now() + 20_000;
      while (!nodes.every((n) => n.cli('cluster', 'info').includes('cluster_state:ok'))) {
        if (Date.now() > deadline) throw new LabError(`redis cluster did not reach cluster_state:ok: ${nodes[0]!.cli('cluster', 'info')}`);
        await sleep(100);
      }
    } catch (error) {
      for (const node of nodes) await node.dispose();
      throw error;
    }
    return new RedisCluster(nodes);
  }

  /** Seed URLs, comma-separated, as `--redis` takes them for a cluster (each with the user, rediss:// with TLS). */
  get url(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  async dispose(): Promise<void> {
    for (const node of this.nodes) await node.dispose();
  }
}

export function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  return RedisCluster.start(options);
}
