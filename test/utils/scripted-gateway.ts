/**
 * A scripted v1 gateway on a real `ws` server on loopback, for what a real gateway cannot show on cue:
 * two transitions in the same TCP read, a stream gap, a close code of our choosing. It answers the
 * handshake like the real one (subprotocol, welcome) and hands every client message to the script.
 *
 *   const gw = await startScriptedGateway({ onMessage: (msg, peer) => { if (msg.type === 'subscribe') ... } });
 *   // connect to gw.url ...
 */
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { registerLeftover } from '../../src/lab/index.js';

export interface ScriptedPeer {
  ws: WebSocket;
  /** Sends each message as its own frame, all in the same tick. */
  send(...messages: object[]): void;
}

export interface ScriptedGatewayOptions {
  /** The VMs the welcome lists. @default ['vm1'] */
  vms?: string[];
  onMessage?: (message: Record<string, unknown> & { type: string }, peer: ScriptedPeer) => void;
  onConnection?: (peer: ScriptedPeer) => void;
}

export interface ScriptedGateway {
  /** `ws://127.0.0.1:PORT` (the client appends /v1/ws). */
  url: string;
  port: number;
  connections: number;
  close(): Promise<void>;
}

export async function startScriptedGateway(options: ScriptedGatewayOptions = {}): Promise<ScriptedGateway> {
  const server = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    path: '/v1/ws',
    handleProtocols: (offered) => (offered.has('blockjob-gateway.v1') ? 'blockjob-gateway.v1' : false),
  });
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const port = (server.address() as AddressInfo).port;
  const gateway: ScriptedGateway = {
    url: `ws://127.0.0.1:${port}`,
    port,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
  registerLeftover({ label: `scripted gateway :${port}`, dispose: () => gateway.close(), disposeNow: () => void gateway.close() });
  server.on('connection', (ws) => {
    gateway.connections++;
    const peer: ScriptedPeer = { ws, send: (...messages) => messages.forEach((m) => ws.send(JSON.stringify(m))) };
    const vms = options.vms ?? ['vm1'];
    peer.send({ type: 'welcome', protocol: 1, vms: vms.map((vm) => ({ vm, epoch: 'E1', offset: 0, status: 'connected' })), vmCount: vms.length, heartbeatMs: 25_000, scopes: ['read', 'control'] });
    options.onConnection?.(peer);
    ws.on('message', (data) => options.onMessage?.(JSON.parse(data.toString()) as Record<string, unknown> & { type: string }, peer));
  });
  return gateway;
}

/** A JobState for scripted messages. */
export function scriptedJob(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    vm: 'vm1', id: 'j0', incarnation: 1, type: 'mirror', state: 'running', ready: false, stale: false,
    progress: { current: 64, total: 64, percent: 100, rate: 0, etaSeconds: 0 },
    updatedAt: '2026-11-25T00:00:00.000Z', stateSince: '2026-11-25T00:00:00.000Z', source: 'event',
    ...fields,
  };
}
