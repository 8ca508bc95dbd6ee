/**
 * HTTP endpoints on the gateway's port: health, readiness, metrics, the job snapshot, the command
 * mirror of job control, and the static dashboard. `/v1/*` takes the same bearer tokens as the
 * WebSocket endpoint.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import type { GatewayInfo, ResultMessage } from '../generated/schema-types.js';
import { silentLogger, type Logger } from '../log.js';
import { tokenFromRequest, type Principal, type TokenAuthenticator } from './auth.js';
import { CLIENT_LIB_PREFIX, DIST_DIR, clientBuildFiles } from './client-build.js';
import type { GatewayCore } from './core.js';
import type { GatewayMetrics } from './metrics.js';
import { hostAllowed, originAllowed } from './origin.js';
import { parseHttpCommand } from '../protocol/validate.js';
import { COMMAND_ERROR_CODES, WS_PATH } from '../protocol/codes.js';
import { jobsDefaultPage, jobsPageLimit } from '../protocol/messages.js';

export interface HttpHandlerOptions {
  core: GatewayCore;
  auth: TokenAuthenticator;
  metrics: GatewayMetrics;
  /** Serve the dashboard's static files from here at `/`. */
  staticDir?: string;
  /** The body of `GET /v1/info` for a caller (its VMs only). */
  info: (principal: Principal) => GatewayInfo;
  /** Readiness beyond the monitors (a fleet gateway's Redis); see GatewayHealth. */
  health?: () => GatewayHealth;
  logger?: Logger;
  /** @default 65_536 */
  maxBodyBytes?: number;
  /** Browser origins allowed to send commands (see origin.ts). */
  allowedOrigins?: readonly string[];
  /** Host names answered (see origin.ts servedHosts); absent or null = any. */
  servedHosts?: ReadonlySet<string> | null;
}

/**
 * What a deployment adds to /readyz. `ready: false` answers 503 whatever the monitors say (an edge
 * without Redis can vouch for nothing); `monitors: false` leaves the VMs' monitors out of it (an
 * edge's VMs are other hosts' business); `degraded` reasons are reported with a 200 (a host
 * gateway without Redis still serves its own clients).
 */
export interface GatewayHealth {
  ready: boolean;
  monitors: boolean;
  degraded: string[];
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

const COMMAND_ROUTE = /^\/v1\/vms\/([^/]+)\/jobs\/([^/]+)\/([a-z-]+)$/;

/** HTTP status of a failed command result: the table in protocol/codes.ts. */
export function statusForCommandError(code: string): number {
  return (COMMAND_ERROR_CODES as Record<string, { httpStatus: number } | undefined>)[code]?.httpStatus ?? 500;
}

export function createHttpHandler(options: HttpHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { core, auth, metrics } = options;
  const log = options.logger ?? silentLogger;
  const maxBody = options.maxBodyBytes ?? 65_536;
  const staticRoot = options.staticDir ? resolve(options.staticDir) : undefined;
  // The dashboard imports the client library from /lib/ (see client-build.ts); read once, on first use.
  let clientFiles: ReadonlySet<string> | undefined | null = null;
  const clientBuild = (): ReadonlySet<string> | undefined => {
    if (clientFiles === null) {
      try {
        clientFiles = clientBuildFiles();
      } catch (error) {
        log.error({ err: error }, 'the client library build cannot be served');
        clientFiles = undefined;
      }
    }
    return clientFiles;
  };
  const originPolicy = { allowed: options.allowedOrigins ? new Set(options.allowedOrigins) : null, tokensRequired: auth.required };
  let nextRequest = 1;
  // Commands in flight per token (the HTTP mirror's scope, as a connection is the WebSocket's), by id.
  const inFlight = new Map<string, Map<string, number>>();

  const authenticate = (req: IncomingMessage, res: ServerResponse): Principal | null => {
    // Only the Authorization header counts here; subprotocols are a WebSocket affair.
    const principal = auth.authenticate(tokenFromRequest({ authorization: req.headers.authorization }));
    if (!principal) {
      metrics.refused(401);
      sendJson(res, 401, { error: 'a valid bearer token is required (Authorization: Bearer <token>)' }, { 'WWW-Authenticate': 'Bearer' });
    }
    return principal;
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (!hostAllowed(req.headers, options.servedHosts ?? null)) {
      return sendJson(res, 403, { error: `host ${JSON.stringify(req.headers.host)} is not served here (configure allowedHosts to add a name)` });
    }
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      const { ready, down } = core.allMonitorsUp();
      const health = options.health?.();
      if (!health) return sendJson(res, ready ? 200 : 503, ready ? { status: 'ready' } : { status: 'not_ready', monitorsDown: down });
      const ok = health.ready && (!health.monitors || ready);
      const status = !ok ? 'not_ready' : health.degraded.length > 0 ? 'degraded' : 'ready';
      return sendJson(res, ok ? 200 : 503, { status, ...(health.degraded.length > 0 ? { degraded: health.degraded } : {}), ...(down.length > 0 ? { monitorsDown: down } : {}) });
    }
    if (path === '/metrics') {
      const text = await metrics.text();
      res.writeHead(200, { 'Content-Type': metrics.contentType, 'Cache-Control': 'no-store' });
      res.end(text);
      return;
    }
    if (path === WS_PATH) return sendJson(res, 426, { error: `${WS_PATH} is a WebSocket endpoint` }, { Upgrade: 'websocket' });
    if (path === '/v1/jobs') {
      if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: 'use GET' }, { Allow: 'GET, HEAD' });
      const principal = authenticate(req, res);
      if (!principal) return;
      if (!principal.scopes.has('read')) return sendJson(res, 403, { error: `token ${JSON.stringify(principal.name)} has no read scope` });
      const page = jobsPage(url.searchParams);
      if (typeof page === 'string') return sendJson(res, 400, { error: page });
      sendJson(res, 200, pageOf(core.jobs(principal), page));
      return;
    }
    if (path === '/v1/info') {
      if (method !== 'GET' && method !== 'HEAD') return sendJson(res, 405, { error: 'use GET' }, { Allow: 'GET, HEAD' });
      const principal = authenticate(req, res);
      if (principal) sendJson(res, 200, options.info(principal));
      return;
    }
    const command = COMMAND_ROUTE.exec(path);
    if (command) {
      if (method !== 'POST') return sendJson(res, 405, { error: 'use POST' }, { Allow: 'POST' });
      // A JSON content type makes any cross-site browser request a CORS preflight, which gets no
      // answer here; with the origin check, a web page cannot act on jobs through a browser.
      if (!/^application\/json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
        return sendJson(res, 415, { error: 'commands need Content-Type: application/json' });
      }
      if (!originAllowed(req.headers, originPolicy)) return sendJson(res, 403, { error: `origin ${req.headers.origin} is not allowed` });
      const principal = authenticate(req, res);
      if (!principal) return;
      const names = command.slice(1).map(decodePathSegment);
      if (names.includes(undefined)) return sendJson(res, 400, { error: `malformed percent-escape in ${path}` });
      return handleCommand(req, res, principal, names as [string, string, string]);
    }
    if (path.startsWith('/v1/')) return sendJson(res, 404, { error: `no endpoint ${path}` });
    if (staticRoot && (method === 'GET' || method === 'HEAD') && path.startsWith(CLIENT_LIB_PREFIX)) {
      const rel = path.slice(CLIENT_LIB_PREFIX.length);
      if (!clientBuild()?.has(rel)) return sendJson(res, 404, { error: `not found: ${path}` });
      return serveStatic(DIST_DIR, `/${rel}`, method, res);
    }
    if (staticRoot && (method === 'GET' || method === 'HEAD')) return serveStatic(staticRoot, path, method, res);
    sendJson(res, 404, { error: `not found: ${path}` });
  };

  const handleCommand = async (req: IncomingMessage, res: ServerResponse, principal: Principal, [vm, job, action]: [string, string, string]): Promise<void> => {
    const handler = core.commandHandler;
    if (!handler) return sendJson(res, 501, { error: 'job control is not enabled on this gateway' });
    const raw = await readBody(req, maxBody);
    if (raw === null) return sendJson(res, 413, { error: `request body larger than ${maxBody} bytes` });
    const fallbackId = `http-${nextRequest++}`;
    const parsed = parseHttpCommand({ vm, job, action }, raw, fallbackId);
    if (!parsed.ok) {
      const failure: ResultMessage = { type: 'result', id: parsed.id ?? fallbackId, ok: false, error: parsed.error };
      return sendJson(res, 400, failure);
    }
    const id = parsed.message.id;
    const mine = inFlight.get(principal.name) ?? new Map<string, number>();
    const max = core.maxCommandsInFlight;
    // A retried id is admitted: the controller answers it from the first one (idempotency).
    if (mine.size >= max && !mine.has(id)) {
      const busy: ResultMessage = { type: 'result', id, ok: false, error: { code: 'too_many_commands', message: `at most ${max} commands in flight per token over HTTP; nothing was sent` } };
      return sendJson(res, statusForCommandError('too_many_commands'), busy);
    }
    mine.set(id, (mine.get(id) ?? 0) + 1);
    inFlight.set(principal.name, mine);
    const controller = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) controller.abort(new Error('HTTP client went away'));
    });
    let result: ResultMessage;
    try {
      // Scoped to the token, not the TCP connection: a retried POST with the same id must not act twice.
      result = await handler(parsed.message, { principal, connectionId: `http:${principal.name}`, signal: controller.signal });
    } catch (error) {
      log.error({ err: error }, 'command handler failed (HTTP)');
      result = { type: 'result', id, ok: false, error: { code: 'internal', message: 'internal error while handling the command' } };
    } finally {
      const left = (mine.get(id) ?? 1) - 1;
      if (left > 0) mine.set(id, left);
      else mine.delete(id);
      if (mine.size === 0 && inFlight.get(principal.name) === mine) inFlight.delete(principal.name);
    }
    sendJson(res, result.ok ? 200 : statusForCommandError(result.error.code), result);
  };

  return (req, res) => {
    route(req, res).catch((error: unknown) => {
      log.error({ err: error, url: req.url }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };
}

async function serveStatic(root: string, urlPath: string, method: string, res: ServerResponse): Promise<void> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath);
  } catch {
    return sendJson(res, 400, { error: 'malformed path' });
  }
  if (rel.includes('\0')) return sendJson(res, 400, { error: 'malformed path' });
  if (rel.endsWith('/')) rel += 'index.html';
  const file = join(root, normalize(rel));
  // After normalization the file must still lie inside root: no traversal, no absolute escapes.
  if (file !== root && !file.startsWith(root + sep)) return sendJson(res, 404, { error: `not found: ${urlPath}` });
  const info = await stat(file).catch(() => undefined);
  if (!info || !info.isFile()) return sendJson(res, 404, { error: `not found: ${urlPath}` });
  res.writeHead(200, {
    'Content-Type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'Content-Length': info.size,
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-cache',
  });
  if (method === 'HEAD') {
    res.end();
    return;
  }
  createReadStream(file).on('error', () => res.destroy()).pipe(res);
}

/** A URL path segment, or undefined when its percent-escapes are not valid UTF-8 (client error, not ours). */
function decodePathSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string | null> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        resolvePromise(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolvePromise(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** `?limit=N&after=NAME` of GET /v1/jobs (a default page without `limit`), or why the query is refused. */
function jobsPage(query: URLSearchParams): { limit: number; after: string | undefined } | string {
  const limit = query.get('limit');
  const after = query.get('after') ?? undefined;
  if (limit === null) return { limit: jobsDefaultPage(), after };
  const n = Number(limit);
  const max = jobsPageLimit();
  if (!/^\d+$/.test(limit) || n < 1 || n > max) return `limit must be an integer from 1 to ${max}`;
  return { limit: n, after };
}

/** One page in VM name order, so a page boundary stays put while VMs come and go. */
function pageOf<T extends { vm: string }>(vms: T[], { limit, after }: { limit: number; after: string | undefined }): { vms: T[]; next?: string } {
  const sorted = vms.filter((v) => after === undefined || v.vm > after).sort((a, b) => (a.vm < b.vm ? -1 : a.vm > b.vm ? 1 : 0));
  const page = sorted.slice(0, limit);
  return sorted.length > limit ? { vms: page, next: page[page.length - 1]!.vm } : { vms: page };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}
