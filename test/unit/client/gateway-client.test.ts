/**
 * The client library's rules with a socket the test drives by hand (what the client sends is recorded,
 * what the server says is injected): dedup, gaps, resume, close-code policy, failover, waitFor,
 * commands, bounds. test/integration/client-*.test.ts run it against real gateways.
 */
import { describe, expect, it, vi } from 'vitest';
import { GatewayClient, type GatewayClientOptions, type ServerMessage, type WebSocketLike } from '../../../src/client/index.js';

class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: WebSocketLike['onopen'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  /** Opens and says welcome, as a gateway does. */
  open(vms = ['vm1']) {
    this.readyState = 1;
    this.onopen?.(undefined);
    this.serverSays({ type: 'welcome', protocol: 1, vms: vms.map((vm) => ({ vm, epoch: 'e1', offset: 0, status: 'connected' })), vmCount: vms.length, heartbeatMs: 25_000 });
  }
  refuse(error: unknown) {
    this.onerror?.(error);
    this.close(1006, '');
  }
  serverSays(message: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  lastSubscribe() {
    return [...this.sent].reverse().find((m) => m.type === 'subscribe') as { sub: string; id: string; since?: unknown; filter?: unknown };
  }
  /** Answers the last subscribe with a snapshot of these jobs. */
  snapshot(jobs: Record<string, unknown>[], offset = 4) {
    const sub = this.lastSubscribe().sub;
    this.serverSays({ type: 'subscribed', id: sub, sub, streams: { vm1: { mode: 'snapshot', epoch: 'e1', offset } } });
    for (const j of jobs) this.serverSays({ type: 'state', sub, vm: 'vm1', epoch: 'e1', offset, job: j });
    this.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e1', offset, status: 'connected' });
    return sub;
  }
}

const job = (id: string, state = 'running', extra: Record<string, unknown> = {}) => ({
  vm: 'vm1', id, incarnation: 1, type: 'mirror', state, ready: state === 'ready' || state === 'standby', stale: false,
  progress: { current: 0, total: 1, percent: 0, rate: null, etaSeconds: null },
  updatedAt: '2026-11-25T00:00:00Z', stateSince: '2026-11-25T00:00:00Z', source: 'event', ...extra,
});

function event(sub: string, offset: number, prev: number, j = job('j0'), epoch = 'e1') {
  return { type: 'event', sub, vm: 'vm1', epoch, offset, prev, ts: '2026-11-25T00:00:00Z', job: j, transition: { from: 'created', to: j.state }, source: 'event' };
}

function setup(options: Partial<GatewayClientOptions> = {}) {
  const sockets: FakeSocket[] = [];
  const received: ServerMessage[] = [];
  const client = new GatewayClient({
    urls: 'ws://127.0.0.1:1',
    token: 'sekrit',
    backoff: { initialDelayMs: 1, maxDelayMs: 2, jitter: 0 },
    socket: (url, protocols) => {
      const s = new FakeSocket(url, protocols);
      sockets.push(s);
      return s;
    },
    ...options,
  });
  client.on('message', (m) => received.push(m));
  return { client, sockets, received };
}

describe('GatewayClient streams', () => {
  it('sends the token as a bearer subprotocol to /v1/ws and subscribes without since on first connect', () => {
    const { client, sockets } = setup({ filter: { vms: ['vm1'] } });
    client.start();
    sockets[0]!.open();
    expect(sockets[0]!.url).toBe('ws://127.0.0.1:1/v1/ws');
    expect(sockets[0]!.protocols).toEqual(['blockjob-gateway.v1', 'bearer.sekrit']);
    expect(sockets[0]!.lastSubscribe()).toMatchObject({ filter: { vms: ['vm1'] } });
    expect(sockets[0]!.lastSubscribe().since).toBeUndefined();
    client.close();
  });

  it('drops duplicates at or below the last applied offset and resumes with since after a drop', async () => {
    const { client, sockets, received } = setup();
    const transitions: number[] = [];
    client.on('transition', (e) => transitions.push(e.offset));
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.snapshot([], 4);
    s.serverSays(event(sub, 5, 4));
    s.serverSays(event(sub, 5, 4)); // duplicate
    s.serverSays(event(sub, 3, 2)); // old
    expect(transitions).toEqual([5]);
    expect(received.filter((m) => m.type === 'event')).toHaveLength(1);
    s.close(1001, 'going away');
    await vi.waitFor(() => expect(sockets).toHaveLength(2));
    sockets[1]!.open();
    expect(sockets[1]!.lastSubscribe().since).toEqual({ vm1: { epoch: 'e1', offset: 5 } });
    client.close();
  });

  it('treats prev != last applied as a gap and resubscribes with since', () => {
    const { client, sockets } = setup();
    const transitions = vi.fn();
    client.on('transition', transitions);
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.snapshot([], 10);
    s.serverSays(event(sub, 12, 11)); // 11 never arrived
    expect(transitions).not.toHaveBeenCalled();
    const resub = s.lastSubscribe();
    expect(resub.sub).not.toBe(sub);
    expect(resub.since).toEqual({ vm1: { epoch: 'e1', offset: 10 } });
    expect(s.sent.some((m) => m.type === 'unsubscribe' && m.sub === sub)).toBe(true);
    client.close();
  });

  it('a snapshot replaces the VM in the job map; messages of a subscription it left are ignored', () => {
    const { client, sockets } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.snapshot([job('a'), job('b')], 10);
    expect(client.jobs('vm1').map((j) => j.id)).toEqual(['a', 'b']);
    s.serverSays({ type: 'subscribed', id: 'y', sub, streams: { vm1: { mode: 'snapshot', epoch: 'e2', offset: 2, reason: 'unknown_epoch' } } });
    s.serverSays({ type: 'state', sub, vm: 'vm1', epoch: 'e2', offset: 2, job: job('c') });
    s.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e2', offset: 2, status: 'connected' });
    expect(client.jobs('vm1').map((j) => j.id)).toEqual(['c']);
    s.serverSays(event(sub, 3, 2, job('c', 'ready'), 'e2'));
    s.serverSays(event('someone-else', 4, 3, job('c', 'concluded'), 'e2'));
    expect(client.job('vm1', 'c')?.state).toBe('ready');
    expect(client.since).toEqual({ vm1: { epoch: 'e2', offset: 3 } });
    client.close();
  });

  it('keeps at most maxFinishedJobsPerVm finished jobs, oldest go first', () => {
    const { client, sockets } = setup({ maxFinishedJobsPerVm: 2 });
    client.start();
    sockets[0]!.open();
    sockets[0]!.snapshot(['a', 'b', 'c', 'd'].map((id) => job(id, 'concluded', { outcome: 'completed' })).concat([job('live')]));
    expect(client.jobs('vm1').map((j) => j.id).sort()).toEqual(['c', 'd', 'live']);
    client.close();
  });
});

describe('GatewayClient connections', () => {
  it('stops on a close code the policy calls fatal and reports it typed, but reconnects on 45xx', async () => {
    const { client, sockets } = setup();
    const errors: unknown[] = [];
    client.on('error', (e) => errors.push(e));
    client.start();
    sockets[0]!.open();
    sockets[0]!.close(4508, 'slow consumer');
    await vi.waitFor(() => expect(sockets).toHaveLength(2));
    sockets[1]!.open();
    const synced = client.synced();
    sockets[1]!.close(4401, 'unauthenticated');
    await expect(synced).rejects.toMatchObject({ code: 'CLIENT_ERR_REFUSED', closeCode: 4401 });
    await new Promise((r) => setTimeout(r, 20));
    expect(sockets).toHaveLength(2);
    expect(errors).toHaveLength(1);
    expect(client.status).toMatchObject({ state: 'closed', error: { code: 'CLIENT_ERR_REFUSED' } });
  });

  it('stops on a normal closure (1000) from the other side with its own code, not as a refusal', async () => {
    const { client, sockets } = setup();
    client.start();
    sockets[0]!.open();
    const synced = client.synced();
    sockets[0]!.close(1000, 'bye');
    const error = await synced.then(() => undefined, (e: unknown) => e);
    expect(error).toMatchObject({ name: 'ClientEndedError', code: 'CLIENT_ERR_ENDED', closeCode: 1000, reason: 'bye' });
    expect((error as Error).message).not.toMatch(/refused/);
    expect(client.status).toMatchObject({ state: 'closed', error: { code: 'CLIENT_ERR_ENDED' } });
    expect(sockets).toHaveLength(1);
  });

  it('bounds the staged snapshot: past maxSnapshotJobsPerVm it stops with a typed error instead of growing', async () => {
    const { client, sockets } = setup({ maxSnapshotJobsPerVm: 2 });
    client.start();
    sockets[0]!.open();
    const synced = client.synced();
    sockets[0]!.snapshot([job('a'), job('b'), job('c')]);
    await expect(synced).rejects.toMatchObject({ name: 'ClientSnapshotTooLargeError', code: 'CLIENT_ERR_SNAPSHOT_TOO_LARGE', vm: 'vm1', limit: 2 });
    expect(client.status).toMatchObject({ state: 'closed', error: { code: 'CLIENT_ERR_SNAPSHOT_TOO_LARGE' } });
    expect(client.jobs('vm1')).toEqual([]);
  });

  it('takes a snapshot of exactly maxSnapshotJobsPerVm jobs', async () => {
    const { client, sockets } = setup({ maxSnapshotJobsPerVm: 2 });
    client.start();
    sockets[0]!.open();
    const synced = client.synced();
    sockets[0]!.snapshot([job('a'), job('b')]);
    await synced;
    expect(client.jobs('vm1').map((j) => j.id).sort()).toEqual(['a', 'b']);
    client.close();
  });

  it('resumes from the positions given as `since` on its first subscribe and applies the replay', async () => {
    const { client, sockets } = setup({ since: { vm1: { epoch: 'e1', offset: 2 } } });
    const transitions: unknown[] = [];
    client.on('transition', (m) => transitions.push(m.offset));
    client.start();
    sockets[0]!.open();
    const sub = sockets[0]!.lastSubscribe();
    expect(sub.since).toEqual({ vm1: { epoch: 'e1', offset: 2 } });
    sockets[0]!.serverSays({ type: 'subscribed', id: sub.sub, sub: sub.sub, streams: { vm1: { mode: 'resume', epoch: 'e1', offset: 4 } } });
    sockets[0]!.serverSays(event(sub.sub, 3, 2));
    sockets[0]!.serverSays(event(sub.sub, 4, 3));
    sockets[0]!.serverSays({ type: 'synced', sub: sub.sub, vm: 'vm1', epoch: 'e1', offset: 4, status: 'connected' });
    await client.synced();
    expect(transitions).toEqual([3, 4]);
    client.close();
  });

  it('fails over to the next URL at once, and synced({failFast}) rejects with the cause once every URL failed', async () => {
    const { client, sockets } = setup({ urls: ['ws://a:1', 'ws://b:2'] });
    client.start();
    const synced = client.synced({ failFast: true });
    sockets[0]!.refuse(Object.assign(new Error('connect ECONNREFUSED a:1'), { code: 'ECONNREFUSED' }));
    await vi.waitFor(() => expect(sockets).toHaveLength(2));
    expect(sockets[1]!.url).toBe('ws://b:2/v1/ws');
    sockets[1]!.refuse(Object.assign(new Error('getaddrinfo ENOTFOUND b'), { code: 'ENOTFOUND' }));
    await expect(synced).rejects.toMatchObject({ code: 'CLIENT_ERR_CONNECT', message: 'cannot connect to ws://b:2/v1/ws: host not found (ENOTFOUND)' });
    client.close();
  });

  it('an attempt without welcome fails after connectTimeoutMs with CLIENT_ERR_CONNECT_TIMEOUT', async () => {
    const { client, sockets } = setup({ connectTimeoutMs: 30 });
    const statuses: string[] = [];
    client.on('status', (s) => statuses.push(s.state));
    client.start();
    await expect(client.synced({ failFast: true })).rejects.toMatchObject({ code: 'CLIENT_ERR_CONNECT_TIMEOUT', message: /no answer within 30 ms/ });
    expect(sockets[0]!.readyState).toBe(3);
    expect(statuses.slice(0, 2)).toEqual(['connecting', 'reconnecting']);
    client.close();
  });

  it('a signal aborts a call and, given to the client, closes it', async () => {
    const controller = new AbortController();
    const { client, sockets } = setup({ signal: controller.signal });
    client.start();
    sockets[0]!.open();
    const call = new AbortController();
    const waiting = client.waitFor('vm1', 'j0', 'ready', { signal: call.signal });
    call.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'CLIENT_ERR_ABORTED' });
    const other = client.waitFor('vm1', 'j0', 'ready');
    controller.abort();
    await expect(other).rejects.toMatchObject({ code: 'CLIENT_ERR_CLOSED' });
    expect(client.status.state).toBe('closed');
  });
});

describe('GatewayClient waitFor and commands', () => {
  it('waitFor settles exactly once, with the state that reached the target', async () => {
    const { client, sockets } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.snapshot([job('j0')], 1);
    const ready = client.waitFor('vm1', 'j0', 'ready');
    const then = vi.fn();
    void ready.then(then);
    s.serverSays(event(sub, 2, 1, job('j0', 'ready')));
    s.serverSays(event(sub, 3, 2, job('j0', 'standby', { pauseReason: 'user' })));
    await expect(ready).resolves.toMatchObject({ state: 'ready' });
    expect(then).toHaveBeenCalledTimes(1);
    client.close();
  });

  it("waitFor 'ready' on a job that was ready and has concluded rejects JOB_ENDED with wasReady", async () => {
    const { client, sockets } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    s.snapshot([job('done', 'dismissed', { ready: false, outcome: 'completed', pivoted: true }), job('never', 'concluded', { ready: false, outcome: 'cancelled' })]);
    await expect(client.waitFor('vm1', 'done', 'ready')).rejects.toMatchObject({
      code: 'CLIENT_ERR_JOB_ENDED',
      wasReady: true,
      message: 'job vm1/done was ready and has since concluded: outcome completed, pivoted',
    });
    await expect(client.waitFor('vm1', 'never', 'ready')).rejects.toMatchObject({ code: 'CLIENT_ERR_JOB_ENDED', wasReady: false });
    await expect(client.waitFor('vm1', 'done', 'concluded')).resolves.toMatchObject({ outcome: 'completed' });
    await expect(client.waitFor('vm1', 'absent', 'concluded', { timeoutMs: 20 })).rejects.toMatchObject({ code: 'CLIENT_ERR_TIMEOUT' });
    client.close();
  });

  it('correlates results by id, helpers send each verb, and a drop fails what is in flight as outcome unknown', async () => {
    const { client, sockets } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const ok = client.pause('vm1', 'j0', { id: 'c1' });
    await vi.waitFor(() => expect(s.sent.some((m) => m.id === 'c1')).toBe(true));
    void client.setSpeed('vm1', 'j0', 1024, { id: 'c3' }).catch(() => {});
    void client.cancel('vm1', 'j0', { force: true, id: 'c4' }).catch(() => {});
    await vi.waitFor(() => expect(s.sent.filter((m) => m.type === 'command')).toHaveLength(3));
    expect(s.sent.find((m) => m.id === 'c3')).toMatchObject({ type: 'command', action: 'set-speed', speed: 1024, vm: 'vm1', job: 'j0' });
    expect(s.sent.find((m) => m.id === 'c4')).toMatchObject({ action: 'cancel', force: true });
    s.serverSays({ type: 'result', id: 'c1', ok: true, job: job('j0', 'paused') });
    await expect(ok).resolves.toMatchObject({ id: 'c1', ok: true });
    const lost = client.resume('vm1', 'j0', { id: 'c2' });
    await vi.waitFor(() => expect(s.sent.some((m) => m.id === 'c2')).toBe(true));
    s.close(1006, '');
    await expect(lost).rejects.toMatchObject({ code: 'CLIENT_ERR_OUTCOME_UNKNOWN' });
    client.close();
  });

  it('bounds commands in flight', async () => {
    const { client, sockets } = setup({ maxPendingCommands: 1 });
    client.start();
    sockets[0]!.open();
    void client.pause('vm1', 'j0').catch(() => {});
    await vi.waitFor(() => expect(sockets[0]!.sent.some((m) => m.type === 'command')).toBe(true));
    await expect(client.resume('vm1', 'j0')).rejects.toMatchObject({ code: 'CLIENT_ERR_BUSY' });
    client.close();
  });

  it('commands waiting for a connection count against the bound too, and are sent once it opens', async () => {
    const { client, sockets } = setup({ maxPendingCommands: 1 });
    client.start();
    const first = client.pause('vm1', 'j0', { id: 'early' });
    await expect(client.resume('vm1', 'j0')).rejects.toMatchObject({ code: 'CLIENT_ERR_BUSY' });
    sockets[0]!.open();
    await vi.waitFor(() => expect(sockets[0]!.sent.some((m) => m.id === 'early')).toBe(true));
    sockets[0]!.serverSays({ type: 'result', id: 'early', ok: true, job: job('j0', 'paused') });
    await expect(first).resolves.toMatchObject({ ok: true });
    client.close();
  });
});
