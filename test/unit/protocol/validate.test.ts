import { describe, expect, it, vi } from 'vitest';
import {
  answerToRefusal,
  CLIENT_MESSAGE_SCHEMA,
  clientMessageTypes,
  commandDefaults,
  defaultProgressIntervalMs,
  isClientMessage,
  isServerMessage,
  MAX_ERROR_DETAILS,
  parseClientMessage,
  parseHttpCommand,
  schemaRegistry,
  SERVER_MESSAGE_SCHEMA,
  serverMessageTypes,
  validateServerMessage,
  wasValidated,
  type ErrorDetail,
} from '../../../src/protocol/index.js';
import type { JobState } from '../../../src/generated/schema-types.js';

const subscribe = { type: 'subscribe', id: '1', sub: 'a' };
const command = { type: 'command', id: 'c1', vm: 'vm1', job: 'j0' };

/** Messages a client may send, each with why it is worth checking. */
const validClientMessages: Array<[string, object]> = [
  ['minimal subscribe', subscribe],
  [
    'subscribe with every option',
    {
      ...subscribe,
      filter: { vms: ['vm1', 'vm-2.prod_3'], jobs: ['j0'], types: ['mirror', 'snapshot-save'], states: ['ready', 'concluded'] },
      since: { vm1: { epoch: 'k3J9-x_2', offset: 41 } },
      progress: { intervalMs: 1000 },
    },
  ],
  ['progress off', { ...subscribe, progress: { intervalMs: 0 } }],
  ['progress at its floor', { ...subscribe, progress: { intervalMs: 100 } }],
  ['since at offset 0 (resume before the first event)', { ...subscribe, since: { vm1: { epoch: 'e', offset: 0 } } }],
  ['unsubscribe', { type: 'unsubscribe', id: '2', sub: 'a' }],
  ['ping', { type: 'ping', id: '3' }],
  ['complete, all defaults', { ...command, action: 'complete' }],
  ['complete with every option', { ...command, action: 'complete', when: 'now', timeoutMs: 600000, await: 'concluded' }],
  ['soft cancel', { ...command, action: 'cancel', force: false }],
  ['set-speed to unlimited', { ...command, action: 'set-speed', speed: 0 }],
  ['finalize', { ...command, action: 'finalize', timeoutMs: 1 }],
];

/** Refused messages with the exact details the client gets. */
const invalidClientMessages: Array<[string, string, ErrorDetail[], string | undefined]> = [
  ['not JSON (cut short)', '{"type":', [{ path: '', message: 'is not valid JSON: Unexpected end of JSON input' }], undefined],
  // V8's message echoes the text ("Unexpected token 'a', "abc" is not valid JSON"): the detail keeps the reason only.
  ['not JSON (a bare word)', 'abc', [{ path: '', message: "is not valid JSON: Unexpected token 'a'" }], undefined],
  ['not JSON (a long bare word)', 'x'.repeat(100), [{ path: '', message: "is not valid JSON: Unexpected token 'x'" }], undefined],
  ['not JSON (with a position)', '{not json', [{ path: '', message: "is not valid JSON: Expected property name or '}' in JSON at position 1" }], undefined],
  ['an array', '[1,2]', [{ path: '', message: 'must be a JSON object with a "type", not an array' }], undefined],
  ['null', 'null', [{ path: '', message: 'must be a JSON object with a "type", not null' }], undefined],
  ['a string', '"subscribe"', [{ path: '', message: 'must be a JSON object with a "type", not a string' }], undefined],
  ['no type', '{"id":"1"}', [{ path: '/type', message: 'is required' }], '1'],
  ['type not a string', '{"type":7}', [{ path: '/type', message: 'must be a string, one of "subscribe", "unsubscribe", "ping", "command"' }], undefined],
  [
    'a server message type',
    '{"type":"pong","id":"9"}',
    [{ path: '/type', message: 'unknown client message type "pong"; must be one of "subscribe", "unsubscribe", "ping", "command"' }],
    '9',
  ],
  ['subscribe without sub', '{"type":"subscribe","id":"1"}', [{ path: '/sub', message: 'is required' }], '1'],
  ['empty id (not echoed)', '{"type":"ping","id":""}', [{ path: '/id', message: 'must not be empty' }], undefined],
  ['id too long (not echoed)', JSON.stringify({ type: 'ping', id: 'x'.repeat(65) }), [{ path: '/id', message: 'must be at most 64 characters long' }], undefined],
  ['numeric id', '{"type":"ping","id":3}', [{ path: '/id', message: 'must be a string' }], undefined],
  ['unknown field', JSON.stringify({ ...subscribe, filters: {} }), [{ path: '/filters', message: 'is not allowed (unknown field)' }], '1'],
  ['unknown filter field', JSON.stringify({ ...subscribe, filter: { vm: ['vm1'] } }), [{ path: '/filter/vm', message: 'is not allowed (unknown field)' }], '1'],
  [
    'bad VM name in filter',
    JSON.stringify({ ...subscribe, filter: { vms: ['vm 1'] } }),
    [{ path: '/filter/vms/0', message: 'must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]*$"' }],
    '1',
  ],
  ['empty vms filter', JSON.stringify({ ...subscribe, filter: { vms: [] } }), [{ path: '/filter/vms', message: 'must not be empty' }], '1'],
  [
    'repeated job in filter',
    JSON.stringify({ ...subscribe, filter: { jobs: ['j0', 'j0'] } }),
    [{ path: '/filter/jobs', message: 'must not repeat items (items 0 and 1 are equal)' }],
    '1',
  ],
  [
    'unknown state in filter',
    JSON.stringify({ ...subscribe, filter: { states: ['done'] } }),
    [{ path: '/filter/states/0', message: 'must be one of "created", "running", "paused", "ready", "standby", "waiting", "pending", "aborting", "concluded", "dismissed"' }],
    '1',
  ],
  [
    'too many VMs in filter',
    JSON.stringify({ ...subscribe, filter: { vms: Array.from({ length: 257 }, (_, i) => `vm${i}`) } }),
    [{ path: '/filter/vms', message: 'must have at most 256 items' }],
    '1',
  ],
  [
    'since keyed by a bad VM name',
    JSON.stringify({ ...subscribe, since: { 'vm/1': { epoch: 'e', offset: 1 } } }),
    [{ path: '/since/vm~11', message: 'key must match pattern "^[A-Za-z0-9][A-Za-z0-9._-]*$"' }],
    '1',
  ],
  [
    'since without offset, negative or fractional',
    JSON.stringify({ ...subscribe, since: { a: { epoch: 'e' }, b: { epoch: 'e', offset: -1 }, c: { epoch: 'e', offset: 1.5 } } }),
    [
      { path: '/since/a/offset', message: 'is required' },
      { path: '/since/b/offset', message: 'must be >= 0' },
      { path: '/since/c/offset', message: 'must be an integer' },
    ],
    '1',
  ],
  [
    'since epoch with odd characters',
    JSON.stringify({ ...subscribe, since: { vm1: { epoch: 'a b', offset: 1 } } }),
    [{ path: '/since/vm1/epoch', message: 'must match pattern "^[A-Za-z0-9_-]+$"' }],
    '1',
  ],
  [
    'since for too many VMs',
    JSON.stringify({ ...subscribe, since: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`vm${i}`, { epoch: 'e', offset: 1 }])) }),
    [{ path: '/since', message: 'must have at most 256 entries' }],
    '1',
  ],
  ['progress interval below the floor', JSON.stringify({ ...subscribe, progress: { intervalMs: 50 } }), [{ path: '/progress/intervalMs', message: 'must be 0 or >= 100' }], '1'],
  ['progress interval above the ceiling', JSON.stringify({ ...subscribe, progress: { intervalMs: 600001 } }), [{ path: '/progress/intervalMs', message: 'must be 0 or <= 600000' }], '1'],
  ['progress interval as text', JSON.stringify({ ...subscribe, progress: { intervalMs: '1000' } }), [{ path: '/progress/intervalMs', message: 'must be an integer' }], '1'],
  [
    'unknown action',
    JSON.stringify({ ...command, action: 'pivot' }),
    [{ path: '/action', message: 'must be one of "complete", "cancel", "pause", "resume", "set-speed", "finalize", "dismiss"' }],
    'c1',
  ],
  ['command without job', JSON.stringify({ type: 'command', id: 'c1', vm: 'vm1', action: 'pause' }), [{ path: '/job', message: 'is required' }], 'c1'],
  ['set-speed without speed', JSON.stringify({ ...command, action: 'set-speed' }), [{ path: '/speed', message: 'is required when action is "set-speed"' }], 'c1'],
  ['negative speed', JSON.stringify({ ...command, action: 'set-speed', speed: -1 }), [{ path: '/speed', message: 'must be >= 0' }], 'c1'],
  [
    'options of other verbs',
    JSON.stringify({ ...command, action: 'pause', speed: 1, force: true, when: 'now' }),
    [
      { path: '/speed', message: 'is not allowed unless action is "set-speed"' },
      { path: '/force', message: 'is not allowed unless action is "cancel"' },
      { path: '/when', message: 'is not allowed unless action is "complete"' },
    ],
    'c1',
  ],
  ['unknown when', JSON.stringify({ ...command, action: 'complete', when: 'soon' }), [{ path: '/when', message: 'must be one of "ready", "now"' }], 'c1'],
  ['timeout of 0', JSON.stringify({ ...command, action: 'complete', timeoutMs: 0 }), [{ path: '/timeoutMs', message: 'must be >= 1' }], 'c1'],
  ['timeout over a day', JSON.stringify({ ...command, action: 'complete', timeoutMs: 86400001 }), [{ path: '/timeoutMs', message: 'must be <= 86400000' }], 'c1'],
  ['unknown await', JSON.stringify({ ...command, action: 'complete', await: 'ready' }), [{ path: '/await', message: 'must be one of "accepted", "concluded"' }], 'c1'],
];

describe('parseClientMessage', () => {
  it.each(validClientMessages)('accepts %s', (_name, message) => {
    expect(parseClientMessage(JSON.stringify(message))).toEqual({ ok: true, message });
    expect(isClientMessage(message)).toBe(true);
  });

  it.each(invalidClientMessages)('refuses %s', (_name, text, details, id) => {
    const result = parseClientMessage(text);
    if (result.ok) throw new Error('expected a refusal');
    expect(result.error).toEqual({ code: 'invalid_message', message: expect.any(String), details });
    expect(result.id).toBe(id);
  });

  it('answers a refused command with its result, anything else with an error', () => {
    const refusedCommand = parseClientMessage(JSON.stringify({ ...command, action: 'set-speed' }));
    if (refusedCommand.ok) throw new Error('expected a refusal');
    expect(answerToRefusal(refusedCommand)).toEqual({ type: 'result', id: 'c1', ok: false, error: refusedCommand.error });
    const refusedSubscribe = parseClientMessage(JSON.stringify({ ...subscribe, sub: '' }));
    if (refusedSubscribe.ok) throw new Error('expected a refusal');
    expect(answerToRefusal(refusedSubscribe)).toEqual({ type: 'error', id: '1', ...refusedSubscribe.error });
    const idless = parseClientMessage(JSON.stringify({ type: 'command', action: 'pause' }));
    if (idless.ok) throw new Error('expected a refusal');
    expect(answerToRefusal(idless)).toMatchObject({ type: 'error', code: 'invalid_message' });
  });

  it.each(invalidClientMessages)('answers %s with a schema-valid error message', (_name, text) => {
    const result = parseClientMessage(text);
    if (result.ok) throw new Error('expected a refusal');
    expect(validateServerMessage(answerToRefusal(result))).toMatchObject({ ok: true });
  });

  it('sums the problems up in one line naming the first field', () => {
    const result = parseClientMessage(JSON.stringify({ ...command, action: 'pause', speed: 1, force: true }));
    expect(result.ok || result.error.message).toBe('invalid command message: /speed is not allowed unless action is "set-speed" (and 1 more)');
  });

  it('bounds the details of a message with very many problems', () => {
    const since = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`vm${i}`, { epoch: '!', offset: -1 }]));
    const result = parseClientMessage(JSON.stringify({ ...subscribe, since }));
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.details).toHaveLength(MAX_ERROR_DETAILS);
      expect(validateServerMessage(answerToRefusal(result)).ok).toBe(true);
    }
  });

  it('clips what it echoes of a huge invalid input', () => {
    const result = parseClientMessage(`{"type":"ping","id":"1",${'"x"'.repeat(30000)}`);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(validateServerMessage(answerToRefusal(result)).ok).toBe(true);
  });
});

describe('a text that is not JSON', () => {
  /** What JSON.parse threw while `run` ran (the parser is wrapped, then restored). */
  function thrownByJsonParse(run: () => void): unknown[] {
    const thrown: unknown[] = [];
    const original = JSON.parse;
    const parse = vi.spyOn(JSON, 'parse').mockImplementation((text, reviver) => {
      try {
        return original.call(JSON, text, reviver) as unknown;
      } catch (error) {
        thrown.push(error);
        throw error;
      }
    });
    try {
      run();
    } finally {
      parse.mockRestore();
    }
    return thrown;
  }

  it('is refused without a stack trace built for it, on the WebSocket and the HTTP entrance', () => {
    const thrown = thrownByJsonParse(() => {
      expect(parseClientMessage('{"type":"ping",').ok).toBe(false);
      expect(parseHttpCommand({ vm: 'vm1', job: 'j0', action: 'pause' }, '{when', 'h').ok).toBe(false);
    });
    expect(thrown).toHaveLength(2);
    for (const error of thrown) {
      expect(error).toBeInstanceOf(SyntaxError);
      // The message line only, no "    at ..." frame: a client sending garbage at its rate limit costs no stack walk.
      expect((error as Error).stack).not.toMatch(/\n\s+at /);
    }
    // Stack traces are on again afterwards.
    expect(new Error('x').stack).toMatch(/\n\s+at /);
  });

  it('is answered with the reason, on the HTTP entrance too', () => {
    const result = parseHttpCommand({ vm: 'vm1', job: 'j0', action: 'pause' }, 'nope', 'h');
    expect(result.ok || result.error).toEqual({ code: 'invalid_message', message: 'body is not valid JSON', details: [{ path: '', message: "is not valid JSON: Unexpected token 'o'" }] });
  });
});

describe('wasValidated', () => {
  it('knows exactly the objects that passed validation, so a handler behind a parser skips a second check', () => {
    const parsed = parseClientMessage('{"type":"command","id":"c1","vm":"vm1","job":"j","action":"pause"}');
    if (!parsed.ok) throw new Error('expected a valid command');
    expect(wasValidated(parsed.message)).toBe(true);
    expect(wasValidated({ ...parsed.message })).toBe(false);
    const refused = parseClientMessage('{"type":"command","id":"c2","vm":"vm1","job":"j","action":"set-speed"}');
    expect(refused.ok).toBe(false);
    const http = parseHttpCommand({ vm: 'vm1', job: 'j', action: 'pause' }, '', 'h1');
    expect(http.ok && wasValidated(http.message)).toBe(true);
  });
});

describe('parseHttpCommand', () => {
  const target = { vm: 'vm1', job: 'j0', action: 'complete' };

  it('builds the command from the URL and an empty body', () => {
    expect(parseHttpCommand(target, '', 'http-1')).toEqual({ ok: true, message: { type: 'command', id: 'http-1', ...target } });
  });

  it('takes options and the id from the body', () => {
    const result = parseHttpCommand(target, '{"id":"mine","when":"now","await":"concluded"}', 'http-1');
    expect(result).toEqual({ ok: true, message: { type: 'command', id: 'mine', ...target, when: 'now', await: 'concluded' } });
  });

  it('refuses URL fields in the body', () => {
    const result = parseHttpCommand(target, '{"vm":"vm2","action":"cancel"}', 'http-1');
    expect(result.ok || result.error.details).toEqual([
      { path: '/vm', message: 'is not allowed in the body (it comes from the URL)' },
      { path: '/action', message: 'is not allowed in the body (it comes from the URL)' },
    ]);
  });

  it('refuses a body that is not an object, and a bad action from the URL', () => {
    expect(parseHttpCommand(target, '[]', 'h').ok || 'refused').toBe('refused');
    const result = parseHttpCommand({ ...target, action: 'explode' }, '', 'h');
    expect(result.ok || result.error.details[0]?.path).toBe('/action');
    const speedless = parseHttpCommand({ ...target, action: 'set-speed' }, '{}', 'h');
    expect(speedless.ok || speedless.error.details).toEqual([{ path: '/speed', message: 'is required when action is "set-speed"' }]);
    // The cross-field rules of msg-command.schema.json hold for the assembled message (the controller does not repeat them).
    const stray = parseHttpCommand({ ...target, action: 'pause' }, '{"force":true,"when":"now"}', 'h');
    expect(stray.ok || stray.error.details.map((d) => d.path)).toEqual(['/force', '/when']);
  });
});

describe('validateServerMessage', () => {
  const job: JobState = {
    vm: 'vm1',
    id: 'j0',
    incarnation: 1,
    type: 'mirror',
    state: 'ready',
    ready: true,
    stale: false,
    progress: { current: 1048576, total: 1048576, percent: 100, rate: null, etaSeconds: null },
    updatedAt: '2026-11-25T20:31:07.412Z',
    stateSince: '2026-11-25T20:31:07.412Z',
    source: 'event',
  };

  it('accepts a result of each kind and names the field of the wrong one', () => {
    expect(validateServerMessage({ type: 'result', id: 'c1', ok: true, job }).ok).toBe(true);
    const failure = { type: 'result', id: 'c1', ok: false, error: { code: 'not_ready', message: 'job j0 is running, not ready' }, job };
    expect(validateServerMessage(failure).ok).toBe(true);
    expect(isServerMessage(failure)).toBe(true);
    // ok:false picks the failure branch, so the one real problem is reported, not both branches' noise.
    const result = validateServerMessage({ ...failure, error: { code: 'nope', message: 'x' } });
    expect(result.ok || result.error.details).toEqual([
      { path: '/error/code', message: expect.stringMatching(/^must be one of "invalid_message", "forbidden", /) },
    ]);
  });

  it('checks the embedded job state against job-state.schema.json', () => {
    const event = {
      type: 'event', sub: 'a', vm: 'vm1', epoch: 'e1', offset: 45, prev: 44, ts: '2026-11-25T20:31:07.412Z',
      job: { ...job, state: 'done' }, transition: { from: 'running', to: 'ready' }, source: 'event',
    };
    const result = validateServerMessage(event);
    expect(result.ok || result.error.details.map((d) => d.path)).toEqual(['/job/state']);
  });

  it('refuses a client message type', () => {
    const result = validateServerMessage({ type: 'ping', id: '1' });
    expect(result.ok || result.error.details[0]?.message).toMatch(/^unknown server message type "ping"/);
  });
});

describe('the union schemas (for other tools; the gateway routes by type)', () => {
  it('compile with their discriminator and agree with the routed validators', () => {
    const clientUnion = schemaRegistry().validator(CLIENT_MESSAGE_SCHEMA);
    for (const [, message] of validClientMessages) expect(clientUnion(message)).toBe(true);
    for (const [, text] of invalidClientMessages) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        continue;
      }
      expect([text, clientUnion(value)]).toEqual([text, false]);
    }
    const serverUnion = schemaRegistry().validator(SERVER_MESSAGE_SCHEMA);
    expect(serverUnion({ type: 'pong', id: '1' })).toBe(true);
    expect(serverUnion({ type: 'subscribe', id: '1', sub: 'a' })).toBe(false);
    expect(serverUnion.errors?.[0]).toMatchObject({ keyword: 'discriminator', params: { tagValue: 'subscribe' } });
  });
});

describe('defaults declared by the schemas', () => {
  it('are the ones issue 5 and PROTOCOL.md promise', () => {
    expect(commandDefaults()).toEqual({ when: 'ready', await: 'accepted', timeoutMs: 600000, force: false });
    expect(defaultProgressIntervalMs()).toBe(1000);
  });
});

describe('message types', () => {
  it('come from the union schemas', () => {
    expect(clientMessageTypes()).toEqual(['subscribe', 'unsubscribe', 'ping', 'command']);
    expect(serverMessageTypes()).toEqual([
      'welcome', 'subscribed', 'unsubscribed', 'state', 'synced', 'event', 'vm', 'progress', 'bookmark', 'pong', 'error', 'result',
    ]);
  });
});
