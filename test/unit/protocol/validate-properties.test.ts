/**
 * Property tests of client message validation (fast-check): any text or JSON value is answered
 * without throwing, and every refusal is `invalid_message` with a specific message whose answer is
 * itself a valid server message; every message drawn from the schemas is accepted as it is; every
 * one-mistake variant of a valid message is refused with a detail at the field that is wrong.
 * FUZZ_RUNS sets the number of runs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_ERROR_CODES } from '../../../src/protocol/codes.js';
import { messageSchemas } from '../../../src/protocol/messages.js';
import { CLIENT_MESSAGE_SCHEMA } from '../../../src/protocol/schemas.js';
import { answerToRefusal, parseClientMessage, validateClientMessage, validateServerMessage, type Refusal } from '../../../src/protocol/validate.js';
import { arbitraryOf, nearMisses, schemaFile } from '../../utils/schema-arbitrary.js';

const runs = Number(process.env.FUZZ_RUNS ?? 200);

/** One arbitrary per client message type, from its schema. */
const byType = [...messageSchemas(CLIENT_MESSAGE_SCHEMA)].map(([type, file]) => ({ type, file, arbitrary: arbitraryOf(schemaFile(file)) }));
const validMessage = fc.oneof(...byType.map(({ file, arbitrary }) => arbitrary.map((value) => ({ file, value }))));

/** A refusal the protocol documents: its code, one line naming the problem, and details the answer can carry. */
function expectDocumentedRefusal(refusal: Refusal): void {
  expect(refusal.error.code).toBe('invalid_message');
  expect(PROTOCOL_ERROR_CODES).toHaveProperty(refusal.error.code);
  expect(refusal.error.details.length).toBeGreaterThan(0);
  for (const detail of refusal.error.details) expect(detail.message.length).toBeGreaterThan(0);
  // The one line names the problem (the first field's path when it is about a field), never a bare "invalid".
  const [first] = refusal.error.details;
  expect(refusal.error.message).not.toMatch(/^invalid( \w+)? message$/);
  if (first!.path !== '') expect(refusal.error.message).toContain(`${first!.path.slice(0, 60)}`);
  const answer = answerToRefusal(refusal);
  const check = validateServerMessage(answer);
  expect(check.ok, check.ok ? '' : check.error.message).toBe(true);
}

/** Some JSON text that may or may not be a message: any JSON value, or an object with a real type and junk. */
const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record({ type: fc.constantFrom('subscribe', 'unsubscribe', 'ping', 'command', 'pong', '__proto__', 'toString', ''), id: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: ['type'] }).chain((base) =>
    fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }).map((more) => ({ ...more, ...base })),
  ),
);

describe('client message validation (fast-check)', () => {
  it('any text frame is answered without throwing; a refusal is documented, specific and a valid server message', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), jsonish.map((v) => JSON.stringify(v))), (text) => {
        const result = parseClientMessage(text);
        if (!result.ok) expectDocumentedRefusal(result);
      }),
      { numRuns: runs },
    );
  });

  it('any parsed value is answered without throwing (prototype keys and deep nesting included)', () => {
    const hostile = fc.oneof(
      fc.anything({ maxDepth: 4, withNullPrototype: true, withObjectString: true }),
      fc.nat({ max: 2_000 }).map((depth) => JSON.parse(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`)),
      fc.integer({ min: 1, max: 2_000 }).map((depth) => ({ type: 'subscribe', id: '1', sub: 's', filter: JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`) })),
    );
    fc.assert(
      fc.property(hostile, (value) => {
        const result = validateClientMessage(value);
        if (!result.ok) expectDocumentedRefusal(result);
      }),
      { numRuns: runs },
    );
  });

  it('every message drawn from the schemas is accepted, as it is', () => {
    fc.assert(
      fc.property(validMessage, ({ value }) => {
        const result = parseClientMessage(JSON.stringify(value));
        expect(result.ok, result.ok ? '' : `${result.error.message} in ${JSON.stringify(value)}`).toBe(true);
        if (result.ok) expect(result.message).toEqual(value);
      }),
      { numRuns: runs },
    );
  });

  it('every one-mistake variant of a valid message is refused with a detail at the wrong field', () => {
    const nearMiss = validMessage.chain(({ file, value }) => {
      const misses = nearMisses(value, schemaFile(file));
      return fc.constantFrom(...misses);
    });
    fc.assert(
      fc.property(nearMiss, (miss) => {
        const result = parseClientMessage(JSON.stringify(miss.value));
        expect(result.ok, `${miss.mistake}: ${JSON.stringify(miss.value)} was accepted`).toBe(false);
        if (result.ok) return;
        expectDocumentedRefusal(result);
        const paths = result.error.details.map((d) => d.path);
        expect(paths, `${miss.mistake} in ${JSON.stringify(miss.value)}: ${result.error.message}`).toContain(miss.path);
      }),
      { numRuns: runs },
    );
  });
});
