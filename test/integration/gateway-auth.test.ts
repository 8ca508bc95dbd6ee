/**
 * Authentication at the upgrade (401 before any WebSocket), scopes and per-VM allowlists,
 * Origin allowlist, connections per token, and the loopback-only rule without tokens.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { TokenAuthenticator } from '../../src/gateway/auth.js';
import { clientSubprotocols, SUBPROTOCOL } from '../../src/protocol/codes.js';
import { startGateway } from '../../src/gateway/server.js';
import { Leftovers, TestClient } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { bearer, sha256Hex, testTokens } from '../utils/tokens.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

const tokens = testTokens({ name: 'ops', scopes: ['read', 'control'] }, { name: 'dash', scopes: ['read'], vms: ['vm1'] });

async function gatewayWithTokens(extra: Parameters<Leftovers['gateway']>[0] extends infer O ? Partial<O> : never = {}) {
  const source = new FakeJobSource(['vm1', 'vm2']);
  source.transition('vm1', 'j1', 'running');
  source.transition('vm2', 'j2', 'running');
  const gateway = await leftovers.gateway({ source, tokens, ...extra });
  return { source, gateway };
}

async function refusedStatus(url: string, options: Parameters<typeof TestClient.connect>[1] = {}): Promise<number | undefined> {
  try {
    const client = await TestClient.connect(url, options);
    client.ws.terminate();
    return undefined;
  } catch (error) {
    return (error as { status?: number }).status;
  }
}

describe('gateway auth', () => {
  it('refuses the upgrade with 401 without a token or with a wrong one', async () => {
    const { gateway } = await gatewayWithTokens();
    expect(await refusedStatus(gateway.wsUrl)).toBe(401);
    expect(await refusedStatus(gateway.wsUrl, { headers: { Authorization: 'Bearer wrong' } })).toBe(401);
    expect(await refusedStatus(gateway.wsUrl, { protocols: ['bearer.wrong'] })).toBe(401);
    const res = await fetch(`${gateway.url}/v1/jobs`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/blockjob_gateway_refused_total\{status="401"\} 4/);
  });

  it('accepts a header token and a browser subprotocol token, and never echoes the token', async () => {
    const { gateway } = await gatewayWithTokens();
    const byHeader = await leftovers.client(gateway.wsUrl, bearer('ops-secret'));
    expect((await byHeader.next()).scopes).toEqual(['read', 'control']);
    const byProtocol = await leftovers.client(gateway.wsUrl, { protocols: clientSubprotocols('ops-secret') });
    expect(byProtocol.ws.protocol).toBe(SUBPROTOCOL);
    expect((await byProtocol.next()).vms.map((v: { vm: string }) => v.vm)).toEqual(['vm1', 'vm2']);
    // Offering only the token entry: the server selects none, so a browser (and ws) fails the handshake.
    await expect(TestClient.connect(gateway.wsUrl, { protocols: ['bearer.ops-secret'] })).rejects.toThrow(/subprotocol/i);
  });

  it('limits a read token to its VMs: welcome, snapshot, subscribe and /v1/jobs', async () => {
    const { source, gateway } = await gatewayWithTokens();
    const client = await leftovers.client(gateway.wsUrl, bearer('dash-secret'));
    const welcome = await client.next();
    expect(welcome.vms.map((v: { vm: string }) => v.vm)).toEqual(['vm1']);
    expect(welcome.scopes).toEqual(['read']);

    client.send({ type: 'subscribe', id: '1', sub: 'x', filter: { vms: ['vm2'] } });
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ id: '1', code: 'forbidden' });
    client.send({ type: 'subscribe', id: '2', sub: 'all' });
    const subscribed = await client.next((m) => m.type === 'subscribed');
    expect(Object.keys(subscribed.streams)).toEqual(['vm1']);
    await client.next((m) => m.type === 'synced');
    expect(client.ofType('state').map((m) => m.vm)).toEqual(['vm1']);
    source.transition('vm2', 'j2', 'ready');
    source.transition('vm1', 'j1', 'ready');
    await client.next((m) => m.type === 'event');
    expect(client.ofType('event').map((m) => m.vm)).toEqual(['vm1']);

    const jobs = (await (await fetch(`${gateway.url}/v1/jobs`, bearer('dash-secret'))).json()) as { vms: { vm: string }[] };
    expect(jobs.vms.map((v) => v.vm)).toEqual(['vm1']);
    expect(client.invalid).toEqual([]);
  });

  it('passes the principal to the command handler (a read token reaches it as read-only)', async () => {
    const seen: string[] = [];
    const { gateway } = await gatewayWithTokens({
      commandHandler: async (message, ctx) => {
        seen.push(`${ctx.principal.name}:${[...ctx.principal.scopes].join('+')}`);
        return ctx.principal.scopes.has('control')
          ? { type: 'result', id: message.id, ok: false, error: { code: 'unknown_job', message: 'no such job' } }
          : { type: 'result', id: message.id, ok: false, error: { code: 'forbidden', message: 'read-only token' } };
      },
    });
    const reader = await leftovers.client(gateway.wsUrl, bearer('dash-secret'));
    reader.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'j1', action: 'complete' });
    expect(await reader.next((m) => m.type === 'result')).toMatchObject({ id: 'c1', ok: false, error: { code: 'forbidden' } });
    expect(seen).toEqual(['dash:read']);
  });

  it('without tokens, browsers may connect only from the gateway\'s own origin (its dashboard)', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']) });
    const own = new URL(gateway.url).origin;
    expect(await refusedStatus(gateway.wsUrl, { headers: { Origin: 'http://evil.example' } })).toBe(403);
    await leftovers.client(gateway.wsUrl, { headers: { Origin: own } });
    await leftovers.client(gateway.wsUrl); // no Origin: not a browser
  });

  it('enforces the Origin allowlist and the connections-per-token limit', async () => {
    const { gateway } = await gatewayWithTokens({ allowedOrigins: ['http://good.example'], maxConnectionsPerToken: 2 });
    const auth = { Authorization: 'Bearer ops-secret' };
    expect(await refusedStatus(gateway.wsUrl, { headers: { ...auth, Origin: 'http://evil.example' } })).toBe(403);
    await leftovers.client(gateway.wsUrl, { headers: { ...auth, Origin: 'http://good.example' } });
    const second = await leftovers.client(gateway.wsUrl, { headers: auth });
    // Refused at the upgrade (PROTOCOL.md): HTTP 429, no WebSocket, no welcome.
    expect(await refusedStatus(gateway.wsUrl, { headers: auth })).toBe(429);
    // A freed slot is usable again.
    second.ws.terminate();
    await second.closed;
    await expect.poll(() => gateway.core.connectionsOf('ops'), { timeout: 10_000 }).toBe(1);
    await (await leftovers.client(gateway.wsUrl, { headers: auth })).next((m) => m.type === 'welcome');
    // Another token is not affected.
    const other = await leftovers.client(gateway.wsUrl, bearer('dash-secret'));
    await other.next((m) => m.type === 'welcome');
  });

  it('without tokens refuses to listen on a non-loopback address unless insecure', async () => {
    const source = new FakeJobSource(['vm1']);
    await expect(startGateway({ source, listen: { host: '0.0.0.0', port: 0 } })).rejects.toMatchObject({ code: 'GW_ERR_CONFIG' });
    const insecure = await leftovers.gateway({ source, listen: { host: '0.0.0.0', port: 0 }, insecure: true });
    expect(insecure.port).toBeGreaterThan(0);
    const withTokens = await leftovers.gateway({ source, listen: { host: '0.0.0.0', port: 0 }, tokens });
    expect(withTokens.port).toBeGreaterThan(0);
  });
});

describe('TokenAuthenticator', () => {
  it('rejects malformed token files with the failing path', () => {
    expect(() => TokenAuthenticator.fromJson({ tokens: [{ name: 'a', sha256: 'zz', scopes: ['read'] }] }, 't.json')).toThrow(/t\.json: \/tokens\/0\/sha256/);
    expect(() => TokenAuthenticator.fromJson({ tokens: [{ name: 'a', sha256: sha256Hex('x'), scopes: ['admin'] }] })).toThrow(/\/tokens\/0\/scopes/);
    expect(() => TokenAuthenticator.fromJson({})).toThrow(/\/tokens/);
  });
});
