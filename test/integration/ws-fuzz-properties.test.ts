/**
 * Fuzzed frames over a real ws gateway on loopback (fast-check, fewer runs than the unit
 * properties): each run opens a connection and sends a few frames drawn from arbitrary JSON,
 * one-mistake variants of valid messages, valid messages, random text, binary, invalid UTF-8 and
 * oversized frames. Every answer must be a valid server message with a documented code; a close
 * must carry a documented close code, and the one its cause calls for; otherwise the connection
 * still answers a ping; and the gateway stays responsive (/healthz, a fresh connection's ping).
 * FUZZ_RUNS / 10 runs (at least 10).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOSE_CODES, COMMAND_ERROR_CODES, PROTOCOL_ERROR_CODES } from '../../src/protocol/codes.js';
import { messageSchemas } from '../../src/protocol/messages.js';
import { CLIENT_MESSAGE_SCHEMA } from '../../src/protocol/schemas.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import { FakeJobSource } from '../utils/fake-source.js';
import { Leftovers, TestClient, type Msg } from '../utils/gateway-support.js';
import { arbitraryOf, nearMisses, schemaFile } from '../utils/schema-arbitrary.js';

const runs = Math.max(10, Math.floor(Number(process.env.FUZZ_RUNS ?? 200) / 10));
const MAX_PAYLOAD = 2_048;
const MAX_INVALID = 5;

type Frame =
  | { kind: 'text'; text: string; valid: boolean }
  | { kind: 'binary'; bytes: Uint8Array }
  | { kind: 'bad-utf8'; bytes: Uint8Array }
  | { kind: 'oversized' };

const schemas = [...messageSchemas(CLIENT_MESSAGE_SCHEMA).values()].map((file) => ({ file, arbitrary: arbitraryOf(schemaFile(file)) }));
const valid = fc.oneof(...schemas.map(({ arbitrary }) => arbitrary));
const nearMiss = fc.oneof(...schemas.map(({ file, arbitrary }) => arbitrary.chain((value) => fc.constantFrom(...nearMisses(value, schemaFile(file))))));

const frame: fc.Arbitrary<Frame> = fc.oneof(
  { weight: 3, arbitrary: valid.map((value): Frame => ({ kind: 'text', text: JSON.stringify(value), valid: true })) },
  { weight: 3, arbitrary: nearMiss.map((miss): Frame => ({ kind: 'text', text: JSON.stringify(miss.value), valid: false })) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value): Frame => ({ kind: 'text', text: JSON.stringify(value), valid: false })) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 64 }).map((text): Frame => ({ kind: 'text', text, valid: false })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes): Frame => ({ kind: 'binary', bytes })) },
  // A lone continuation byte or a truncated sequence: never UTF-8.
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 16 }), fc.constantFrom([0x80], [0xc3], [0xff, 0xfe], [0xed, 0xa0, 0x80])).map(([text, bad]): Frame => ({ kind: 'bad-utf8', bytes: new Uint8Array([...Buffer.from(text), ...bad]) })) },
  { weight: 1, arbitrary: fc.constant<Frame>({ kind: 'oversized' }) },
);

/** The close code a sequence of frames calls for, if any: the first frame that ends the connection decides. */
function expectedClose(frames: Frame[]): number | undefined {
  let invalid = 0;
  for (const f of frames) {
    if (f.kind === 'oversized') return 1009;
    if (f.kind === 'bad-utf8') return 1007;
    if (f.kind === 'binary' || (f.kind === 'text' && !f.valid)) invalid++;
    if (invalid > MAX_INVALID) return 4400;
  }
  return undefined;
}

function send(client: TestClient, f: Frame): void {
  switch (f.kind) {
    case 'text':
      return client.ws.send(f.text);
    case 'binary':
      return client.ws.send(f.bytes, { binary: true });
    case 'bad-utf8':
      return client.ws.send(f.bytes, { binary: false });
    case 'oversized':
      return client.ws.send('x'.repeat(MAX_PAYLOAD + 1));
  }
}

/** Every code in an answer is one the protocol documents. */
function expectDocumentedCodes(m: Msg): void {
  if (m.type === 'error') expect(PROTOCOL_ERROR_CODES, JSON.stringify(m)).toHaveProperty(m.code);
  if (m.type === 'result' && m.ok === false) expect({ ...COMMAND_ERROR_CODES, ...PROTOCOL_ERROR_CODES }, JSON.stringify(m)).toHaveProperty(m.error.code);
}

describe('fuzzed frames over a real ws gateway (fast-check)', () => {
  const leftovers = new Leftovers();
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await leftovers.gateway({ source: new FakeJobSource(['vm1', 'vm-2']), maxPayload: MAX_PAYLOAD, inbound: { maxInvalid: MAX_INVALID } });
  });
  afterAll(() => leftovers.dispose());

  it('every frame gets a documented answer or close code, and the gateway stays responsive', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 8 }), async (frames) => {
        const client = await leftovers.client(gateway.wsUrl);
        await client.next((m) => m.type === 'welcome');
        for (const f of frames) send(client, f);
        const close = expectedClose(frames);
        client.send({ type: 'ping', id: 'probe' });
        if (close === undefined) {
          await client.next((m) => m.type === 'pong' && m.id === 'probe');
          // Each frame that is not a valid message was answered with invalid_message.
          const refusals = client.messages.filter((m) => (m.type === 'error' && m.code === 'invalid_message') || (m.type === 'result' && m.error?.code === 'invalid_message'));
          expect(refusals.length).toBe(frames.filter((f) => f.kind === 'binary' || (f.kind === 'text' && !f.valid)).length);
          client.ws.terminate();
        } else {
          const code = await client.closed;
          expect(CLOSE_CODES, `close ${code}`).toHaveProperty(String(code));
          expect(code).toBe(close);
        }
        expect(client.invalid).toEqual([]);
        for (const m of client.messages) expectDocumentedCodes(m);

        const health = await fetch(`${gateway.url}/healthz`);
        expect(health.status).toBe(200);
        const fresh = await TestClient.connect(gateway.wsUrl);
        fresh.send({ type: 'ping', id: 'again' });
        await fresh.next((m) => m.type === 'pong' && m.id === 'again');
        fresh.ws.terminate();
      }),
      { numRuns: runs },
    );
  });
});
