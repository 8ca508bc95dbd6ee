/** The whole path on one real qemu-storage-daemon: its monitor `gw` followed as vm1, a gateway on loopback. */
import { expect } from 'vitest';
import { startGateway, type RunningGateway } from '../../src/gateway/server.js';
import { JobRegistry } from '../../src/jobs/registry.js';
import { TestClient } from './gateway-support.js';
import { startQsd, type Qsd } from './qsd.js';

/** What a test disposes of after each case, last first. */
export type Disposers = (() => Promise<unknown>)[];

/** Started and ready (the monitor connected: /readyz 200); everything is pushed to `disposers`. */
export async function startQemuGateway(disposers: Disposers): Promise<{ qsd: Qsd; gateway: RunningGateway; registry: JobRegistry }> {
  const qsd = await startQsd({ monitors: ['gw'] });
  disposers.push(() => qsd.dispose());
  const registry = new JobRegistry({ activePollMs: 200 });
  disposers.push(() => registry.close());
  registry.add('vm1', `unix:${qsd.path('gw')}`);
  const gateway = await startGateway({ source: registry, listen: { host: '127.0.0.1', port: 0 }, defaultMetrics: false });
  disposers.push(() => gateway.close({ graceMs: 200 }));
  await expect.poll(async () => (await fetch(`${gateway.url}/readyz`)).status, { timeout: 30_000, interval: 100 }).toBe(200);
  return { qsd, gateway, registry };
}

/** A WebSocket client of the gateway, terminated with the rest. */
export async function connectClient(gateway: RunningGateway, disposers: Disposers): Promise<TestClient> {
  const client = await TestClient.connect(gateway.wsUrl);
  disposers.push(async () => client.ws.terminate());
  return client;
}
