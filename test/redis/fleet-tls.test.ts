/**
 * rediss:// against real TLS redis-servers (Debian's is built with TLS) with a throwaway CA made by
 * openssl, on one server and on a 3-master Redis Cluster (TLS on its bus too): host and edge over
 * TLS with an ACL user, the certificate verified against --redis-ca, a wrong CA refused with
 * GW_ERR_FLEET_TLS, and the password in no log line, metric, /v1/info or /readyz.
 */
import { rmSync } from 'node:fs';
import { afterAll, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { makeShortTempDir } from '../../src/lab/leftovers.js';
import { startRedis, startRedisCluster, type RedisServer, type RedisServerOptions } from '../../src/lab/redis.js';
import { issueServerCert, makeTestCa } from '../../src/lab/tls.js';
import { TestClient } from '../utils/gateway-support.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftovers, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { metricsOf, sample, serveProcess } from './fleet-support.js';

const PASSWORD = 'tls-pw-51c0ffee-never-shown';

/** A TLS Redis of either topology: its `--redis` URL and its servers. */
interface TlsRedis {
  url: string;
  nodes: RedisServer[];
  dispose(): Promise<void>;
}

type Lab = Required<Pick<RedisServerOptions, 'tls' | 'user'>>;
const topologies: [string, (lab: Lab) => Promise<TlsRedis>][] = [
  ['one server', async (lab) => {
    const server = await startRedis(lab);
    return { url: server.url, nodes: [server], dispose: () => server.dispose() };
  }],
  ['a 3-master cluster', async (lab) => {
    const cluster = await startRedisCluster(lab);
    return { url: cluster.url, nodes: cluster.nodes, dispose: () => cluster.dispose() };
  }],
];

describeRedis('fleet over TLS (rediss://)', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describeBuilt('gateways as processes', () => {
      afterAll(cleanupLeftovers);

      it.each(topologies)('on %s: host and edge work over rediss:// with an ACL user and a verified certificate; a wrong CA is refused clearly; the password is never shown', async (_name, start) => {
        const dir = makeShortTempDir('bjt-');
        const ca = makeTestCa(dir, 'fleet-ca');
        const wrongCa = makeTestCa(dir, 'other-ca');
        const redis = await start({ user: { name: 'gateway', password: PASSWORD }, tls: issueServerCert(dir, ca) });
        expect(redis.url).toMatch(/^rediss:\/\//);
        const qsd = await startQsd({ monitors: ['gw'] });
        const env = { REDIS_URL: redis.url };
        const host = await serveProcess(['--redis', 'env:REDIS_URL', '--redis-ca', ca.certFile, '--host-id', 'h1', '--qmp', `vm1=unix:${qsd.path('gw')}`, '--log-level', 'debug'], env);
        const edge = await serveProcess(['--redis', redis.url, '--redis-ca', ca.certFile, '--edge', '--log-level', 'debug']);

        // Events flow host -> Redis (TLS only: its plain port is off) -> edge.
        const client = await TestClient.connect(edge.wsUrl);
        client.send({ type: 'subscribe', id: 's', sub: 'a' });
        const subscribed = await client.next((m) => m.type === 'subscribed');
        expect(Object.keys(subscribed.streams)).toEqual(['vm1']);
        await startMirror(qsd, qsd, { jobId: 'm', speed: 64 * MiB, dataMiB: 2 });
        await client.next((m) => m.type === 'event' && m.vm === 'vm1' && m.job.id === 'm', 60_000);
        // A command through the edge reaches the host over TLS too.
        client.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm', action: 'set-speed', speed: 128 * MiB, timeoutMs: 20_000 });
        expect(await client.next((m) => m.type === 'result' && m.id === 'c', 30_000)).toMatchObject({ ok: true });
        client.ws.terminate();
        expect(redis.nodes.map((node) => node.cli('client', 'list')).join('\n')).toMatch(/name=bjg-host-h1/);

        for (const gateway of [host, edge]) {
          for (const path of ['/v1/info', '/metrics', '/readyz']) {
            const text = await (await fetch(`${gateway.url}${path}`)).text();
            expect(text, path).not.toContain(PASSWORD);
          }
          expect(sample(await metricsOf(gateway.url), 'blockjob_gateway_fleet_redis_up')).toBe(1);
        }
        const logs = [...host.run.stdout, ...host.run.stderr, ...edge.run.stdout, ...edge.run.stderr].join('\n');
        expect(logs).toContain('rediss://gateway:***@');
        expect(logs).not.toContain(PASSWORD);

        // A CA that did not sign the server's certificate: neither role starts, and each says why.
        for (const role of [['--edge'], ['--host-id', 'h2', '--qmp', `vm2=unix:${qsd.path('gw')}`]]) {
          const refused = runCli(['serve', '--redis', 'env:REDIS_URL', '--redis-ca', wrongCa.certFile, ...role, '--listen', '127.0.0.1:0', '--log-format', 'json'], env);
          expect(await refused.exited).not.toBe(0);
          const said = [...refused.stdout, ...refused.stderr].join('\n');
          expect(said).toContain('GW_ERR_FLEET_TLS');
          expect(said).toMatch(/failed TLS verification against the CA in \S*other-ca\.crt .*: its certificate is not signed by a trusted CA/);
          expect(said).not.toContain(PASSWORD);
        }
        // No CA given: the system CAs do not know this one either.
        const noCa = runCli(['serve', '--redis', 'env:REDIS_URL', '--edge', '--listen', '127.0.0.1:0', '--log-format', 'json'], env);
        expect(await noCa.exited).not.toBe(0);
        expect([...noCa.stdout, ...noCa.stderr].join('\n')).toMatch(/GW_ERR_FLEET_TLS.*system CAs/);

        for (const gateway of [host, edge]) {
          gateway.run.child.kill('SIGTERM');
          await gateway.run.exited;
        }
        await qsd.dispose();
        await redis.dispose();
        rmSync(dir, { recursive: true, force: true });
      }, 150_000);
    });
  });
});
