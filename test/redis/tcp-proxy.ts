/**
 * A TCP proxy in front of a real redis-server, for faults Redis itself cannot show on cue: one
 * gateway cut off from Redis while the others still reach it (a partition), or every reply late
 * (a slow network), or one request that is never answered. Everything else is the real server.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** `redis://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  /** Drop every connection and refuse new ones until restore(). */
  cut(): void;
  restore(): void;
  /** Delay each chunk by this much, both ways (0: none). */
  delayMs: number;
  /**
   * A stall on cue: from the first request chunk for which `match` holds, that connection's requests
   * are swallowed (the peer stays connected and never gets an answer). Undefined: none.
   */
  hold: ((request: Buffer) => boolean) | undefined;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, options: { delayMs?: number } = {}): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  const pipe = (from: Socket, to: Socket, proxy: TcpProxy, requests: boolean): void => {
    let held = false;
    // In order whatever the delay does meanwhile: a chunk never overtakes an earlier one.
    const queue: { at: number; chunk: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const drain = (): void => {
      timer = undefined;
      while (queue.length > 0 && queue[0]!.at <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (to.writable) to.write(chunk);
      }
      if (queue.length > 0) timer = setTimeout(drain, queue[0]!.at - Date.now());
    };
    from.on('data', (chunk: Buffer) => {
      if (requests && !held && proxy.hold?.(chunk)) held = true;
      if (held) return;
      queue.push({ at: Date.now() + proxy.delayMs, chunk });
      if (!timer) drain();
    });
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const server: Server = createServer((client) => {
    if (cut) return client.destroy();
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    pipe(client, upstream, proxy, true);
    pipe(upstream, client, proxy, false);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const proxy: TcpProxy = {
    url: `redis://127.0.0.1:${port}`,
    delayMs: options.delayMs ?? 0,
    hold: undefined,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      cut = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return proxy;
}
