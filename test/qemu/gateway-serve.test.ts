/**
 * `blockjob-gateway serve` in-process against a real qemu-storage-daemon: flags to a running
 * gateway with job control, a race-free complete over the WebSocket, and a drain that closes
 * clients with 1001 and returns exit code 0.
 */
import { afterEach, expect, it } from 'vitest';
import { serve } from '../../src/cli/serve.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { TestClient } from '../utils/gateway-support.js';
import { INFO_SCHEMA, schemaRegistry } from '../../src/protocol/schemas.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';

describeQemu('serve (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  const disposers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const dispose of disposers.splice(0).reverse()) await dispose().catch(() => {});
  });

  it('serves a VM, completes a mirror with when=ready, and drains with 1001 on stop', async () => {
    const qsd = await startQsd({ monitors: ['gw'] });
    disposers.push(() => qsd.dispose());
    const stop = new AbortController();
    let gateway!: RunningGateway;
    let exitCode!: Promise<number>;
    const listening = new Promise<void>((resolve) => {
      const exit = serve(['--qmp', `vm1=unix:${qsd.path('gw')}`, '--listen', '127.0.0.1:0', '--log-level', 'silent', '--log-format', 'json'], {
        signal: stop.signal,
        out: () => {},
        onListening: (g) => {
          gateway = g;
          resolve();
        },
      });
      disposers.push(async () => {
        stop.abort();
        return exit;
      });
      exitCode = exit;
    });
    await listening;

    // /v1/info exists in serve mode too (the dashboard asks for it on every load): real QEMU's version.
    await expect.poll(async () => ((await (await fetch(`${gateway.url}/v1/info`)).json()) as { vms: { qemu: string | null }[] }).vms[0]?.qemu, { timeout: 30_000 }).toMatch(/^\d+\.\d+\.\d+$/);
    const info = (await (await fetch(`${gateway.url}/v1/info`)).json()) as Record<string, unknown>;
    const validate = schemaRegistry().validator(INFO_SCHEMA);
    expect([validate(info), validate.errors ?? null]).toEqual([true, null]);
    expect(info).toMatchObject({ gateway: { name: 'blockjob-gateway', protocol: 1 }, simulated: false, demo: false, vms: [{ vm: 'vm1', status: 'connected', source: 'qmp' }] });

    const client = await TestClient.connect(gateway.wsUrl);
    disposers.push(async () => client.ws.terminate());
    client.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
    await client.next((m) => m.type === 'synced');
    await startMirror(qsd, qsd, { jobId: 'm', speed: 8 * MiB, dataMiB: 4 });
    await client.next((m) => m.type === 'event' && m.job.id === 'm' && m.transition.to === 'created', 60_000);
    // Sent before the job is ready: the gateway holds it until the engine says ready.
    client.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'm', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
    const result = await client.next((m) => m.type === 'result' && m.id === 'c1', 60_000);
    expect(result).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
    const ready = client.ofType('event').find((m) => m.transition.to === 'ready');
    expect(ready).toBeDefined();

    stop.abort();
    expect(await client.closed).toBe(1001);
    expect(await exitCode).toBe(0);
    expect(client.invalid).toEqual([]);
  });

  it('refuses a non-loopback listen address without tokens', async () => {
    await expect(serve(['--qmp', 'vm1=unix:/nonexistent.sock', '--listen', '0.0.0.0:0', '--log-level', 'silent'], { out: () => {} })).rejects.toMatchObject({
      code: 'GW_ERR_CONFIG',
      message: expect.stringMatching(/non-loopback.*--insecure/),
    });
  });
});
