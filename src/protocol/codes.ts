/**
 * The protocol's stable numbers and names: WebSocket close codes with what a client should do about
 * each, the `error` and `result` error codes with their meaning (and HTTP status for the HTTP mirror),
 * and the handshake constants. PROTOCOL.md documents exactly these tables (a test keeps them in step).
 *
 * Close code ranges follow one rule (as Centrifugo's 3000-3499 / 3500+): 44xx = the client caused it,
 * do not retry blindly; 45xx = transient, reconnect with backoff and resume with `since`.
 */
import type { CommandErrorCode, ProtocolErrorCode } from '../generated/schema-types.js';

export const WS_PATH = '/v1/ws';

/**
 * The subprotocol a client offers (and the server selects) on /v1/ws. Browsers that pass the token as
 * a `bearer.<token>` subprotocol must offer this one too: a browser fails the handshake unless the
 * server selects one of the offered subprotocols, and the server never echoes the token entry.
 */
export const SUBPROTOCOL = 'blockjob-gateway.v1';
export const BEARER_SUBPROTOCOL_PREFIX = 'bearer.';

/** The subprotocols a client offers: ours, plus the token for clients that cannot set headers. */
export function clientSubprotocols(token?: string): string[] {
  return token === undefined ? [SUBPROTOCOL] : [SUBPROTOCOL, BEARER_SUBPROTOCOL_PREFIX + token];
}

/** The subprotocol the server selects from those offered (`false`: select none). */
export function selectSubprotocol(offered: ReadonlySet<string>): string | false {
  return offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false;
}

export enum CloseCode {
  /** The client or server is done (client: after its last unsubscribe; server: never on its own). */
  Normal = 1000,
  /** The server is shutting down or restarting (drain). */
  GoingAway = 1001,
  /** An inbound text frame was not valid UTF-8 (RFC 6455 §8.1; the ws library closes it). */
  InvalidPayload = 1007,
  /** An inbound frame exceeded the maximum payload. */
  MessageTooBig = 1009,
  /** The client kept sending invalid messages (each was answered with an `error` first). */
  InvalidMessage = 4400,
  /** The token is missing, unknown or no longer valid. */
  Unauthenticated = 4401,
  /** The token does not allow this connection (e.g. an Origin outside the allowlist). */
  Forbidden = 4403,
  /** A message the protocol requires did not arrive in time (e.g. no answer to heartbeats). */
  Timeout = 4408,
  /** Too many connections for this token or this server, or inbound messages over the rate limit. */
  TooManyRequests = 4429,
  /** The server failed in a way it could not report per request. */
  InternalError = 4500,
  /** The client read too slowly: its send buffer passed the hard limit. */
  SlowConsumer = 4508,
}

/** What a client does after a close. */
export type CloseAction =
  /** Reconnect with jittered exponential backoff and resubscribe with `since`. */
  | 'reconnect-and-resume'
  /** As above, but wait long (tens of seconds) before the first attempt. */
  | 'reconnect-after-long-backoff'
  /** Get a valid token, then reconnect and resume. */
  | 'refresh-token-and-reconnect'
  /** A client bug: report it; reconnecting sends the same bad input again. */
  | 'fix-client'
  /** Do not reconnect. */
  | 'stop';

export interface CloseCodeInfo {
  code: number;
  name: string;
  meaning: string;
  action: CloseAction;
}

export const CLOSE_CODES: Readonly<Record<CloseCode, CloseCodeInfo>> = {
  [CloseCode.Normal]: { code: 1000, name: 'normal', meaning: 'normal closure', action: 'stop' },
  [CloseCode.GoingAway]: { code: 1001, name: 'going away', meaning: 'the server is draining for shutdown or restart', action: 'reconnect-and-resume' },
  [CloseCode.InvalidPayload]: { code: 1007, name: 'invalid frame payload', meaning: 'an inbound text frame was not valid UTF-8', action: 'fix-client' },
  [CloseCode.MessageTooBig]: { code: 1009, name: 'message too big', meaning: 'an inbound frame exceeded the maximum payload', action: 'fix-client' },
  [CloseCode.InvalidMessage]: { code: 4400, name: 'invalid message', meaning: 'too many invalid messages on this connection', action: 'fix-client' },
  [CloseCode.Unauthenticated]: { code: 4401, name: 'unauthenticated', meaning: 'the token is missing, unknown or no longer valid', action: 'refresh-token-and-reconnect' },
  [CloseCode.Forbidden]: { code: 4403, name: 'forbidden', meaning: 'the token or origin is not allowed this connection', action: 'stop' },
  [CloseCode.Timeout]: { code: 4408, name: 'timeout', meaning: 'a message the protocol requires did not arrive in time', action: 'reconnect-and-resume' },
  [CloseCode.TooManyRequests]: { code: 4429, name: 'too many requests', meaning: 'inbound message rate limit exceeded (too many connections for a token is refused at the upgrade with HTTP 429)', action: 'reconnect-after-long-backoff' },
  [CloseCode.InternalError]: { code: 4500, name: 'internal error', meaning: 'the server failed; state on the server side is intact', action: 'reconnect-and-resume' },
  [CloseCode.SlowConsumer]: { code: 4508, name: 'slow consumer', meaning: 'the client read too slowly; its buffer passed the hard limit', action: 'reconnect-and-resume' },
};

/**
 * What to do after any close code, including ones not in the table: 1005/1006 (no close frame, the
 * network dropped) and other 1xxx transport codes resume; unknown 44xx are client errors; unknown
 * 45xx are transient.
 */
export function closeAction(code: number): CloseAction {
  const known = CLOSE_CODES[code as CloseCode] as CloseCodeInfo | undefined;
  if (known) return known.action;
  if (code >= 4400 && code < 4500) return 'fix-client';
  if (code === 1002 || code === 1003 || code === 1007 || code === 1008 || code === 1010) return 'fix-client';
  return 'reconnect-and-resume';
}

export interface ErrorCodeInfo {
  meaning: string;
}

/** Codes of the `error` message (schema protocolErrorCode). */
export const PROTOCOL_ERROR_CODES: Readonly<Record<ProtocolErrorCode, ErrorCodeInfo>> = {
  invalid_message: { meaning: 'not JSON, or does not match the schema of its type; details name each failing field' },
  duplicate_sub: { meaning: 'a subscription with this `sub` is already active on this connection' },
  unknown_sub: { meaning: 'no active subscription with this `sub` on this connection' },
  unknown_vm: { meaning: 'filter.vms names a VM the gateway does not know' },
  forbidden: { meaning: "the token's VM allowlist does not cover the VMs asked for" },
  too_many_subscriptions: { meaning: 'the connection already has the maximum number of subscriptions' },
  rate_limited: { meaning: 'inbound messages over the rate limit; this one was dropped (persisting closes with 4429)' },
  internal: { meaning: 'the server failed to handle this request; it may be retried' },
};

export interface CommandErrorCodeInfo extends ErrorCodeInfo {
  /** Status of the same answer on the HTTP mirror (POST /v1/vms/{vm}/jobs/{job}/{action}). */
  httpStatus: number;
}

/** Codes of a failed `result` (schema commandErrorCode). */
export const COMMAND_ERROR_CODES: Readonly<Record<CommandErrorCode, CommandErrorCodeInfo>> = {
  invalid_message: { httpStatus: 400, meaning: 'the command does not match its schema; details name each failing field' },
  forbidden: { httpStatus: 403, meaning: 'the token lacks the control scope, or is not allowed this VM' },
  unknown_vm: { httpStatus: 404, meaning: 'no VM with this name' },
  unknown_job: { httpStatus: 404, meaning: 'no job with this id on the VM' },
  not_ready: { httpStatus: 409, meaning: 'complete with when=now, and the job is not ready; QEMU was not called' },
  verb_not_allowed: { httpStatus: 409, meaning: "the job's state does not allow this verb (see job.state); QEMU was not called" },
  not_supported: { httpStatus: 501, meaning: "the VM's backend cannot send this verb for this job (it lacks the verb, or the job belongs to another manager such as libvirt and is only observed); nothing was sent" },
  timeout: { httpStatus: 504, meaning: 'timeoutMs ran out while no verb was in flight: before it was sent (nothing was sent), or after QEMU accepted it while `await: concluded` waited for the end (see job)' },
  job_ended: { httpStatus: 409, meaning: 'the job concluded (see job.outcome) before the verb could be sent' },
  outcome_unknown: { httpStatus: 502, meaning: 'the verb was written but its answer never came: the monitor dropped, or QEMU did not reply within the QMP reply timeout (10 s) or what was left of timeoutMs, or (through a fleet edge) the owning host gateway did not answer in time; QEMU may have run it: watch the stream for what happened' },
  vm_disconnected: { httpStatus: 503, meaning: "the VM's monitor is down and the command cannot wait for it" },
  qmp_error: { httpStatus: 502, meaning: 'QEMU refused the verb; error.qmp holds its class and desc' },
  too_many_commands: { httpStatus: 429, meaning: 'the connection (on the HTTP mirror: the token) already has the maximum number of commands in flight (32 by default); nothing was sent' },
  internal: { httpStatus: 500, meaning: 'the server failed to handle the command' },
};
