/**
 * deploy/redis-fleet.conf, the file users copy, run as written: a real redis-server includes it (the
 * lab's lines after it only move the TLS port, certificate files and data dir into a temp dir), and
 * a host gateway and an edge do a round trip through it: the host's events reach the edge, and a
 * pivot sent to the edge reaches QEMU through the host. Its ACL, AOF and memory policy are checked
 * to be in force, so a fleet that needs a command the ACL refuses fails here, not in production.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { makeShortTempDir } from '../../src/lab/leftovers.js';
import { redisTools, startRedis, type RedisServer } from '../../src/lab/redis.js';
import { issueServerCert, makeTestCa } from '../../src/lab/tls.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftovers, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { serveProcess, Stops } from './fleet-support.js';

const CONF = fileURLToPath(new URL('../../deploy/redis-fleet.conf', import.meta.url));

/** The gateways' ACL user and password, as the file has them (a user changes the password; the test follows the file). */
function confUser(): { name: string; password: string } {
  const line = /^user (\S+) on >(\S+) .*~bjg:\*/m.exec(readFileSync(CONF, 'utf8'));
  if (!line) throw new Error(`${CONF} has no gateway user line limited to ~bjg:*`);
  return { name: line[1]!, password: line[2]! };
}

describeRedis('deploy/redis-fleet.conf as users run it', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describeBuilt('gateways as processes', () => {
      const stops = new Stops();
      let redis: RedisServer | undefined;
      const dir = makeShortTempDir('bjd-');
      afterAll(async () => {
        await stops.run();
        await redis?.dispose();
        await cleanupLeftovers();
        rmSync(dir, { recursive: true, force: true });
      });

      it('a host and an edge round-trip through it over TLS with its ACL user; its AOF, memory policy and ACL are in force', async () => {
        const ca = makeTestCa(dir, 'fleet-ca');
        const user = confUser();
        redis = await startRedis({ include: CONF, tls: issueServerCert(dir, ca), user });
        expect(redis.url).toMatch(/^rediss:\/\//);
        const server = redis;

        // The file's settings hold: AOF on, no eviction; the gateway user is confined to the fleet's keys
        // and refused dangerous commands; `default` cannot log in.
        expect(server.cli('info', 'persistence')).toMatch(/aof_enabled:1/);
        expect(server.cli('info', 'memory')).toMatch(/maxmemory_policy:noeviction/);
        expect(server.cli('set', 'other:key', '1')).toMatch(/NOPERM/);
        expect(server.cli('flushall')).toMatch(/NOPERM/);
        const anonymous = spawnSync(redisTools().paths['redis-cli']!, ['-p', String(server.port), '--tls', '--cacert', ca.certFile, 'ping'], { encoding: 'utf8' });
        expect(`${anonymous.stdout}${anonymous.stderr}`).toMatch(/NOAUTH|WRONGPASS/);

        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());
        const env = { REDIS_URL: server.url };
        const tls = ['--redis', 'env:REDIS_URL', '--redis-ca', ca.certFile];
        const host = await serveProcess([...tls, '--host-id', 'h1', '--qmp', `vm1=unix:${qsd.path('gw')}`], env);
        const edge = await serveProcess([...tls, '--edge'], env);

        // Events host -> Redis -> edge, and a pivot edge -> Redis -> host -> QEMU, answered back the same way.
        const client = await stops.client(edge.wsUrl);
        client.send({ type: 'subscribe', id: 's', sub: 'a' });
        const subscribed = await client.next((m) => m.type === 'subscribed', 30_000);
        expect(Object.keys(subscribed.streams)).toEqual(['vm1']);
        await startMirror(qsd, qsd, { jobId: 'm', speed: 16 * MiB, dataMiB: 4 });
        await client.next((m) => m.type === 'event' && m.vm === 'vm1' && m.job.id === 'm', 60_000);
        client.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
        const pivot = await client.next((m) => m.type === 'result' && m.id === 'c', 70_000);
        expect(pivot, JSON.stringify(pivot)).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
        await client.next((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'concluded', 30_000);
        expect(client.invalid).toEqual([]);

        // Nothing the fleet does was refused by the ACL, and both gateways say Redis is fine.
        for (const gateway of [host, edge]) {
          expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
          const said = [...gateway.run.stdout, ...gateway.run.stderr].join('\n');
          expect(said).not.toMatch(/NOPERM|NOAUTH|WRONGPASS/);
        }
      }, 150_000);

      it('an ACL without the fleet\'s channels stops an edge at start with GW_ERR_CONFIG saying what the fleet needs', async () => {
        const ca = makeTestCa(dir, 'narrow-ca');
        const user = confUser();
        const narrow = join(dir, 'redis-fleet-narrow.conf');
        writeFileSync(narrow, readFileSync(CONF, 'utf8').replace('&bjg:*', '&other:*'));
        const server = await startRedis({ include: narrow, tls: issueServerCert(dir, ca, 'narrow'), user });
        stops.add(() => server.dispose());
        const edge = runCli(['serve', '--redis', 'env:REDIS_URL', '--redis-ca', ca.certFile, '--edge', '--listen', '127.0.0.1:0'], { REDIS_URL: server.url });
        // It exits (a start that failed half-way used to keep its sockets, and the process, alive).
        expect(await edge.exited).toBe(1);
        const said = [...edge.stdout, ...edge.stderr].join('\n');
        expect(said).toMatch(/GW_ERR_CONFIG.*refused the gateway's ACL user: NOPERM .*channels.*~bjg:\* &bjg:\*/);
        expect(said).not.toContain(user.password);
      }, 60_000);
    });
  });
});
