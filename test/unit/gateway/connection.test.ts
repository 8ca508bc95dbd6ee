/**
 * Connection backpressure against a socket that never drains (a client that stopped reading):
 * memory stays bounded by the hard mark, progress is conflated, transitions are never dropped.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ANONYMOUS } from '../../../src/gateway/auth.js';
import { Connection, type GatewaySocket } from '../../../src/gateway/connection.js';
import { GatewayStats } from '../../../src/gateway/stats.js';

class StuckSocket implements GatewaySocket {
  bufferedAmount = 0;
  readonly sent: string[] = [];
  closedWith: number | undefined;
  send(text: string): void {
    this.sent.push(text);
    this.bufferedAmount += text.length;
  }
  close(code: number): void {
    this.closedWith = code;
  }
  /** The client reads everything. */
  drain(): void {
    this.bufferedAmount = 0;
  }
}

const open: Connection[] = [];
afterEach(() => {
  for (const c of open.splice(0)) c.closedBy(1000, 'test over');
});

function connection(socket: GatewaySocket, stats = new GatewayStats(), closes: number[] = []) {
  const c = new Connection('c1', ANONYMOUS, socket, stats, (_c, code) => closes.push(code), { softBytes: 1000, hardBytes: 5000, maxSoftMs: 60_000, checkMs: 10 });
  open.push(c);
  return c;
}

describe('Connection backpressure', () => {
  it('closes with 4508 at the hard mark; the buffer never grows past it by more than one message', () => {
    const socket = new StuckSocket();
    const closes: number[] = [];
    const c = connection(socket, new GatewayStats(), closes);
    const message = 'x'.repeat(300);
    for (let i = 0; i < 10_000; i++) c.sendStream('event', message);
    expect(socket.closedWith).toBe(4508);
    expect(closes).toEqual([4508]);
    expect(socket.bufferedAmount).toBeLessThanOrEqual(5000 + message.length);
    expect(socket.sent.length).toBeLessThan(20);
  });

  it('reads the socket once per stream delivery while under the soft mark, and checks the hard mark again above it', () => {
    const socket = new StuckSocket();
    let reads = 0;
    const counted: GatewaySocket = {
      send: (text) => socket.send(text as string),
      close: (code) => socket.close(code),
      get bufferedAmount() {
        reads++;
        return socket.bufferedAmount;
      },
    };
    const closes: number[] = [];
    const c = connection(counted, new GatewayStats(), closes);
    for (let i = 0; i < 3; i++) c.sendStream('event', 'x'.repeat(300));
    expect(reads).toBe(3); // 900 bytes unread, under the soft mark (1000): one reading per write
    for (let i = 0; i < 20; i++) c.sendStream('event', 'x'.repeat(300));
    // Over the soft mark each delivery is checked before its write, so the hard mark (5000) holds.
    expect(closes).toEqual([4508]);
    expect(socket.bufferedAmount).toBeLessThanOrEqual(5000 + 300);
  });

  it('refuses to answer requests for a client over the hard mark (one reply burst may exceed it, never two)', () => {
    const socket = new StuckSocket();
    const c = connection(socket);
    for (let i = 0; i < 30; i++) c.send('state', 's'.repeat(300)); // a snapshot: 9000 bytes, over the mark
    expect(socket.closedWith).toBeUndefined();
    expect(c.closeIfOverHardMark()).toBe(true);
    expect(socket.closedWith).toBe(4508);
  });

  it('conflates progress to the newest per job above the soft mark and flushes it once the client reads', async () => {
    const socket = new StuckSocket();
    const stats = new GatewayStats();
    const c = connection(socket, stats);
    c.sendStream('event', 'e'.repeat(1500)); // over the soft mark
    for (let i = 0; i < 100; i++) {
      c.sendProgress('a\0vm1\0j0', `p0-${i}`);
      c.sendProgress('a\0vm1\0j1', `p1-${i}`);
    }
    c.sendStream('event', 'transition-still-sent');
    expect(socket.sent.filter((t) => t.startsWith('p'))).toEqual([]);
    expect(socket.sent.at(-1)).toBe('transition-still-sent');
    expect(stats.conflatedTotal).toBe(198);
    socket.drain();
    await expect.poll(() => socket.sent.filter((t) => t.startsWith('p'))).toEqual(['p0-99', 'p1-99']);
    expect(socket.closedWith).toBeUndefined();
  });

  it('closes a client that stays over the soft mark for too long', async () => {
    const socket = new StuckSocket();
    const closes: number[] = [];
    const c = new Connection('c2', ANONYMOUS, socket, new GatewayStats(), (_c, code) => closes.push(code), { softBytes: 10, hardBytes: 1_000_000, maxSoftMs: 50, checkMs: 10 });
    open.push(c);
    c.send('welcome', 'x'.repeat(100));
    await expect.poll(() => closes).toEqual([4508]);
  });

  it('limits inbound rate: admits the burst, tells once, then closes a persistent flood', () => {
    const c = new Connection('c3', ANONYMOUS, new StuckSocket(), new GatewayStats(), () => {}, {}, { ratePerSecond: 1, burst: 3 });
    open.push(c);
    const now = performance.now();
    const answers = Array.from({ length: 11 }, () => c.admitInbound(now));
    expect(answers).toEqual(['ok', 'ok', 'ok', 'first-drop', 'drop', 'drop', 'drop', 'drop', 'drop', 'close', 'close']);
    expect(c.admitInbound(now + 5000)).toBe('ok');
  });
});
