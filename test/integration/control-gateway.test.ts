/**
 * Job control through a real gateway (ws on 127.0.0.1:0 and the HTTP mirror), with tokens: the
 * controller is the gateway's commandHandler; the job source and its monitor are in memory.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeJobController, type JobController } from '../../src/gateway/control/index.js';
import { clientSubprotocols } from '../../src/protocol/codes.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { LogRecorder } from '../utils/log-recorder.js';
import { waitUntil } from '../utils/job-scenarios.js';
import { Leftovers } from '../utils/gateway-support.js';
import { testTokens } from '../utils/tokens.js';

const leftovers = new Leftovers();
let controller: JobController | undefined;
afterEach(async () => {
  controller?.close();
  await leftovers.dispose();
});

const tokens = testTokens({ name: 'ops', scopes: ['read', 'control'] }, { name: 'dash', scopes: ['read'] });

async function start() {
  const source = new FakeJobSource();
  source.set({ state: 'running' });
  const log = new LogRecorder();
  controller = makeJobController({ source, control: source.control, logger: log });
  const gateway = await leftovers.gateway({ source, tokens, commandHandler: controller.handle });
  return { source, gateway, log };
}

describe('job control through the gateway', () => {
  it('WebSocket: complete waits for ready; read-only token forbidden; a repeated id answers again without a QMP call', async () => {
    const { source, gateway, log } = await start();
    const ops = await leftovers.client(gateway.wsUrl, { protocols: clientSubprotocols('ops-secret') });
    const dash = await leftovers.client(gateway.wsUrl, { protocols: clientSubprotocols('dash-secret') });

    dash.send({ type: 'command', id: 'd1', vm: 'vm1', job: 'j0', action: 'pause' });
    expect(await dash.next((m) => m.type === 'result')).toMatchObject({ id: 'd1', ok: false, error: { code: 'forbidden' } });

    const complete = { type: 'command', id: 'c1', vm: 'vm1', job: 'j0', action: 'complete' };
    ops.send(complete);
    await waitUntil('the complete to wait in the controller', () => controller!.pendingCommands === 1);
    expect(source.calls).toEqual([]);
    source.set({ state: 'ready', ready: true });
    expect(await ops.next((m) => m.type === 'result')).toMatchObject({ id: 'c1', ok: true, job: { state: 'ready' } });
    ops.send(complete);
    expect(await ops.next((m) => m.type === 'result')).toMatchObject({ id: 'c1', ok: true });
    expect(source.calls.map((c) => c.command)).toEqual(['job-complete']);
    expect(ops.invalid).toEqual([]);
    expect(log.entries.filter((e) => e.message === 'job verb sent').map((e) => e.fields.principal)).toEqual(['ops']);
    // Tokens never reach the log.
    expect(JSON.stringify(log.entries)).not.toContain('secret');
  });

  it('WebSocket: a pending complete is dropped when its connection closes; nothing is sent later', async () => {
    const { source, gateway } = await start();
    const ops = await leftovers.client(gateway.wsUrl, { protocols: clientSubprotocols('ops-secret') });
    ops.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'j0', action: 'complete' });
    await waitUntil('the complete to wait in the controller', () => controller!.pendingCommands === 1);
    await ops.close();
    await waitUntil('the wait to be dropped', () => controller!.pendingCommands === 0);
    source.set({ state: 'ready', ready: true });
    // A complete sent after the ready change goes out after anything that change set off: only it reaches QEMU.
    const later = await leftovers.client(gateway.wsUrl, { protocols: clientSubprotocols('ops-secret') });
    later.send({ type: 'command', id: 'c2', vm: 'vm1', job: 'j0', action: 'complete' });
    expect(await later.next((m) => m.type === 'result')).toMatchObject({ id: 'c2', ok: true });
    expect(source.calls.map((c) => c.command)).toEqual(['job-complete']);
  });

  it('HTTP mirror: same answers, same authorization', async () => {
    const { source, gateway } = await start();
    const post = (action: string, token: string, body: unknown) =>
      fetch(`${gateway.url}/v1/vms/vm1/jobs/j0/${action}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const refused = await post('pause', 'dash-secret', { id: 'h1' });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ id: 'h1', ok: false, error: { code: 'forbidden' } });

    const paused = await post('pause', 'ops-secret', { id: 'h2' });
    expect(paused.status).toBe(200);
    expect(await paused.json()).toMatchObject({ id: 'h2', ok: true, job: { id: 'j0' } });

    const notReady = await post('complete', 'ops-secret', { id: 'h3', when: 'now' });
    expect(notReady.status).toBe(409);
    expect(await notReady.json()).toMatchObject({ ok: false, error: { code: 'not_ready' } });

    // A retried POST (a new TCP connection, same token, same id) answers again without acting twice.
    const retried = await post('pause', 'ops-secret', { id: 'h2' });
    expect(retried.status).toBe(200);
    expect(await retried.json()).toMatchObject({ id: 'h2', ok: true });
    expect(source.calls.map((c) => c.command)).toEqual(['job-pause']);
  });
});
