/**
 * The WebSocket factory for Node: `ws`, with an upgrade refused by the gateway (401/403) reported as a
 * close with the matching 44xx code, so the client can tell "bad token" from "gateway down".
 */
import WebSocket from 'ws';
import { UPGRADE_FORBIDDEN, UPGRADE_UNAUTHORIZED, type WebSocketFactory, type WebSocketLike } from './resume-client.js';

export const createNodeSocket: WebSocketFactory = (url, protocols) => {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  const like: WebSocketLike = {
    get readyState() {
      return ws.readyState;
    },
    send: (data) => ws.send(data),
    close: (code, reason) => ws.close(code, reason),
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
  };
  let upgradeRefusal: { code: number; reason: string } | undefined;
  ws.on('unexpected-response', (_req, res) => {
    const status = res.statusCode ?? 0;
    upgradeRefusal =
      status === 401
        ? { code: UPGRADE_UNAUTHORIZED, reason: 'HTTP 401: token missing or not valid' }
        : status === 403
          ? { code: UPGRADE_FORBIDDEN, reason: 'HTTP 403: forbidden' }
          : { code: 1006, reason: `HTTP ${status} at the WebSocket upgrade` };
    res.resume();
    ws.terminate();
  });
  ws.on('open', () => like.onopen?.(undefined));
  ws.on('message', (data, isBinary) => {
    if (!isBinary) like.onmessage?.({ data: data.toString() });
  });
  ws.on('error', (err) => like.onerror?.(err));
  ws.on('close', (code, reason) => like.onclose?.(upgradeRefusal ?? { code, reason: reason.toString() }));
  return like;
};
