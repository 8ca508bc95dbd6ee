// Redis URLs: what fleet mode accepts, and that a password never leaves in what is shown.
import { describe, expect, it } from 'vitest';
import { parseRedisUrl, redactRedisUrl } from '../../../src/fleet/connect.js';
import { redisTargetOf } from '../../../src/fleet/fleet-config.js';
import { partition, FleetKeys, NOTIFY_PARTITIONS } from '../../../src/fleet/keys.js';

describe('parseRedisUrl', () => {
  it('reads user, password, TLS and database, and shows the URL without the password', () => {
    const target = parseRedisUrl('rediss://gw:s%40cret@redis.example.net:6380/2');
    expect(target).toMatchObject({ nodes: [{ host: 'redis.example.net', port: 6380 }], cluster: false, tls: true, username: 'gw', password: 's@cret', db: 2 });
    expect(target.redacted).toBe('rediss://gw:***@redis.example.net:6380/2');
    expect(target.redacted).not.toContain('cret');
  });

  it('takes comma-separated seeds as a cluster', () => {
    const target = parseRedisUrl('redis://:pw@10.0.0.1:7000,redis://:pw@10.0.0.2:7000');
    expect(target.cluster).toBe(true);
    expect(target.nodes).toHaveLength(2);
    expect(target.redacted).toBe('redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000');
  });

  it('refuses other schemes and a database on a cluster, without echoing the password', () => {
    expect(() => parseRedisUrl('http://u:topsecret@h:1')).toThrow(/redis:\/\/ or rediss:\/\//);
    expect(() => parseRedisUrl('redis://h:1/1,redis://h:2/1')).toThrow(/only database 0/);
    try {
      parseRedisUrl('redis://u:topsecret@[bad');
    } catch (error) {
      expect(String(error)).not.toContain('topsecret');
    }
  });

  it('redacts even what does not parse', () => {
    expect(redactRedisUrl('redis://user:p@ss@host')).not.toContain('p@ss');
  });

  it('env:NAME reads the URL from the environment', () => {
    expect(redisTargetOf({ redis: 'env:R' }, { R: 'redis://:x@h:1' }).nodes[0]).toEqual({ host: 'h', port: 1 });
    expect(() => redisTargetOf({ redis: 'env:MISSING' }, {})).toThrow(/MISSING, which is not set/);
  });
});

describe('fleet keys', () => {
  it("keeps every key of a VM in one hash slot, even with braces in the name", () => {
    const keys = new FleetKeys('bjg');
    for (const vm of ['vm1', 'a}b', '{x}', 'p%q']) {
      const tags = Object.values(keys.vm(vm)).map((key) => /\{([^}]*)\}/.exec(key)![1]);
      expect(new Set(tags).size).toBe(1);
      expect(tags[0]).not.toBe('');
    }
  });

  it('spreads VMs over the notify partitions', () => {
    const used = new Set(Array.from({ length: 1000 }, (_, i) => partition(`vm${i}`)));
    expect(used.size).toBe(NOTIFY_PARTITIONS);
  });
});
