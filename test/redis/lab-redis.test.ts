// The Redis lab itself: a real redis-server by PID with AOF, restart on the same port and data, the 3-master cluster.
import { afterAll, expect, it } from 'vitest';
import { cleanupLeftovers, leftoverCount } from '../../src/lab/index.js';
import { startRedis, startRedisCluster } from '../../src/lab/redis.js';
import { describeRedis } from '../utils/redis-gate.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describeRedis('Redis lab', () => {
  afterAll(cleanupLeftovers);

  it('starts redis-server by PID, keeps data across a restart on the same port (AOF), stops it by PID', async () => {
    const before = leftoverCount();
    const redis = await startRedis();
    const pid = redis.pid!;
    expect(alive(pid)).toBe(true);
    expect(redis.cli('config', 'get', 'appendonly')).toContain('yes');
    redis.cli('set', 'k', 'v1');
    await redis.restart();
    expect(redis.pid).not.toBe(pid);
    expect(alive(pid)).toBe(false);
    expect(redis.cli('get', 'k').trim()).toBe('v1');
    await redis.stop();
    expect(redis.running).toBe(false);
    await redis.dispose();
    expect(leftoverCount()).toBe(before);
  });

  it('requires the password of an ACL user and puts it in the URL only', async () => {
    const redis = await startRedis({ user: { name: 'gw', password: 's3cret pass' } });
    expect(redis.url).toBe(`redis://gw:s3cret%20pass@127.0.0.1:${redis.port}`);
    expect(redis.cli('acl', 'whoami').trim()).toBe('gw');
    await redis.dispose();
  });

  it('builds a 3-master cluster with every slot assigned', async () => {
    const cluster = await startRedisCluster();
    const info = cluster.nodes[0]!.cli('cluster', 'info');
    expect(info).toContain('cluster_state:ok');
    expect(info).toContain('cluster_known_nodes:3');
    expect(info).toContain('cluster_slots_assigned:16384');
    expect(cluster.nodes[0]!.cli('-c', 'set', '{vm1}:x', '1').trim()).toBe('OK');
    await cluster.dispose();
    expect(cluster.nodes.every((n) => !n.running)).toBe(true);
  });
});
