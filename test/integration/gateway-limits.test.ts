/**
 * Bad input and resource limits: each gets its documented answer (error code or close code), and a
 * slow consumer is cut off with 4508 without hurting anyone else.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { assertChain, Leftovers } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

describe('gateway limits and bad input', () => {
  it('answers each bad message with its documented error and closes a persistent offender with 4400', async () => {
    const source = new FakeJobSource(['vm1']);
    const gateway = await leftovers.gateway({ source, maxSubscriptionsPerConnection: 2 });
    const client = await leftovers.client(gateway.wsUrl);
    await client.next((m) => m.type === 'welcome');

    client.send('{not json');
    expect(await client.next((m) => m.type === 'error')).toEqual({
      type: 'error',
      code: 'invalid_message',
      message: 'message is not valid JSON',
      details: [{ path: '', message: "is not valid JSON: Expected property name or '}' in JSON at position 1" }],
    });
    client.send({ type: 'subscribe', id: 's1' });
    const shape = await client.next((m) => m.type === 'error');
    expect(shape).toMatchObject({ code: 'invalid_message', id: 's1' });
    expect(JSON.stringify(shape.details)).toContain('sub');

    // A refused command with a readable id is answered by its `result`, as PROTOCOL.md says.
    client.send({ type: 'command', id: 'c1', vm: 'vm1', job: 'j0', action: 'pause', when: 'now' });
    const refused = await client.next((m) => m.id === 'c1');
    expect(refused).toMatchObject({ type: 'result', id: 'c1', ok: false, error: { code: 'invalid_message', details: [{ path: '/when' }] } });

    client.send({ type: 'unsubscribe', id: 'u1', sub: 'nope' });
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ id: 'u1', code: 'unknown_sub', sub: 'nope' });
    client.send({ type: 'subscribe', id: 's2', sub: 'a', filter: { vms: ['vm9'] } });
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ id: 's2', code: 'unknown_vm', details: [{ path: '/filter/vms/0' }] });
    client.send({ type: 'subscribe', id: 's3', sub: 'a' });
    await client.next((m) => m.type === 'subscribed' && m.id === 's3');
    client.send({ type: 'subscribe', id: 's4', sub: 'a' });
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ id: 's4', code: 'duplicate_sub', sub: 'a' });
    client.send({ type: 'subscribe', id: 's5', sub: 'b' });
    await client.next((m) => m.type === 'subscribed' && m.id === 's5');
    client.send({ type: 'subscribe', id: 's6', sub: 'c' });
    expect(await client.next((m) => m.type === 'error')).toMatchObject({ id: 's6', code: 'too_many_subscriptions' });
    expect(client.closeCode).toBeUndefined();

    // Three invalid so far; the limit is 5 per minute: the 6th closes the connection.
    for (let i = 0; i < 3; i++) client.send('[]');
    expect(await client.closed).toBe(4400);
    expect(client.invalid).toEqual([]);
  });

  it('closes a connection with 1009 on a frame larger than 64 KiB', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']) });
    const client = await leftovers.client(gateway.wsUrl);
    await client.next();
    client.send({ type: 'ping', id: 'x'.repeat(70_000) });
    expect(await client.closed).toBe(1009);
  });

  it('rate-limits a flooding client: an error first, then close 4429', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), inbound: { ratePerSecond: 5, burst: 10 } });
    const client = await leftovers.client(gateway.wsUrl);
    await client.next();
    for (let i = 0; i < 300; i++) client.send({ type: 'ping', id: `p${i}` });
    expect(await client.closed).toBe(4429);
    const pongs = client.ofType('pong').length;
    expect(pongs).toBeGreaterThanOrEqual(10);
    expect(pongs).toBeLessThan(20);
    expect(client.ofType('error').map((m) => m.code)).toEqual(['rate_limited']);
  });

  it('terminates a peer that stops answering WebSocket pings', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), heartbeatMs: 100 });
    const answering = await leftovers.client(gateway.wsUrl);
    const silent = await leftovers.client(gateway.wsUrl, { autoPong: false });
    expect((await silent.next()).heartbeatMs).toBe(100);
    // No close frame: the server drops the TCP connection.
    expect(await silent.closed).toBe(1006);
    expect(answering.closeCode).toBeUndefined();
    answering.send({ type: 'ping', id: 'still-here' });
    await answering.next((m) => m.type === 'pong');
  });

  it('closes a client that stops reading at a low event rate with 4508, though the kernel buffers take it all', async () => {
    // ~80 KB/s for at most 15 s stays far below what loopback socket buffers absorb (megabytes), so
    // bufferedAmount stays near 0: before read confirmations only the heartbeat (1006) ended it.
    const source = new FakeJobSource(['vm1']);
    const gateway = await leftovers.gateway({ source, heartbeatMs: 120_000, backpressure: { softBytes: 16_384, hardBytes: 65_536, maxSoftMs: 1_000 } });
    const slow = await leftovers.client(gateway.wsUrl);
    const healthy = await leftovers.client(gateway.wsUrl);
    for (const c of [slow, healthy]) {
      c.send({ type: 'subscribe', id: '1', sub: 'a' });
      await c.next((m) => m.type === 'synced');
    }
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const padding = 'x'.repeat(4000);
    const slowClosed = () => (gateway.core.stats.disconnects.get(4508) ?? 0) > 0;
    const deadline = Date.now() + 15_000;
    let emitted = 0;
    while (!slowClosed() && Date.now() < deadline) {
      source.transition('vm1', 'j0', emitted % 2 ? 'paused' : 'running', { error: padding });
      emitted++;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(slowClosed(), `emitted ${emitted} events (~${Math.round((emitted * 4.4) / 1024)} MB) without a 4508`).toBe(true);
    expect(emitted * 4000).toBeLessThan(1_048_576);
    await healthy.next((m) => m.type === 'event' && m.offset === emitted, 30_000);
    expect(assertChain(healthy.messages, 'vm1', 0)).toBe(emitted);
    expect(healthy.closeCode).toBeUndefined();
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect(await slow.closed).toBe(4508);
    // Cut on the unconfirmed bytes (this reason), not on the in-process buffer's marks.
    expect(slow.closeReason).toMatch(/not read within 1000 ms/);
    assertChain(slow.messages, 'vm1', 0);
  });

  it('closes a client that stops reading with 4508; the others get every event, in order', async () => {
    const source = new FakeJobSource(['vm1']);
    const gateway = await leftovers.gateway({ source, backpressure: { softBytes: 16_384, hardBytes: 65_536, checkMs: 20 } });
    const slow = await leftovers.client(gateway.wsUrl);
    const healthy = await leftovers.client(gateway.wsUrl);
    for (const c of [slow, healthy]) {
      c.send({ type: 'subscribe', id: '1', sub: 'a' });
      await c.next((m) => m.type === 'synced');
    }
    // The slow client stops reading from its TCP socket: the server's send buffer must fill up.
    (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();

    const padding = 'x'.repeat(4000);
    let emitted = 0;
    const slowClosed = () => (gateway.core.stats.disconnects.get(4508) ?? 0) > 0;
    while (!slowClosed() && emitted < 50_000) {
      source.transition('vm1', 'j0', emitted % 2 ? 'paused' : 'running', { error: padding });
      emitted++;
      // Let the event loop run (socket writes, the backpressure check), as QMP traffic would.
      if (emitted % 20 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(slowClosed()).toBe(true);
    // A few more events after the cut reach the healthy client but not the closed one.
    for (let i = 0; i < 10; i++) source.transition('vm1', 'j0', (emitted + i) % 2 ? 'paused' : 'running');
    const last = emitted + 10;
    await healthy.next((m) => m.type === 'event' && m.offset === last, 60_000);
    expect(assertChain(healthy.messages, 'vm1', 0)).toBe(last);
    expect(healthy.ofType('event')).toHaveLength(last);
    expect(healthy.closeCode).toBeUndefined();

    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    expect(await slow.closed).toBe(4508);
    // The slow client got a prefix of the stream, then the close: never a gap.
    const got = slow.ofType('event');
    expect(got.length).toBeLessThan(last);
    assertChain(slow.messages, 'vm1', 0);
  });
});
