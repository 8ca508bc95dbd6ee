/**
 * The WebSocket heartbeat pings a slice of the sockets per tick, not all at once: one sweep over
 * thousands of sockets held the event loop for tens of milliseconds once an interval (a stall in
 * every delivery's path), and their pongs came back together. Each socket is still pinged once per
 * interval, and a silent one is still ended (gateway-limits.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Leftovers, type TestClient } from '../utils/gateway-support.js';
import { FakeJobSource } from '../utils/fake-source.js';

const leftovers = new Leftovers();
afterEach(() => leftovers.dispose());

const HEARTBEAT_MS = 1000;
const CLIENTS = 50;

async function waitUntil(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('WebSocket heartbeat', () => {
  it('pings each socket once per interval, spread over the interval rather than in one sweep', async () => {
    const gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1']), heartbeatMs: HEARTBEAT_MS });
    const clients: TestClient[] = [];
    for (let i = 0; i < CLIENTS; i++) clients.push(await leftovers.client(gateway.wsUrl));
    const pings = clients.map(() => [] as number[]);
    clients.forEach((c, i) => c.ws.on('ping', () => pings[i]!.push(performance.now())));

    // Three rounds' worth: every socket pinged at least twice.
    await waitUntil(() => pings.every((p) => p.length >= 3), 30 * HEARTBEAT_MS, 'three pings per socket');

    // Once per interval: no socket is pinged twice within half an interval (timers only run late),
    // and the typical gap is one interval, not two (generous: a loaded machine runs timers late).
    const gaps: number[] = [];
    for (const times of pings) {
      for (let k = 1; k < times.length; k++) gaps.push(times[k]! - times[k - 1]!);
    }
    expect(Math.min(...gaps)).toBeGreaterThan(HEARTBEAT_MS / 2);
    expect(gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)]!).toBeLessThan(1.75 * HEARTBEAT_MS);
    // Spread: the second ping of each socket (one full round, all sockets connected) lands across
    // most of an interval; a single sweep put all 50 within a few milliseconds.
    const round = pings.map((p) => p[1]!).sort((a, b) => a - b);
    expect(round[round.length - 1]! - round[0]!).toBeGreaterThan(HEARTBEAT_MS / 2);
    // Every socket still answered and is open.
    expect(clients.every((c) => c.closeCode === undefined)).toBe(true);
  });
});
