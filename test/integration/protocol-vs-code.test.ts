/**
 * Issue 15 "also seen": where PROTOCOL.md and the code disagreed, each as a test that failed on the
 * old code. The per-token connection limit is an HTTP 429 at the upgrade (it was a 101 then close
 * 4429), `synced` carries the VM's status, and the HTTP command mirror bounds the commands a token
 * has in flight (it accepted any number).
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeWebSocket } from '../../src/client/node.js';
import type { CommandMessage, ResultMessage } from '../../src/generated/schema-types.js';
import { Leftovers } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { bearer, testTokens } from '../utils/tokens.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

const tokens = testTokens({ name: 'ops', scopes: ['read', 'control'] }, { name: 'other', scopes: ['read', 'control'] });

/** The raw answer to an upgrade request: status line and headers, up to the blank line. */
function rawUpgradeHead(port: number, token: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', reject);
    socket.once('connect', () =>
      socket.write(
        [
          'GET /v1/ws HTTP/1.1',
          `Host: 127.0.0.1:${port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
          'Sec-WebSocket-Version: 13',
          `Authorization: Bearer ${token}`,
          '',
          '',
        ].join('\r\n'),
      ),
    );
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(text.slice(0, end));
      }
    });
  });
}

describe('the per-token connection limit is refused at the upgrade', () => {
  it('answers HTTP 429 with Retry-After and opens no WebSocket; the client library backs off as after 4429', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), tokens, maxConnectionsPerToken: 1 });
    const first = await leftovers.client(gateway.wsUrl, bearer('ops-secret'));
    await first.next((m) => m.type === 'welcome');

    const head = await rawUpgradeHead(gateway.port, 'ops-secret');
    expect(head).toMatch(/^HTTP\/1\.1 429 /);
    expect(head).toMatch(/\r\nRetry-After: \d+/i);
    expect(gateway.core.connectionsOf('ops')).toBe(1);
    // The other token is not affected.
    expect(await rawUpgradeHead(gateway.port, 'other-secret')).toMatch(/^HTTP\/1\.1 101 /);

    // The Node client sees it as a close 4429, so it waits the long backoff (closeAction).
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      const ws = nodeWebSocket(gateway.wsUrl, ['blockjob-gateway.v1', 'bearer.ops-secret']);
      ws.onclose = (ev) => resolve(ev);
    });
    expect(closed.code).toBe(4429);
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/blockjob_gateway_refused_total\{status="429"\} 2/);
  });
});

describe('synced carries the VM status, as PROTOCOL.md shows', () => {
  it('names each stream status at the cut, snapshot and recovered alike', async () => {
    const source = new FakeJobSource(['vm1', 'vm2']);
    source.transition('vm1', 'j1', 'running');
    source.setStatus('vm2', 'disconnected');
    const gateway = await leftovers.gateway({ source });
    const client = await leftovers.client(gateway.wsUrl);
    const welcome = await client.next((m) => m.type === 'welcome');
    client.send({ type: 'subscribe', id: '1', sub: 'a' });
    await client.until((all) => all.filter((m) => m.type === 'synced' && m.sub === 'a').length === 2);
    const statusOf = (sub: string) => Object.fromEntries(client.ofType('synced', sub).map((m) => [m.vm, m.status]));
    expect(statusOf('a')).toEqual({ vm1: 'connected', vm2: 'disconnected' });

    const since = Object.fromEntries(welcome.vms.map((v: { vm: string; epoch: string; offset: number }) => [v.vm, { epoch: v.epoch, offset: v.offset }]));
    source.setStatus('vm2', 'connected');
    client.send({ type: 'subscribe', id: '2', sub: 'b', since });
    await client.until((all) => all.filter((m) => m.type === 'synced' && m.sub === 'b').length === 2);
    expect(client.ofType('subscribed', 'b')[0]!.streams.vm1.mode).toBe('recovered');
    expect(statusOf('b')).toEqual({ vm1: 'connected', vm2: 'connected' });
    expect(client.invalid).toEqual([]);
  });
});

describe('the HTTP command mirror bounds the commands a token has in flight', () => {
  it('answers 429 too_many_commands beyond the limit, per token, and admits again once answers went out', async () => {
    const source = new FakeJobSource(['vm1']);
    source.transition('vm1', 'j1', 'running');
    const release: (() => void)[] = [];
    let handled = 0;
    const gateway = await leftovers.gateway({
      source,
      tokens,
      maxCommandsInFlight: 3,
      commandHandler: (message: CommandMessage): Promise<ResultMessage> => {
        handled++;
        return new Promise((resolve) => release.push(() => resolve({ type: 'result', id: message.id, ok: true, job: source.job('vm1', 'j1')! })));
      },
    });
    const post = (token: string, id: string) =>
      fetch(`${gateway.url}/v1/vms/vm1/jobs/j1/pause`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ id }),
      });
    const pending = [post('ops-secret', 'a1'), post('ops-secret', 'a2'), post('ops-secret', 'a3')];
    await expect.poll(() => handled, { timeout: 10_000 }).toBe(3);

    const refused = await post('ops-secret', 'a4');
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ type: 'result', id: 'a4', ok: false, error: { code: 'too_many_commands' } });
    expect(handled).toBe(3);

    // A retry of an id in flight is the controller's business (idempotency), not a new command.
    pending.push(post('ops-secret', 'a1'));
    // Another token has its own budget.
    pending.push(post('other-secret', 'b1'));
    await expect.poll(() => handled, { timeout: 10_000 }).toBe(5);

    for (const r of release.splice(0)) r();
    for (const res of await Promise.all(pending)) expect(res.status).toBe(200);
    const again = post('ops-secret', 'a5');
    await expect.poll(() => handled, { timeout: 10_000 }).toBe(6);
    for (const r of release.splice(0)) r();
    expect((await again).status).toBe(200);
  });
});
