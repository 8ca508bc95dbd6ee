import { describe, expect, it, vi } from 'vitest';
import { ResumeClient, type WebSocketLike } from '../../../src/client/resume-client.js';
import type { ServerMessage } from '../../../src/generated/schema-types.js';

/** A socket the test drives by hand: what the client sends is recorded, what the server says is injected. */
class FakeSocket implements WebSocketLike {
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: WebSocketLike['onopen'] = null;
  onmessage: WebSocketLike['onmessage'] = null;
  onclose: WebSocketLike['onclose'] = null;
  onerror: WebSocketLike['onerror'] = null;
  constructor(readonly protocols: string[]) {}
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  open() {
    this.readyState = 1;
    this.onopen?.(undefined);
  }
  serverSays(message: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  lastSubscribe() {
    return [...this.sent].reverse().find((m) => m.type === 'subscribe') as { sub: string; since?: unknown };
  }
}

const job = (id: string, state = 'running') => ({
  vm: 'vm1', id, incarnation: 1, type: 'mirror', state, ready: state === 'ready', stale: false,
  progress: { current: 0, total: 1, percent: 0, rate: null, etaSeconds: null },
  updatedAt: '2026-11-25T00:00:00Z', stateSince: '2026-11-25T00:00:00Z', source: 'event',
});

function setup() {
  const sockets: FakeSocket[] = [];
  const received: ServerMessage[] = [];
  const client = new ResumeClient({
    url: 'ws://127.0.0.1:1',
    token: 'sekrit',
    backoff: { initialMs: 1, maxMs: 2, jitter: 0 },
    createSocket: (_url, protocols) => {
      const s = new FakeSocket(protocols);
      sockets.push(s);
      return s;
    },
    onMessage: (m) => received.push(m),
  });
  return { client, sockets, received };
}

function event(sub: string, offset: number, prev: number, epoch = 'e1') {
  return { type: 'event', sub, vm: 'vm1', epoch, offset, prev, ts: '2026-11-25T00:00:00Z', job: job('j0'), transition: { from: 'created', to: 'running' }, source: 'event' };
}

describe('ResumeClient', () => {
  it('sends the token as a bearer subprotocol and subscribes without since on first connect', () => {
    const { client, sockets } = setup();
    client.start();
    sockets[0]!.open();
    expect(sockets[0]!.protocols).toEqual(['blockjob-gateway.v1', 'bearer.sekrit']);
    expect(sockets[0]!.lastSubscribe().since).toBeUndefined();
    client.close();
  });

  it('drops duplicates at or below the last delivered offset and resumes with since after a drop', async () => {
    const { client, sockets, received } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.lastSubscribe().sub;
    s.serverSays({ type: 'subscribed', id: 'x', sub, streams: { vm1: { mode: 'snapshot', epoch: 'e1', offset: 4 } } });
    s.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e1', offset: 4 });
    s.serverSays(event(sub, 5, 4));
    s.serverSays(event(sub, 5, 4)); // duplicate
    s.serverSays(event(sub, 3, 2)); // old
    expect(received.filter((m) => m.type === 'event').map((m) => (m as { offset: number }).offset)).toEqual([5]);
    s.close(1001, 'going away');
    await vi.waitFor(() => expect(sockets).toHaveLength(2));
    sockets[1]!.open();
    expect(sockets[1]!.lastSubscribe().since).toEqual({ vm1: { epoch: 'e1', offset: 5 } });
    client.close();
  });

  it('treats prev != last delivered as a gap and resubscribes with since', () => {
    const { client, sockets, received } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.lastSubscribe().sub;
    s.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e1', offset: 10 });
    s.serverSays(event(sub, 12, 11)); // 11 never arrived
    expect(received.some((m) => m.type === 'event')).toBe(false);
    const resub = s.lastSubscribe();
    expect(resub.sub).not.toBe(sub);
    expect(resub.since).toEqual({ vm1: { epoch: 'e1', offset: 10 } });
    expect(s.sent.some((m) => m.type === 'unsubscribe' && m.sub === sub)).toBe(true);
    client.close();
  });

  it('accepts a new epoch after a snapshot reset and ignores messages of an old subscription', () => {
    const { client, sockets, received } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const sub = s.lastSubscribe().sub;
    s.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e1', offset: 10 });
    s.serverSays({ type: 'subscribed', id: 'y', sub, streams: { vm1: { mode: 'snapshot', epoch: 'e2', offset: 2, reason: 'unknown_epoch' } } });
    s.serverSays({ type: 'synced', sub, vm: 'vm1', epoch: 'e2', offset: 2 });
    s.serverSays(event(sub, 3, 2, 'e2'));
    s.serverSays(event('someone-else', 4, 3, 'e2'));
    expect(received.filter((m) => m.type === 'event')).toHaveLength(1);
    expect(client.since).toEqual({ vm1: { epoch: 'e2', offset: 3 } });
    client.close();
  });

  it('stops on a fatal close code and reports it, but reconnects on 45xx', async () => {
    const fatal = vi.fn();
    const sockets: FakeSocket[] = [];
    const client = new ResumeClient({
      url: 'ws://h:1/v1/ws',
      backoff: { initialMs: 1, maxMs: 2, jitter: 0 },
      createSocket: (_u, p) => {
        const s = new FakeSocket(p);
        sockets.push(s);
        return s;
      },
      onMessage: () => {},
      onFatal: fatal,
    });
    client.start();
    sockets[0]!.open();
    sockets[0]!.close(4508, 'slow consumer');
    await vi.waitFor(() => expect(sockets).toHaveLength(2));
    sockets[1]!.open();
    sockets[1]!.close(4401, 'unauthenticated');
    await new Promise((r) => setTimeout(r, 20));
    expect(sockets).toHaveLength(2);
    expect(fatal).toHaveBeenCalledWith({ code: 4401, reason: 'unauthenticated' });
  });

  it('correlates command results by id and fails pending commands when the connection drops', async () => {
    const { client, sockets } = setup();
    client.start();
    const s = sockets[0]!;
    s.open();
    const ok = client.command({ vm: 'vm1', job: 'j0', action: 'pause', id: 'c1' });
    const lost = client.command({ vm: 'vm1', job: 'j0', action: 'resume', id: 'c2' });
    s.serverSays({ type: 'result', id: 'c1', ok: true, job: job('j0', 'paused') });
    await expect(ok).resolves.toMatchObject({ id: 'c1', ok: true });
    s.close(1006, '');
    await expect(lost).rejects.toThrow(/outcome unknown/);
    client.close();
  });
});
