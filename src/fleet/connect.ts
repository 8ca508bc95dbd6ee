/**
 * Redis connections for the fleet, with ioredis 5: maintained, one API for a single server and a
 * Redis Cluster (slot routing, MOVED/ASK), TLS (`rediss://`), ACL users, automatic reconnects.
 *
 * `--redis` takes one URL, or several comma-separated seed URLs of a cluster. The password is only
 * ever handed to ioredis: everything that is logged or shown goes through `redactRedisUrl`.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { reconnectDelayMs, resolveReconnectPolicy } from '../backoff.js';
import { ConfigError, FleetTlsError } from '../errors.js';

export type RedisClient = Redis | Cluster;

export interface RedisTarget {
  /** One entry for a single server, several for the seeds of a cluster. */
  nodes: { host: string; port: number }[];
  cluster: boolean;
  tls: boolean;
  username?: string;
  password?: string;
  db?: number;
  /** For logs and /v1/info: the URLs without any password. */
  redacted: string;
}

/** Parse `redis://[user[:password]@]host[:port][/db]` (or `rediss://`), or a comma-separated cluster seed list. */
export function parseRedisUrl(spec: string): RedisTarget {
  const parts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new ConfigError('--redis needs a URL such as redis://127.0.0.1:6379', 'redis');
  const parsed = parts.map((part) => {
    let url: URL;
    try {
      url = new URL(part);
    } catch {
      throw new ConfigError(`--redis: not a URL: ${redactRedisUrl(part)}`, 'redis');
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new ConfigError(`--redis: scheme must be redis:// or rediss://, got ${url.protocol}//`, 'redis');
    const db = url.pathname.length > 1 ? Number(url.pathname.slice(1)) : undefined;
    if (db !== undefined && !Number.isInteger(db)) throw new ConfigError(`--redis: database must be a number: ${redactRedisUrl(part)}`, 'redis');
    return { url, db };
  });
  const first = parsed[0]!;
  const cluster = parts.length > 1;
  if (cluster && parsed.some((p) => p.db)) throw new ConfigError('--redis: a Redis Cluster has only database 0', 'redis');
  if (new Set(parsed.map((p) => p.url.protocol)).size > 1) throw new ConfigError('--redis: mix of redis:// and rediss:// seeds', 'redis');
  const username = decodeURIComponent(first.url.username) || undefined;
  const password = decodeURIComponent(first.url.password) || undefined;
  return {
    nodes: parsed.map(({ url }) => ({ host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port ? Number(url.port) : 6379 })),
    cluster,
    tls: first.url.protocol === 'rediss:',
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(first.db !== undefined ? { db: first.db } : {}),
    redacted: parts.map(redactRedisUrl).join(','),
  };
}

/** The URL with its password replaced by `***` (also when the URL does not parse). */
export function redactRedisUrl(url: string): string {
  return url.replace(/^(rediss?:\/\/[^:@/]*):[^@/]*@/, '$1:***@');
}

export interface ConnectOptions {
  /** PEM file of the CA that signed the server certificate (rediss://). @default the system CAs */
  tlsCaFile?: string;
  /** Shown in CLIENT LIST. */
  connectionName?: string;
  /** Fail a command after this long instead of queueing it while disconnected. @default 5000 */
  commandTimeoutMs?: number;
}

/**
 * How a fleet client retries a server, or a cluster's seeds: the shared backoff (jittered, so a
 * fleet that lost Redis does not come back in lockstep), capped low because Redis restarts fast.
 */
const REDIS_RECONNECT = resolveReconnectPolicy({ initialDelayMs: 50, maxDelayMs: 2000 });

/**
 * How long a host gateway waits for Redis at start (each of its seed reader, its publisher and its
 * command reader) before it serves its VMs locally and goes on retrying: short, its own clients come first.
 */
export const HOST_START_WAIT_MS = 2000;

/** ioredis counts attempts from 1. */
const retryDelay = (times: number): number => reconnectDelayMs(times - 1, REDIS_RECONNECT);

/**
 * A client that never queues commands while disconnected (the publisher keeps its own bounded
 * buffer) and reconnects forever with the shared backoff, a cluster too (its seeds all down at start
 * included: ioredis retries a cluster's start only with a `clusterRetryStrategy`).
 */
export function connectRedis(target: RedisTarget, options: ConnectOptions = {}): RedisClient {
  const tls = target.tls ? { ...(options.tlsCaFile ? { ca: readCa(options.tlsCaFile) } : {}) } : undefined;
  const common: RedisOptions = {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password ? { password: target.password } : {}),
    ...(tls ? { tls } : {}),
    ...(options.connectionName ? { connectionName: options.connectionName } : {}),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 5000,
    retryStrategy: retryDelay,
    lazyConnect: true,
  };
  if (!target.cluster) return new Redis({ ...common, host: target.nodes[0]!.host, port: target.nodes[0]!.port, ...(target.db !== undefined ? { db: target.db } : {}) });
  const clusterOptions: ClusterOptions = {
    redisOptions: common,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    clusterRetryStrategy: retryDelay,
    lazyConnect: true,
  };
  return new Cluster(target.nodes, clusterOptions);
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new ConfigError(`cannot read the CA file ${file}: ${(error as Error).message}`, 'fleet.tlsCaFile');
  }
}

/**
 * Connects `client` (if it has not started) and resolves once it is ready, its retry strategy
 * retrying meanwhile. Not `connect()`'s own promise: after a Cluster's failed ready check
 * (cluster_state:fail, its slots not served yet right after a restart, or `CLUSTER INFO` unanswered)
 * ioredis reconnects with a new attempt and leaves that promise pending forever, ready or not.
 * Unbounded: the caller bounds the wait.
 */
export function whenReady(client: RedisClient): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
  if (client.status === 'wait') client.connect().catch(() => undefined);
  return ready;
}

/** A duplicate for blocking reads or pub/sub (those need a connection of their own). */
export function duplicateRedis(client: RedisClient): RedisClient {
  return client.duplicate();
}

/** Node's certificate verification failures (tls.TLSSocket#authorizationError codes), and a peer that is not TLS. */
const TLS_FAILURES: Record<string, string> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is not signed by a trusted CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is not signed by a trusted CA',
  UNABLE_TO_GET_ISSUER_CERT: 'its certificate is not signed by a trusted CA',
  SELF_SIGNED_CERT_IN_CHAIN: 'its certificate is not signed by a trusted CA (its chain ends in another, self-signed one)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed and not trusted',
  CERT_SIGNATURE_FAILURE: 'its certificate signature does not verify',
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate does not name this host',
  ERR_SSL_WRONG_VERSION_NUMBER: 'it does not speak TLS on this port',
  EPROTO: 'the TLS handshake failed (does it speak TLS on this port?)',
};

/** The TLS failure behind a connection error (a cluster wraps the last node's error), if it is one. */
export function tlsFailure(error: unknown, target: RedisTarget, caFile: string | undefined): FleetTlsError | undefined {
  const inner = (error as { lastNodeError?: unknown }).lastNodeError ?? error;
  const code = (inner as { code?: unknown }).code;
  if (!target.tls || typeof code !== 'string' || !(code in TLS_FAILURES)) return undefined;
  const trusted = caFile ? `the CA in ${caFile} (fleet.tlsCaFile / --redis-ca)` : 'the system CAs (set fleet.tlsCaFile / --redis-ca to your CA)';
  return new FleetTlsError(`Redis at ${target.redacted} failed TLS verification against ${trusted}: ${TLS_FAILURES[code]} [${code}]`, code, { cause: inner });
}

/**
 * Connect, or fail with a clear error: a refused login (wrong password, unknown user, missing ACL
 * permission) or a failed TLS verification would otherwise be retried forever. A server (or every
 * seed of a cluster) that does not answer is retried with REDIS_RECONNECT until `timeoutMs`, so a
 * Redis restarting as the gateway starts is waited for; past it the error names the redacted
 * URL(s) and the last failure. With `keepTrying` (a host, which serves locally meanwhile) the
 * client goes on retrying after that error; without it, it is closed.
 */
export async function connectOrFail(client: RedisClient, target: RedisTarget, timeoutMs = 15_000, caFile?: string, keepTrying = false): Promise<void> {
  let onError: ((error: Error) => void) | undefined;
  let onReady: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let last: Error | undefined;
  let probed = false;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = resolve;
    onError = (error: Error) => {
      last = (error as { lastNodeError?: Error }).lastNodeError ?? error;
      const tls = tlsFailure(error, target, caFile);
      if (tls) reject(tls);
      if (/WRONGPASS|NOAUTH|NOPERM|invalid username-password/i.test(last.message)) reject(new ConfigError(`Redis at ${target.redacted} refused the login: ${last.message}`, 'fleet.redis'));
      if (!probed && target.cluster && target.tls) {
        probed = true;
        void probeSeed(target, caFile).then(({ error: seed }) => {
          const tls = seed && tlsFailure(seed, target, caFile);
          if (tls) reject(tls);
        });
      }
    };
    client.on('error', onError);
    client.once('ready', onReady);
    timer = setTimeout(() => {
      void (target.cluster ? probeSeed(target, caFile) : Promise.resolve<SeedProbe>({})).then(({ error: seed, clusterState }) => {
        const failure = seed ?? last;
        // Seeds that answer a cluster whose state is not ok (slots not served yet, nodes still meeting after a restart) are no unreachable Redis.
        if (clusterState !== undefined && clusterState !== 'ok') {
          return reject(new ConfigError(`the Redis Cluster ${target.redacted} answered but did not become ready within ${timeoutMs} ms of retrying with backoff (its first seed says cluster_state:${clusterState}: not every slot is served)`, 'fleet.redis'));
        }
        const who = target.cluster ? `none of the Redis Cluster seeds ${target.redacted} answered` : `Redis at ${target.redacted} did not answer`;
        const why = failure ? ` (last failure${seed ? ' of the first seed' : ''}: ${redactRedisUrl(failure.message)})` : '';
        reject(new ConfigError(`${who} within ${timeoutMs} ms of retrying with backoff${why}`, 'fleet.redis'));
      });
    }, timeoutMs);
  });
  // A failed first attempt is not the answer: the client's retry strategy tries again until `ready` or the deadline.
  client.connect().catch(() => undefined);
  try {
    await ready;
  } catch (error) {
    if (!keepTrying || fatalAtStart(error)) client.disconnect();
    throw error;
  } finally {
    if (onError) client.off('error', onError);
    if (onReady) client.off('ready', onReady);
    clearTimeout(timer);
  }
}

interface SeedProbe {
  /** Why the first seed refused a connection of its own. */
  error?: Error;
  /** `cluster_state` (ok, fail) of a first seed that answered. */
  clusterState?: string;
}

/**
 * What the first seed of a cluster says when asked alone: ioredis probes the seeds on connections
 * whose errors it drops, and says only that none answered (or "Connection is closed."); nor does it
 * say that seeds which answer failed its ready check (`cluster_state:fail`).
 */
async function probeSeed(target: RedisTarget, caFile: string | undefined): Promise<SeedProbe> {
  const probe = connectRedis({ ...target, cluster: false, nodes: target.nodes.slice(0, 1) }, caFile ? { tlsCaFile: caFile } : {});
  return new Promise((resolve) => {
    const timer = setTimeout(() => done({}), 5000);
    const done = (result: SeedProbe): void => {
      clearTimeout(timer);
      probe.disconnect();
      resolve(result);
    };
    probe.once('error', (error: Error) => done({ error }));
    probe.connect().then(
      () =>
        (probe as Redis).cluster('INFO').then(
          (info) => done({ clusterState: /^cluster_state:(\w+)/m.exec(String(info))?.[1] ?? 'unknown' }),
          () => done({}),
        ),
      () => undefined, // the error event decides
    );
  });
}

/** A start-up failure that retrying cannot cure (refused login, failed TLS verification): stop instead of waiting for Redis. */
export function fatalAtStart(error: unknown): boolean {
  return error instanceof FleetTlsError || (error instanceof ConfigError && /refused the login/.test(error.message));
}
