// Fleet mode with an ACL user: it works, and the password never appears in logs, /metrics or /v1/info.
import { afterAll, expect, it } from 'vitest';
import { startRedis } from '../../src/lab/redis.js';
import { TestClient } from '../utils/gateway-support.js';
import { describeBuilt, runCli } from '../utils/built-cli.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftovers, startQsd } from '../utils/qsd.js';
import { describeRedis } from '../utils/redis-gate.js';
import { serveProcess } from './fleet-support.js';

const PASSWORD = 'pw-7f3a9c-never-shown';

describeRedis('fleet security', () => {
  describeQemu('real qemu-storage-daemon', () => {
    describeBuilt('gateways as processes', () => {
      afterAll(cleanupLeftovers);

      it('an ACL user works, a wrong password is refused, and the password is in no log line, metric or /v1/info', async () => {
        const redis = await startRedis({ user: { name: 'gateway', password: PASSWORD } });
        const qsd = await startQsd({ monitors: ['gw'] });
        const env = { REDIS_URL: redis.url };
        const host = await serveProcess(['--redis', 'env:REDIS_URL', '--host-id', 'h1', '--qmp', `vm1=unix:${qsd.path('gw')}`, '--log-level', 'debug'], env);
        const edge = await serveProcess(['--redis', redis.url, '--edge', '--log-level', 'debug']);
        const client = await TestClient.connect(edge.wsUrl);
        client.send({ type: 'subscribe', id: 's', sub: 'a' });
        const subscribed = await client.next((m) => m.type === 'subscribed');
        expect(Object.keys(subscribed.streams)).toEqual(['vm1']);
        client.ws.terminate();

        for (const gateway of [host, edge]) {
          for (const path of ['/v1/info', '/metrics', '/readyz']) {
            const text = await (await fetch(`${gateway.url}${path}`)).text();
            expect(text, path).not.toContain(PASSWORD);
          }
        }
        const logs = [...host.run.stdout, ...host.run.stderr, ...edge.run.stdout, ...edge.run.stderr].join('\n');
        expect(logs).toContain('gateway:***@');
        expect(logs).not.toContain(PASSWORD);

        // A wrong password: the edge does not start, and says why without the password.
        const wrong = redis.url.replace(encodeURIComponent(PASSWORD), 'wrong-password');
        const refused = runCli(['serve', '--redis', wrong, '--edge', '--listen', '127.0.0.1:0', '--log-format', 'json']);
        expect(await refused.exited).not.toBe(0);
        const said = [...refused.stdout, ...refused.stderr].join('\n');
        expect(said).toMatch(/WRONGPASS|invalid username-password/);
        expect(said).not.toContain('wrong-password');
        await qsd.dispose();
        await redis.dispose();
      });
    });
  });
});
