/**
 * Fleet operations at start, on real redis-server: an ACL that refuses a host gateway the fleet's
 * keys or channels stops it (GW_ERR_CONFIG, exit 1) instead of leaving it running unpublished; a
 * Redis Cluster none of whose seeds answers at start is retried with the shared backoff (an edge
 * waits for it, a host serves locally meanwhile, then publishes and takes commands), and seeds that
 * never answer fail an edge with an error that names them.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { freePort, startRedis, startRedisCluster, type RedisServer } from '../../src/lab/redis.js';
import { describeBuilt, exitWithin, runCli } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftovers, makeTestDir, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startTcpProxy } from './tcp-proxy.js';
import { edgeArgs, eventually, hostArgs, serveInProcess, Stops, type InProcessGateway } from './fleet-support.js';

describeRedis('fleet operations at start', () => {
  describeBuilt('gateways as processes', () => {
    const stops = new Stops();
    let redis: RedisServer | undefined;
    afterEach(() => stops.run());
    afterAll(async () => {
      await redis?.dispose();
      await cleanupLeftovers();
    });

    it.each([
      ['keys', '~other:* &bjg:*', /NOPERM .*keys/],
      ['channels', '~bjg:* &other:*', /NOPERM .*channels/],
    ])('an ACL that refuses a host gateway the fleet\'s %s stops it at start: GW_ERR_CONFIG naming what the fleet needs, exit 1', async (_what, grants, said) => {
      redis ??= await startRedis();
      const user = `narrow-${_what}`;
      redis.cli('acl', 'setuser', user, 'reset', 'on', '>pw-narrow', ...grants.split(' '), '+@all', '-@dangerous', '+info');
      const url = redis.url.replace('redis://', `redis://${user}:pw-narrow@`);
      // The monitor need not answer: the host fails before it serves anything.
      const host = runCli(['serve', ...hostArgs(url, 'h1', { vm1: '/nonexistent/bjg-acl.sock' }), '--listen', '127.0.0.1:0', '--log-format', 'json']);
      expect(await exitWithin(host, 30_000)).toBe(1);
      const out = [...host.stdout, ...host.stderr].join('\n');
      expect(out).toMatch(/GW_ERR_CONFIG.*refused the gateway's ACL user: NOPERM/);
      expect(out).toMatch(said);
      expect(out).toContain('~bjg:* &bjg:*');
      expect(out).not.toContain('pw-narrow');
      // It stopped before claiming anything.
      expect(redis.cli('smembers', 'bjg:vms').trim()).toBe('');
    }, 60_000);

    it('a host started while Redis is away, whose Redis then refuses the fleet\'s keys: it serves locally and /readyz says why (GW_ERR_CONFIG)', async () => {
      const port = await freePort();
      const dir = makeTestDir('bjf-acl-');
      const conf = join(dir, 'narrow.conf');
      writeFileSync(conf, 'user default off\nuser narrow on >pw-narrow ~other:* &bjg:* +@all -@dangerous +info\n');
      const url = `redis://narrow:pw-narrow@127.0.0.1:${port}`;
      const host = await serveInProcess(hostArgs(url, 'h1', { vm1: '/nonexistent/bjg-acl.sock' }));
      stops.add(() => host.stop());
      const readyz = async (): Promise<string> => (await fetch(`${host.gateway.url}/readyz`)).text();
      expect(await readyz()).toContain('redis unreachable');
      const server = await startRedis({ port, include: conf, user: { name: 'narrow', password: 'pw-narrow' } });
      stops.add(() => server.dispose());
      await eventually(async () => /refused the gateway's ACL user: NOPERM .*keys.*~bjg:\* &bjg:\*/.test(await readyz()), 20_000, '/readyz to name the ACL refusal');
      expect(await readyz()).not.toContain('pw-narrow');
    }, 60_000);

    it('a Redis Cluster whose seeds never answer: an edge exits 1 after its start wait, naming the seeds (without the password) and the last failure', async () => {
      const seeds = [await freePort(), await freePort()].map((port) => `redis://u:secret-pw@127.0.0.1:${port}`).join(',');
      const started = Date.now();
      const edge = runCli(['serve', '--redis', seeds, '--edge', '--listen', '127.0.0.1:0', '--log-format', 'json']);
      expect(await exitWithin(edge, 60_000)).toBe(1);
      // It retried for its start wait rather than giving up at the first refusal.
      expect(Date.now() - started).toBeGreaterThan(10_000);
      const out = [...edge.stdout, ...edge.stderr].join('\n');
      expect(out).toMatch(/GW_ERR_CONFIG.*none of the Redis Cluster seeds redis:\/\/u:\*\*\*@127\.0\.0\.1:\d+,redis:\/\/u:\*\*\*@127\.0\.0\.1:\d+ answered within 15000 ms/);
      expect(out).toMatch(/last failure of the first seed: connect ECONNREFUSED 127\.0\.0\.1:\d+\)/);
      expect(out).not.toContain('secret-pw');
    }, 90_000);

    describeQemu('real qemu-storage-daemon', () => {
      it('a Redis Cluster down at start: an edge waits for it and starts once it is back; a host serves locally meanwhile, then publishes and answers commands', async () => {
        const cluster = await startRedisCluster();
        stops.add(() => cluster.dispose());
        for (const node of cluster.nodes) await node.stop();
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());

        const host = await serveInProcess(hostArgs(cluster.url, 'h1', { vm1: qsd.path('gw') }));
        stops.add(() => host.stop());
        await eventually(async () => (await (await fetch(`${host.gateway.url}/readyz`)).text()).includes('redis unreachable'), 20_000, 'the host to say Redis is unreachable');
        const local = await stops.client(host.gateway.wsUrl);
        local.send({ type: 'subscribe', id: 's', sub: 'a' });
        expect(Object.keys((await local.next((m) => m.type === 'subscribed')).streams)).toEqual(['vm1']);

        let edge: InProcessGateway | undefined;
        let failed: unknown;
        const starting = serveInProcess(edgeArgs(cluster.url)).then(
          (started) => (edge = started),
          (error: unknown) => (failed = error),
        );
        // The edge keeps trying while the host has long been serving: it did not give up at the first refusal.
        await eventually(async () => (await (await fetch(`${host.gateway.url}/readyz`)).text()).includes('redis unreachable'), 5_000, 'the host still degraded');
        expect(failed).toBeUndefined();
        expect(edge).toBeUndefined();

        for (const node of cluster.nodes) await node.restart();
        await starting;
        expect(failed).toBeUndefined();
        stops.add(() => edge!.stop());

        // The host, started without Redis, publishes vm1 once the cluster is back, and runs the edge's commands.
        const e = await stops.client(edge!.gateway.wsUrl);
        await eventually(async () => ((await (await fetch(`${edge!.gateway.url}/v1/jobs`)).json()) as { vms: { vm: string }[] }).vms.some((v) => v.vm === 'vm1'), 30_000, 'vm1 on the edge');
        e.send({ type: 'command', id: 'c', vm: 'vm1', job: 'nope', action: 'cancel', timeoutMs: 10_000 });
        const result = await e.next((m) => m.type === 'result' && m.id === 'c', 20_000);
        expect(result, JSON.stringify(result)).toMatchObject({ ok: false, error: { code: 'unknown_job' } });
        await eventually(async () => (await fetch(`${host.gateway.url}/readyz`)).status === 200 && !(await (await fetch(`${host.gateway.url}/readyz`)).text()).includes('redis unreachable'), 20_000, 'the host ready without degradation');
      }, 120_000);

      it('a host whose VM is never quiet (Redis 30 ms away, a pause or a resume every ~25 ms) still prunes a job that expired from Redis', async () => {
        redis ??= await startRedis();
        redis.cli('flushall');
        const proxy = await startTcpProxy(redis.port);
        stops.add(() => proxy.close());
        const qsd = await startQsd({ monitors: ['gw'] });
        stops.add(() => qsd.dispose());
        const config = join(makeTestDir('bjf-prune-'), 'gateway.json');
        writeFileSync(config, JSON.stringify({ jobs: { retentionMs: 1000 }, limits: { inboundRatePerSecond: 1000 }, fleet: { redis: 'env:UNUSED', leaseTtlMs: 1500 } }));
        const host = await serveInProcess(['--config', config, ...hostArgs(proxy.url, 'h1', { vm1: qsd.path('gw') })]);
        stops.add(() => host.stop());
        const jobs = (): string[] => redis!.cli('hkeys', 'bjg:{vm1}:j').split('\n').filter(Boolean).sort();
        await startMirror(qsd, qsd, { jobId: 'done', speed: 1 * MiB, dataMiB: 16 });
        await startMirror(qsd, qsd, { jobId: 'busy', speed: 1 * MiB, dataMiB: 64 });
        await eventually(() => jobs().join() === 'busy,done', 30_000, 'both jobs in Redis');

        // From here the VM always has an append in flight or waiting: every reply is 30 ms late and 'busy' changes every ~25 ms.
        proxy.delayMs = 30;
        // Through the host (a client's pause passes at once; one from another QMP client is held as a possible drain blip).
        const control = await stops.client(host.gateway.wsUrl);
        let steady = true;
        let changes = 0;
        const churn = (async () => {
          for (let n = 0; steady; n++) {
            for (const action of ['pause', 'resume']) {
              control.send({ type: 'command', id: `${action}-${n}`, vm: 'vm1', job: 'busy', action });
              const result = await control.next((m) => m.type === 'result' && m.id === `${action}-${n}`, 10_000);
              if (!result.ok) throw new Error(JSON.stringify(result));
              changes++;
              await new Promise((r) => setTimeout(r, 25)); // faster than Redis's 30 ms replies
            }
          }
        })();
        stops.add(async () => {
          steady = false;
          await churn.catch(() => undefined);
        });
        // 'done' ends (auto-dismissed, gone from QEMU), and leaves the host's snapshot after its 1 s retention.
        await qsd.execute('job-cancel', { id: 'done' });
        await eventually(async () => !((await (await fetch(`${host.gateway.url}/v1/jobs`)).text()).includes('"id":"done"')), 30_000, "'done' expired on the host");
        const head = (): number => Number(redis!.cli('hget', 'bjg:{vm1}:m', 'head').trim());
        const before = head();
        await eventually(() => jobs().join() === 'busy', 30_000, "'done' pruned from Redis while events keep coming");
        // The churn went on throughout, and its events kept reaching Redis.
        let churnError: unknown;
        churn.catch((e: unknown) => (churnError = e));
        await eventually(() => head() > before, 20_000, 'the churn in Redis');
        expect(churnError).toBeUndefined();
        expect(changes).toBeGreaterThan(0);
      }, 120_000);
    });
  });
});
