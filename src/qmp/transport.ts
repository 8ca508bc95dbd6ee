/**
 * What lies under a QmpClient: the default socket, and the read-burst bound that keeps one
 * flooding monitor from holding the event loop.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { QmpAddress } from './types.js';

/** The default transport: a unix or TCP socket (Nagle off: QMP messages are small and latency matters). */
export function defaultConnect(address: QmpAddress): Duplex {
  if (address.kind === 'unix') return net.connect({ path: address.path });
  return net.connect({ host: address.host, port: address.port, noDelay: true });
}

/** A connection as the read-burst bound sees it. */
export interface BurstCounted {
  /** Bytes read in this turn of the event loop (see READ_BURST_BYTES). */
  burstBytes: number;
}

/**
 * Bytes read from one monitor before it waits a turn of the event loop. libuv reads a socket up to
 * 32 times per turn, so a peer that floods could otherwise hold the loop (and every other VM, and
 * /healthz) for megabytes of messages at a time.
 */
export const READ_BURST_BYTES = 64 * 1024;

/**
 * Connections that read in this turn of the event loop, reset by one setImmediate for all of them:
 * 1,000 idle monitors' poll replies arrive together, and an immediate per read was garbage too.
 */
const burstsThisTurn: BurstCounted[] = [];

/** Call at a connection's first read of a turn: its count is reset once the turn ends. */
export function resetBurstAfterTurn(connection: BurstCounted): void {
  if (burstsThisTurn.push(connection) === 1) setImmediate(resetBursts);
}

function resetBursts(): void {
  for (const connection of burstsThisTurn) connection.burstBytes = 0;
  burstsThisTurn.length = 0;
}

export function waitForClose(socket: Duplex): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
