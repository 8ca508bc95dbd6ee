/**
 * An edge's start that stalls, on real redis-server: a Redis Cluster whose first answer to one
 * client is late (ioredis then leaves that client's `connect()` pending forever) does not hang the
 * edge, and a stage Redis never answers fails the start within `fleet.startTimeoutMs` with
 * GW_ERR_FLEET_START_TIMEOUT naming that stage, the process exiting; a cluster that answers but
 * does not serve its slots is said to be that, not unreachable; a host's start does not wait on its
 * command reader's stalled ready check.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { startRedis, startRedisCluster, type RedisCluster } from '../../src/lab/redis.js';
import { describeBuilt, exitWithin, runCli } from '../utils/built-cli.js';
import { makeTestDir } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { edgeArgs, eventually, hostArgs, serveInProcess, Stops } from './fleet-support.js';

/** A request chunk that carries the command `name` (RESP bulk strings, as ioredis writes them). */
const carries = (chunk: Buffer, ...words: string[]): boolean => chunk.toString('latin1').toLowerCase().includes(words.map((w) => `$${w.length}\r\n${w}\r\n`).join(''));

/**
 * Each node of `cluster` behind a proxy, and announcing the proxy's port (CLUSTER SLOTS then names
 * the proxies): every request of a cluster client passes a proxy, so one can be held on cue.
 */
async function behindProxies(cluster: RedisCluster, stops: Stops): Promise<TcpProxy[]> {
  const proxies: TcpProxy[] = [];
  for (const node of cluster.nodes) {
    const proxy = await startTcpProxy(node.port);
    stops.add(() => proxy.close());
    proxies.push(proxy);
    node.cli('config', 'set', 'cluster-announce-port', proxy.url.split(':').at(-1)!);
  }
  const ports = proxies.map((p) => `:${p.url.split(':').at(-1)!}@`);
  await eventually(
    () => cluster.nodes.every((n) => ports.every((p) => n.cli('cluster', 'nodes').includes(p)) && n.cli('cluster', 'info').includes('cluster_state:ok')),
    30_000,
    'every node to announce its proxy',
  );
  return proxies;
}

describeRedis('an edge start that stalls', () => {
  const stops = new Stops();
  afterEach(() => stops.run());

  it("a Redis Cluster that leaves the edge's subscriber's first ready check unanswered: the edge retries it and serves", async () => {
    const cluster = await startRedisCluster();
    stops.add(() => cluster.dispose());
    const proxies = await behindProxies(cluster, stops);
    // The edge's main client checks CLUSTER INFO first, its subscriber second: that one goes unanswered.
    let checks = 0;
    for (const proxy of proxies) proxy.hold = (chunk) => carries(chunk, 'cluster', 'info') && ++checks === 2;
    const edge = await serveInProcess(edgeArgs(proxies.map((p) => p.url).join(',')));
    stops.add(() => edge.stop());
    // The held check failed (command timeout) and a later one passed: the edge waited for that, not for connect()'s promise.
    expect(checks).toBeGreaterThanOrEqual(3);
    const readyz = await fetch(`${edge.gateway.url}/readyz`);
    expect(readyz.status, await readyz.text()).toBe(200);
  }, 90_000);

  it("a host whose command reader's first ready check on a Redis Cluster goes unanswered still starts serving, and the reader checks again", async () => {
    const cluster = await startRedisCluster();
    stops.add(() => cluster.dispose());
    const proxies = await behindProxies(cluster, stops);
    // A host checks CLUSTER INFO with its seed reader, its publisher, then its command reader: that one goes unanswered.
    let checks = 0;
    for (const proxy of proxies) proxy.hold = (chunk) => carries(chunk, 'cluster', 'info') && ++checks === 3;
    const host = await serveInProcess(hostArgs(proxies.map((p) => p.url).join(','), 'h1', { vm1: '/nonexistent/bjg-start.sock' }));
    stops.add(() => host.stop());
    expect(checks).toBeGreaterThanOrEqual(3);
    await eventually(() => checks >= 4, 30_000, 'the command reader to check again');
  }, 90_000);

  describeBuilt('the edge as a process', () => {
    it('a Redis Cluster whose seeds answer but do not serve every slot: exit 1 after the start wait, GW_ERR_CONFIG saying the cluster is not ready (not that no seed answered)', async () => {
      const cluster = await startRedisCluster();
      stops.add(() => cluster.dispose());
      for (const node of cluster.nodes) node.cli('cluster', 'delslots', '0');
      await eventually(() => cluster.nodes.every((n) => n.cli('cluster', 'info').includes('cluster_state:fail')), 30_000, 'cluster_state:fail on every node');
      const edge = runCli(['serve', '--redis', cluster.url, '--edge', '--listen', '127.0.0.1:0', '--log-format', 'json']);
      expect(await exitWithin(edge, 60_000)).toBe(1);
      const out = [...edge.stdout, ...edge.stderr].join('\n');
      expect(out).toMatch(/\[GW_ERR_CONFIG\]: fleet\.redis: the Redis Cluster redis:\/\/127\.0\.0\.1:\d+,\S+ answered but did not become ready within 15000 ms of retrying with backoff \(its first seed says cluster_state:fail: not every slot is served\)/);
    }, 90_000);

    it.each([
      ['subscribe to the notify channels', ['subscribe'], 'connect to Redis, connect the notify subscriber'],
      ["list the fleet's VMs", ['smembers'], 'connect to Redis, connect the notify subscriber, subscribe to the notify channels'],
    ])('a Redis that never answers the stage "%s": exit 1 within fleet.startTimeoutMs, GW_ERR_FLEET_START_TIMEOUT naming it', async (stage, command, done) => {
      const redis = await startRedis();
      stops.add(() => redis.dispose());
      const proxy = await startTcpProxy(redis.port);
      stops.add(() => proxy.close());
      let held = false;
      proxy.hold = (chunk) => (held ||= carries(chunk, ...command));
      const file = join(makeTestDir('bjf-start-'), 'gateway.json');
      writeFileSync(file, JSON.stringify({ fleet: { redis: proxy.url.replace('redis://', 'redis://default:pw-start@'), edge: true, startTimeoutMs: 3000 } }));
      const started = Date.now();
      const edge = runCli(['serve', '--config', file, '--listen', '127.0.0.1:0', '--log-format', 'json']);
      expect(await exitWithin(edge, 60_000)).toBe(1);
      expect(held).toBe(true);
      // Redis's own command timeout (5 s) would have failed the stage later, unnamed.
      expect(Date.now() - started).toBeLessThan(30_000);
      const out = [...edge.stdout, ...edge.stderr].join('\n');
      expect(out).toMatch(/\[GW_ERR_FLEET_START_TIMEOUT\]: edge \S+ \(Redis at redis:\/\/default:\*\*\*@127\.0\.0\.1:\d+\) did not start within 3000 ms \(fleet\.startTimeoutMs\)/);
      expect(out).toContain(`stuck at ${stage} (done: ${done})`);
      expect(out).not.toContain('pw-start');
    }, 90_000);
  });
});
