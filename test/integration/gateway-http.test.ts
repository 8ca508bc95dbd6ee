/**
 * HTTP endpoints on the gateway port: health, readiness, metrics, the job snapshot, the command
 * mirror, and the static dashboard (content types, no path traversal).
 */
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { JOBS_SNAPSHOT_SCHEMA, schemaRegistry } from '../../src/protocol/schemas.js';
import { Leftovers } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());
const dashboardDir = fileURLToPath(new URL('../fixtures/dashboard/', import.meta.url));

/** A raw GET, so paths like /../ reach the server un-normalized. */
function rawGet(url: string, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'GET', path }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('gateway HTTP endpoints', () => {
  it('serves /healthz, /readyz (503 while a monitor is down), /v1/jobs and /metrics', async () => {
    const source = new FakeJobSource(['vm1', 'vm2']);
    source.transition('vm1', 'j0', 'running');
    const gateway = await leftovers.gateway({ source, defaultMetrics: true });
    expect(await (await fetch(`${gateway.url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
    source.setStatus('vm2', 'disconnected');
    const notReady = await fetch(`${gateway.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: 'not_ready', monitorsDown: ['vm2'] });

    const jobs = (await (await fetch(`${gateway.url}/v1/jobs`)).json()) as { vms: { vm: string; epoch: string }[] };
    const validJobsBody = schemaRegistry().validator(JOBS_SNAPSHOT_SCHEMA);
    expect(validJobsBody(jobs), JSON.stringify(validJobsBody.errors)).toBe(true);
    expect(jobs.vms).toEqual([
      // j0 started before the gateway: it is in the snapshot, but no stream event was numbered for it.
      { vm: 'vm1', epoch: expect.any(String), offset: 0, status: 'connected', jobs: [expect.objectContaining({ id: 'j0', state: 'running' })] },
      { vm: 'vm2', epoch: expect.any(String), offset: 1, status: 'disconnected', jobs: [] },
    ]);

    const client = await leftovers.client(gateway.wsUrl);
    client.send({ type: 'subscribe', id: '1', sub: 'a', since: { vm1: { epoch: jobs.vms[0]!.epoch, offset: 0 }, vm2: { epoch: 'gone', offset: 3 } } });
    await client.next((m) => m.type === 'synced' && m.vm === 'vm2');
    source.transition('vm1', 'j0', 'ready');
    await client.next((m) => m.type === 'event');
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toContain('blockjob_gateway_ws_connections 1');
    expect(metrics).toContain('blockjob_gateway_ws_subscriptions 1');
    expect(metrics).toMatch(/blockjob_gateway_ws_messages_sent_total\{type="event"\} 1/);
    expect(metrics).toMatch(/blockjob_gateway_ws_bytes_sent_total\{type="welcome"\} \d+/);
    expect(metrics).toContain('blockjob_gateway_ws_resumes_total{mode="recovered"} 1');
    expect(metrics).toContain('blockjob_gateway_ws_resumes_total{mode="snapshot"} 1');
    expect(metrics).toContain('blockjob_gateway_monitor_up{vm="vm2"} 0');
    expect(metrics).toMatch(/blockjob_gateway_delivery_lag_seconds_count 1/);
    expect(metrics).toContain('blockjob_gateway_process_cpu_seconds_total');
    await client.close();
    await expect.poll(async () => (await (await fetch(`${gateway.url}/metrics`)).text()).includes('blockjob_gateway_ws_disconnects_total{code="1000"} 1')).toBe(true);
  });

  it('/metrics covers VMs added after start, with their commands, problems and jobs by VM, type and state', async () => {
    const source = new FakeJobSource(['vm1']);
    const gateway = await leftovers.gateway({ source, defaultMetrics: false });
    source.addVm('vm3');
    source.transition('vm3', 'm1', 'running');
    source.transition('vm3', 'm2', 'ready');
    source.transition('vm3', 'b1', 'running', { type: 'backup' });
    source.setStatus('vm3', 'disconnected');
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toContain('blockjob_gateway_monitor_up{vm="vm3"} 0');
    expect(metrics).toContain('blockjob_gateway_qmp_commands_total{vm="vm3"} 0');
    expect(metrics).toContain('blockjob_gateway_jobs{vm="vm3",type="mirror",state="running"} 1');
    expect(metrics).toContain('blockjob_gateway_jobs{vm="vm3",type="mirror",state="ready"} 1');
    expect(metrics).toContain('blockjob_gateway_jobs{vm="vm3",type="backup",state="running"} 1');
    expect(metrics).not.toContain('blockjob_gateway_jobs{vm="vm1"');
  });

  it('mirrors job control at POST /v1/vms/{vm}/jobs/{job}/{action}', async () => {
    const calls: unknown[] = [];
    const gateway = await leftovers.gateway({
      source: new FakeJobSource(['vm1']),
      commandHandler: async (message) => {
        calls.push(message);
        if (message.job === 'missing') return { type: 'result', id: message.id, ok: false, error: { code: 'unknown_job', message: 'no job missing' } };
        if (message.action === 'complete') return { type: 'result', id: message.id, ok: false, error: { code: 'not_ready', message: 'not ready' } };
        return { type: 'result', id: message.id, ok: false, error: { code: 'timeout', message: 'slow' } };
      },
    });
    const post = (path: string, body?: string, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      fetch(`${gateway.url}${path}`, { method: 'POST', headers, ...(body !== undefined ? { body } : {}) });
    // What a foreign web page in a browser on this host could send: refused before the handler runs.
    expect((await post('/v1/vms/vm1/jobs/j0/cancel', '{}', { 'content-type': 'text/plain' })).status).toBe(415);
    expect((await post('/v1/vms/vm1/jobs/j0/cancel', '{}', { 'content-type': 'application/json', origin: 'http://evil.example' })).status).toBe(403);
    expect(calls).toHaveLength(0);
    const notReady = await post('/v1/vms/vm1/jobs/j0/complete', JSON.stringify({ when: 'now', id: 'h1' }));
    expect(notReady.status).toBe(409);
    expect(await notReady.json()).toMatchObject({ type: 'result', id: 'h1', ok: false, error: { code: 'not_ready' } });
    expect(calls[0]).toMatchObject({ type: 'command', id: 'h1', vm: 'vm1', job: 'j0', action: 'complete', when: 'now' });
    expect((await post('/v1/vms/vm1/jobs/missing/pause')).status).toBe(404);
    expect((await post('/v1/vms/vm1/jobs/j0/cancel', '{}')).status).toBe(504);
    const bad = await post('/v1/vms/vm1/jobs/j0/explode', '{}');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ ok: false, error: { code: 'invalid_message' } });
    expect((await post('/v1/vms/vm1/jobs/j0/cancel', 'nope')).status).toBe(400);
    expect((await fetch(`${gateway.url}/v1/vms/vm1/jobs/j0/cancel`)).status).toBe(405);
    expect(calls).toHaveLength(3);
  });

  it('serves the dashboard with content types and never outside its directory', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), dashboardDir });
    const index = await rawGet(gateway.url, '/');
    expect(index).toMatchObject({ status: 200, type: 'text/html; charset=utf-8' });
    expect(index.body).toContain('<title>t</title>');
    expect(await rawGet(gateway.url, '/assets/app.js')).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8' });
    expect(await rawGet(gateway.url, '/assets/app.css')).toMatchObject({ status: 200, type: 'text/css; charset=utf-8' });
    for (const path of ['/../gateway-http.test.ts', '/assets/../../gateway-support.ts', '/%2e%2e/gateway-support.ts', '/..%2f..%2fpackage.json', '/assets/%00x', '/nope.html']) {
      const res = await rawGet(gateway.url, path);
      expect([400, 404], path).toContain(res.status);
      expect(res.body).not.toContain('import');
    }
    expect((await rawGet(gateway.url, '/v1/ws')).status).toBe(426);
  });
});
