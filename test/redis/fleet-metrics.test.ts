/**
 * Fleet metrics on /metrics of a host gateway and an edge, against a real redis-server and a real
 * qemu-storage-daemon: what docs/deploy.md tells operators to watch moves as the fleet does, and
 * an outage of Redis shows in it (Redis down, events unacknowledged, every VM stale on the edge).
 */
import { afterAll, expect, it } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startRedis } from '../../src/lab/redis.js';
import { TestClient } from '../utils/gateway-support.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { edgeArgs, eventually, hostArgs, metricsOf, sample, serveInProcess } from './fleet-support.js';

const F = 'blockjob_gateway_fleet_';

describeRedis('fleet metrics', () => {
  describeQemu('real qemu-storage-daemon', () => {
    cleanupLeftoversAfterAll();
    const stops: (() => Promise<unknown>)[] = [];
    afterAll(async () => {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
    });

    it('host and edge report Redis latency, unacked events, publish lag, leases, streams, stale VMs and forwarded commands', async () => {
      const redis = await startRedis();
      stops.push(() => redis.dispose());
      const qsd = await startQsd({ monitors: ['gw'] });
      stops.push(() => qsd.dispose());
      // A short lease, so renewals show within the test (every second).
      const host = await serveInProcess(hostArgs(redis.url, 'h1', { vm1: qsd.path('gw') }), undefined, { leaseTtlMs: 3000 });
      stops.push(() => host.stop());
      const edge = await serveInProcess(edgeArgs(redis.url));
      stops.push(() => edge.stop());
      const hostUrl = host.gateway.url;
      const edgeUrl = edge.gateway.url;

      const c = await TestClient.connect(edge.gateway.wsUrl);
      stops.push(async () => c.ws.terminate());
      c.send({ type: 'subscribe', id: 's', sub: 'a' });
      await c.next((m) => m.type === 'synced');
      await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 64 });
      await c.next((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'running', 60_000);
      c.send({ type: 'command', id: 'p', vm: 'vm1', job: 'm', action: 'pause', timeoutMs: 20_000 });
      expect(await c.next((m) => m.type === 'result' && m.id === 'p', 30_000)).toMatchObject({ ok: true });

      let h = '';
      await eventually(async () => {
        h = await metricsOf(hostUrl);
        return (sample(h, `${F}lease_renewals_total`, 'result="ok"') ?? 0) >= 1 && sample(h, `${F}unacked_events`) === 0;
      }, 20_000, 'a lease renewal and nothing unacked on the host');
      expect(sample(h, `${F}redis_up`)).toBe(1);
      expect(sample(h, `${F}vms`, 'lease="owned"')).toBe(1);
      expect(sample(h, `${F}vms`, 'lease="not_owned"')).toBe(0);
      expect(sample(h, `${F}lease_renew_calls_total`)).toBeGreaterThanOrEqual(1);
      expect(sample(h, `${F}lease_renewals_total`, 'result="lost"')).toBe(0);
      expect(sample(h, `${F}commands_served_total`)).toBe(1);
      // Every event the host published was timed from its local append to Redis's acknowledgement.
      const published = host.gateway.core.streamPositions().get('vm1')!.offset;
      expect(sample(h, `${F}publish_lag_seconds_count`)).toBeGreaterThanOrEqual(published - 1);
      expect(sample(h, `${F}redis_latency_seconds_count`, 'op="append"')).toBeGreaterThanOrEqual(1);
      // Fleet problems are not QMP's: nothing of the fleet under qmp_*.
      expect(h).not.toMatch(/qmp_\w+\{[^}]*(fleet|redis)/);

      let e = await metricsOf(edgeUrl);
      expect(sample(e, `${F}redis_up`)).toBe(1);
      expect(sample(e, `${F}edge_streams`)).toBe(1);
      expect(sample(e, `${F}edge_stale_vms`)).toBe(0);
      expect(sample(e, `${F}edge_notices_total`)).toBeGreaterThanOrEqual(1);
      expect(sample(e, `${F}edge_loads_total`)).toBeGreaterThanOrEqual(1);
      expect(sample(e, `${F}commands_forwarded_total`, 'result="ok"')).toBe(1);
      expect(sample(e, `${F}commands_outcome_unknown_total`, 'cause="no_ack"')).toBe(0);
      expect(sample(e, `${F}redis_latency_seconds_count`, 'op="command"')).toBe(1);

      // Redis gone: both say so; the host holds what Redis has not acknowledged; every VM is stale on the edge.
      await redis.stop();
      await c.closed;
      await qsd.execute('job-resume', { id: 'm' });
      await eventually(async () => {
        h = await metricsOf(hostUrl);
        return sample(h, `${F}redis_up`) === 0 && (sample(h, `${F}unacked_events`) ?? 0) >= 1;
      }, 20_000, 'the host buffering with Redis down');
      await eventually(async () => {
        e = await metricsOf(edgeUrl);
        return sample(e, `${F}redis_up`) === 0 && sample(e, `${F}edge_stale_vms`) === 1;
      }, 20_000, 'the edge showing Redis down and the VM stale');

      await redis.restart();
      await eventually(async () => {
        h = await metricsOf(hostUrl);
        return sample(h, `${F}redis_up`) === 1 && sample(h, `${F}unacked_events`) === 0;
      }, 30_000, 'the host caught up');
      await eventually(async () => {
        e = await metricsOf(edgeUrl);
        return sample(e, `${F}redis_up`) === 1 && sample(e, `${F}edge_stale_vms`) === 0;
      }, 30_000, 'the edge back');
      expect(sample(e, `${F}edge_resyncs_total`)).toBeGreaterThanOrEqual(1);
    });
  });
});
