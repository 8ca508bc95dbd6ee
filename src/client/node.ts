/**
 * `blockjob-gateway/client/node`: the WebSocket for Node 20 (which has no global one), built on `ws`.
 * It passes the system error (ECONNREFUSED, ENOTFOUND...) to `onerror` so the client can name the
 * cause, and reports an upgrade refused with 401/403/429 as a close 4401/4403/4429, so "bad token"
 * and "too many connections" are told apart from "gateway down".
 */
import WebSocket from 'ws';
import { CloseCode } from '../protocol/codes.js';
import type { WebSocketFactory, WebSocketLike } from './socket.js';

export const nodeWebSocket: WebSocketFactory = (url, protocols) => adaptNodeWebSocket(new WebSocket(url, protocols, { perMessageDeflate: false }));

/** The client's view of a `ws` socket created elsewhere (own TLS options or agent; a test that cuts it). */
export function adaptNodeWebSocket(ws: WebSocket): WebSocketLike {
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
  let refusal: { code: number; reason: string } | undefined;
  ws.on('unexpected-response', (_req, res) => {
    const status = res.statusCode ?? 0;
    if (status === 401) refusal = { code: CloseCode.Unauthenticated, reason: 'HTTP 401: token missing or not valid' };
    else if (status === 403) refusal = { code: CloseCode.Forbidden, reason: 'HTTP 403: forbidden' };
    // Over the token's connection limit: the long backoff of a 4429, not a fast retry.
    else if (status === 429) refusal = { code: CloseCode.TooManyRequests, reason: 'HTTP 429: too many connections for this token' };
    else like.onerror?.(new Error(`HTTP ${status} instead of a WebSocket upgrade (is this a blockjob-gateway URL?)`));
    res.resume();
    ws.terminate();
  });
  ws.on('open', () => like.onopen?.(undefined));
  ws.on('message', (data, isBinary) => {
    if (!isBinary) like.onmessage?.({ data: data.toString() });
  });
  ws.on('error', (err) => like.onerror?.(err));
  ws.on('close', (code, reason) => like.onclose?.(refusal ?? { code, reason: reason.toString() }));
  return like;
}
