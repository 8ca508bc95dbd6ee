/**
 * Load process (forked) for the burst's baseline: a bare `ws` server that sends one pre-serialized
 * frame to every client in one tight loop, what the transport costs with nothing else to do. It runs
 * in its own process because the gateway's process would pass the fd limit (20,000) with both
 * audiences of 10,000 connected at once; its CPU is measured here with process.cpuUsage(), as the
 * gateway's is in the bench host.
 */
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { serveRpc } from '../lib/rpc.js';
import { wallNow } from '../lib/stats.js';

let server: WebSocketServer | undefined;
let burstCpu: NodeJS.CpuUsage | undefined;

async function close(): Promise<null> {
  const closing = server;
  server = undefined;
  if (!closing) return null;
  for (const client of closing.clients) client.terminate();
  await new Promise<void>((resolve) => closing.close(() => resolve()));
  return null;
}

serveRpc({
  async start() {
    server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    await new Promise<void>((resolve) => server!.once('listening', () => resolve()));
    return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}` };
  },
  /** Sends `text` to every client; `t0` is the wall time before the first send, `loopMs` how long the loop blocked, `loopCpuMs` its CPU. */
  burst({ text }: { text: string }) {
    const frame = Buffer.from(text);
    burstCpu = process.cpuUsage();
    const t0 = wallNow();
    for (const client of server!.clients) client.send(frame, { binary: false });
    const loop = process.cpuUsage(burstCpu);
    return { t0, loopMs: wallNow() - t0, loopCpuMs: (loop.user + loop.system) / 1000, clients: server!.clients.size };
  },
  /** CPU since the last burst began (the sends and whatever they left for later). */
  cpuSinceBurst() {
    const used = process.cpuUsage(burstCpu);
    return { cpuMs: (used.user + used.system) / 1000 };
  },
  close,
});
