/**
 * Issue 15, gateway side: each defect found by attacking the gateway, as a test that failed before
 * its fix. Refused upgrades with trailing bytes (descriptors, SIGTERM), DNS rebinding on a
 * tokenless loopback gateway, a control-only token, VM names that are Object.prototype keys, a
 * malformed percent-escape in a command URL, and the HTTP command in-flight limit.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '../../src/log.js';
import { Leftovers, TestClient } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { waitFor } from '../utils/wait-for.js';
import { bearer, testTokens } from '../utils/tokens.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

const openFds = (): number => readdirSync('/proc/self/fd').length;


/** A raw upgrade request; resolves with the status line once the refusal arrives, and keeps the socket open. */
function rawUpgrade(port: number, path: string, headers: Record<string, string>): Promise<{ socket: Socket; status: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', () => {});
    socket.once('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        ...('Host' in headers ? [] : [`Host: 127.0.0.1:${port}`]),
        'Upgrade: websocket',
        'Connection: Upgrade',
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
        'Sec-WebSocket-Version: 13',
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match) {
        socket.removeAllListeners('data');
        resolve({ socket, status: Number(match[1]) });
      }
    });
    socket.once('close', () => reject(new Error(`closed before a status line: ${JSON.stringify(text)}`)));
  });
}

function recordingLogger(): Logger & { errors: unknown[] } {
  const errors: unknown[] = [];
  const ignore = (): void => {};
  return { debug: ignore, info: ignore, warn: ignore, error: (fields, message) => errors.push({ fields, message }), errors };
}

describe('refused upgrades with trailing bytes (defect 1)', () => {
  it('keeps descriptors flat and lets the gateway close, for 401, 403 and 404', async () => {
    const source = new FakeJobSource(['vm1']);
    const tokens = testTokens({ name: 'ops', scopes: ['read', 'control'] });
    const gateway = await leftovers.gateway({ source, tokens, allowedOrigins: ['http://ok.example'] });
    const baseline = openFds();
    const kinds: [string, Record<string, string>, number][] = [
      ['/v1/ws', { Authorization: 'Bearer wrong' }, 401],
      ['/v1/ws', { Authorization: 'Bearer ops-secret', Origin: 'http://evil.example' }, 403],
      ['/elsewhere', { Authorization: 'Bearer ops-secret' }, 404],
    ];
    for (let round = 0; round < 20; round++) {
      for (const [path, headers, status] of kinds) {
        const { socket, status: got } = await rawUpgrade(gateway.port, path, headers);
        expect(got).toBe(status);
        // The client keeps talking after the refusal, then goes away.
        socket.write('trailing bytes after the refusal\r\n');
        socket.destroy();
      }
    }
    await waitFor(() => openFds() <= baseline + 3, () => `descriptors back to ~${baseline} (now ${openFds()})`);
    // The refusal closes the socket itself, even if the client never hangs up.
    const { socket } = await rawUpgrade(gateway.port, '/v1/ws', { Authorization: 'Bearer wrong' });
    socket.write('x');
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.resume();
    await closed;
    const started = Date.now();
    await gateway.close({ graceMs: 200 });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('DNS rebinding on a tokenless loopback gateway (defect 3)', () => {
  const rebound = (port: number) => ({ Host: `rebind.attacker.example:${port}`, Origin: `http://rebind.attacker.example:${port}` });

  it('refuses a foreign Host on the upgrade and on HTTP, with or without Origin', async () => {
    const source = new FakeJobSource(['vm1']);
    source.transition('vm1', 'j1', 'running');
    let commands = 0;
    const gateway = await leftovers.gateway({
      source,
      commandHandler: async (message) => {
        commands++;
        return { type: 'result', id: message.id, ok: true, job: source.job('vm1', 'j1')! };
      },
    });
    const { socket, status } = await rawUpgrade(gateway.port, '/v1/ws', rebound(gateway.port));
    socket.destroy();
    expect(status).toBe(403);
    const post = await httpRequest(gateway.port, 'POST', '/v1/vms/vm1/jobs/j1/set-speed', { ...rebound(gateway.port), 'Content-Type': 'application/json' }, '{"speed":1}');
    expect(post.status).toBe(403);
    // Same-origin GETs from a rebound page carry no Origin at all.
    const get = await httpRequest(gateway.port, 'GET', '/v1/jobs', { Host: `rebind.attacker.example:${gateway.port}` });
    expect(get.status).toBe(403);
    expect(commands).toBe(0);
  });

  it('accepts the names it serves: the listen address, localhost, and names configured explicitly', async () => {
    const source = new FakeJobSource(['vm1']);
    const gateway = await leftovers.gateway({ source, allowedHosts: ['gateway.internal'] });
    for (const host of [`127.0.0.1:${gateway.port}`, `localhost:${gateway.port}`, 'localhost', `gateway.internal:${gateway.port}`, `LOCALHOST:${gateway.port}`]) {
      expect((await httpRequest(gateway.port, 'GET', '/v1/jobs', { Host: host })).status, host).toBe(200);
    }
    const origin = `http://localhost:${gateway.port}`;
    const ok = await rawUpgrade(gateway.port, '/v1/ws', { Host: `localhost:${gateway.port}`, Origin: origin });
    ok.socket.destroy();
    expect(ok.status).toBe(101);
    const client = await leftovers.client(`ws://localhost:${gateway.port}/v1/ws`);
    expect((await client.next()).type).toBe('welcome');
  });

  it('leaves a gateway with tokens to its tokens', async () => {
    const source = new FakeJobSource(['vm1']);
    const tokens = testTokens({ name: 'ops', scopes: ['read'] });
    const gateway = await leftovers.gateway({ source, tokens });
    const res = await httpRequest(gateway.port, 'GET', '/v1/jobs', { Host: 'gateway.example.org', Authorization: 'Bearer ops-secret' });
    expect(res.status).toBe(200);
  });
});

describe('a control-only token (defect 4: control does not imply read)', () => {
  it('can command the VMs it may control, but not read snapshots or subscribe', async () => {
    const source = new FakeJobSource(['vm1']);
    source.transition('vm1', 'j1', 'running');
    const tokens = testTokens({ name: 'pivot', scopes: ['control'] }, { name: 'both', scopes: ['read', 'control'] });
    const gateway = await leftovers.gateway({
      source,
      tokens,
      commandHandler: async (message) => ({ type: 'result', id: message.id, ok: true, job: source.job('vm1', 'j1')! }),
    });
    const jobs = await fetch(`${gateway.url}/v1/jobs`, bearer('pivot-secret'));
    expect(jobs.status).toBe(403);
    expect(((await jobs.json()) as { error: string }).error).toMatch(/read scope/);
    const both = await fetch(`${gateway.url}/v1/jobs`, bearer('both-secret'));
    expect(both.status).toBe(200);

    const client = await leftovers.client(gateway.wsUrl, bearer('pivot-secret'));
    const welcome = await client.next();
    expect(welcome).toMatchObject({ type: 'welcome', scopes: ['control'], vms: [] });
    client.send({ type: 'subscribe', id: 's1', sub: 'all' });
    expect(await client.next((m) => m.id === 's1')).toMatchObject({ type: 'error', code: 'forbidden' });
    client.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'j1', action: 'pause' });
    expect(await client.next((m) => m.id === 'c1')).toMatchObject({ type: 'result', ok: true });
    const post = await fetch(`${gateway.url}/v1/vms/vm1/jobs/j1/pause`, {
      method: 'POST',
      headers: { Authorization: 'Bearer pivot-secret', 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(post.status).toBe(200);
    expect(client.ofType('state')).toEqual([]);
    expect(client.ofType('event')).toEqual([]);
  });
});

describe('VM names that are Object.prototype keys (defect 6)', () => {
  it('resumes and snapshots them like any other name', async () => {
    const names = ['toString', 'constructor', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', 'vm1'];
    const source = new FakeJobSource(names);
    for (const vm of names) source.transition(vm, 'j1', 'running');
    const gateway = await leftovers.gateway({ source });
    const client = await leftovers.client(gateway.wsUrl);
    const welcome = await client.next();
    const at = new Map<string, { epoch: string; offset: number }>(welcome.vms.map((v: { vm: string; epoch: string; offset: number }) => [v.vm, { epoch: v.epoch, offset: v.offset }]));
    client.send({ type: 'subscribe', id: '1', sub: 'a', since: {} });
    const fresh = await client.next((m) => m.type === 'subscribed');
    for (const vm of names) expect(fresh.streams[vm], vm).toEqual({ mode: 'snapshot', ...at.get(vm) });
    const since = Object.fromEntries(names.map((vm) => [vm, at.get(vm)]));
    client.send({ type: 'subscribe', id: '2', sub: 'b', since });
    const resumed = await client.next((m) => m.type === 'subscribed' && m.sub === 'b');
    for (const vm of names) expect(resumed.streams[vm].mode, vm).toBe('recovered');
  });

  it('fuzz: any valid VM name subscribes with since {} as a snapshot without a reset reason', async () => {
    const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).filter((k) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(k));
    const name = fc.oneof(fc.constantFrom(...prototypeKeys), fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/));
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(name, { minLength: 1, maxLength: 6 }), async (vms) => {
        const source = new FakeJobSource(vms);
        const gateway = await leftovers.gateway({ source });
        try {
          const client = await TestClient.connect(gateway.wsUrl);
          await client.next();
          client.send({ type: 'subscribe', id: '1', sub: 'a', since: {} });
          const subscribed = await client.next((m) => m.type === 'subscribed');
          client.ws.terminate();
          for (const vm of vms) expect(subscribed.streams[vm]?.reason, vm).toBeUndefined();
        } finally {
          await gateway.close({ graceMs: 100 });
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 15) },
    );
  });
});

describe('HTTP command URLs (defect 7)', () => {
  it('answers a malformed percent-escape with 400 and logs no error', async () => {
    const source = new FakeJobSource(['vm1']);
    const logger = recordingLogger();
    const gateway = await leftovers.gateway({
      source,
      logger,
      commandHandler: async (message) => ({ type: 'result', id: message.id, ok: false, error: { code: 'unknown_job', message: 'no' } }),
    });
    for (const path of ['/v1/vms/%E0%A4%A/jobs/j1/cancel', '/v1/vms/vm1/jobs/%/cancel', '/v1/vms/vm1/jobs/%ZZ/pause']) {
      const res = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: unknown }).error, path).toBeDefined();
    }
    expect(logger.errors).toEqual([]);
  });
});

function httpRequest(port: number, method: string, path: string, headers: Record<string, string>, body = ''): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('error', reject);
    socket.once('connect', () => {
      const lines = [`${method} ${path} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close'];
      socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    });
    socket.on('data', (chunk) => (text += chunk.toString()));
    socket.on('close', () => {
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (match) resolve({ status: Number(match[1]), text });
      else reject(new Error(`no HTTP status in ${JSON.stringify(text.slice(0, 200))}`));
    });
  });
}
