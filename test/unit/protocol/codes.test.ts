import { describe, expect, it } from 'vitest';
import {
  CLOSE_CODES,
  CloseCode,
  closeAction,
  clientSubprotocols,
  COMMAND_ERROR_CODES,
  PROTOCOL_ERROR_CODES,
  schemaRegistry,
  selectSubprotocol,
  SUBPROTOCOL,
} from '../../../src/protocol/index.js';

const commonDefinition = (name: string): { enum: string[] } =>
  (schemaRegistry().documents.get('protocol-common.schema.json')!.definitions as Record<string, { enum: string[] }>)[name]!;

describe('error codes', () => {
  it('describe exactly the codes the schemas allow', () => {
    expect(Object.keys(PROTOCOL_ERROR_CODES).sort()).toEqual([...commonDefinition('protocolErrorCode').enum].sort());
    expect(Object.keys(COMMAND_ERROR_CODES).sort()).toEqual([...commonDefinition('commandErrorCode').enum].sort());
  });

  it('include the codes issues 4 and 5 require', () => {
    expect(Object.keys(PROTOCOL_ERROR_CODES)).toEqual(
      expect.arrayContaining(['invalid_message', 'duplicate_sub', 'unknown_sub', 'unknown_vm', 'forbidden', 'too_many_subscriptions']),
    );
    expect(Object.keys(COMMAND_ERROR_CODES)).toEqual(
      expect.arrayContaining([
        'forbidden', 'unknown_vm', 'unknown_job', 'not_ready', 'verb_not_allowed', 'timeout', 'job_ended', 'outcome_unknown', 'qmp_error', 'invalid_message',
      ]),
    );
  });

  it('map command failures to client (4xx) and server-side (5xx) HTTP statuses', () => {
    expect(COMMAND_ERROR_CODES.forbidden.httpStatus).toBe(403);
    expect(COMMAND_ERROR_CODES.unknown_job.httpStatus).toBe(404);
    expect(COMMAND_ERROR_CODES.not_ready.httpStatus).toBe(409);
    expect(COMMAND_ERROR_CODES.outcome_unknown.httpStatus).toBeGreaterThanOrEqual(500);
  });
});

describe('close codes', () => {
  it('list each code once, under its own number', () => {
    for (const [key, info] of Object.entries(CLOSE_CODES)) expect(info.code).toBe(Number(key));
    expect(Object.keys(CLOSE_CODES).map(Number)).toEqual([1000, 1001, 1007, 1009, 4400, 4401, 4403, 4408, 4429, 4500, 4508]);
  });

  it('tell the client to resume after every 45xx and after transport drops', () => {
    for (const code of [CloseCode.InternalError, CloseCode.SlowConsumer, 4599, CloseCode.GoingAway, 1006, 1005, 1011, 1012]) {
      expect([code, closeAction(code)]).toEqual([code, 'reconnect-and-resume']);
    }
  });

  it('tell the client not to retry blindly after client faults', () => {
    expect(closeAction(CloseCode.InvalidMessage)).toBe('fix-client');
    expect(closeAction(CloseCode.MessageTooBig)).toBe('fix-client');
    expect(closeAction(4499)).toBe('fix-client');
    expect(closeAction(1008)).toBe('fix-client');
    expect(closeAction(CloseCode.Forbidden)).toBe('stop');
    expect(closeAction(CloseCode.Normal)).toBe('stop');
    expect(closeAction(CloseCode.Unauthenticated)).toBe('refresh-token-and-reconnect');
    expect(closeAction(CloseCode.TooManyRequests)).toBe('reconnect-after-long-backoff');
  });
});

describe('subprotocols', () => {
  it('offer ours, plus the token entry when there is a token', () => {
    expect(clientSubprotocols()).toEqual([SUBPROTOCOL]);
    expect(clientSubprotocols('s3cr3t')).toEqual([SUBPROTOCOL, 'bearer.s3cr3t']);
  });

  it('select ours and never echo the token entry', () => {
    expect(selectSubprotocol(new Set(clientSubprotocols('s3cr3t')))).toBe(SUBPROTOCOL);
    expect(selectSubprotocol(new Set(['bearer.s3cr3t']))).toBe(false);
    expect(selectSubprotocol(new Set())).toBe(false);
  });
});
