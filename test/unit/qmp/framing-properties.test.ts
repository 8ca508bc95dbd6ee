/**
 * Property tests of the QMP framer (fast-check): any chunking of a stream of objects yields the same
 * objects; garbage never throws and never grows the buffer past its bound; nesting deeper than
 * maxDepth is reported and skipped without parsing, and the stream goes on. FUZZ_RUNS sets the
 * number of runs (default modest, for npm test).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonObjectFramer } from '../../../src/qmp/framing.js';

const runs = Number(process.env.FUZZ_RUNS ?? 200);

function frame(chunks: Buffer[], options: { maxMessageBytes?: number; maxDepth?: number } = {}) {
  const messages: unknown[] = [];
  const errors: string[] = [];
  let maxBuffered = 0;
  const framer = new JsonObjectFramer((m) => messages.push(m), (e) => errors.push(e.message), options);
  for (const chunk of chunks) {
    framer.push(chunk);
    maxBuffered = Math.max(maxBuffered, framer.bufferedBytes);
  }
  return { messages, errors, maxBuffered };
}

/** Cut `bytes` at the given (sorted, deduplicated) positions. */
function cut(bytes: Buffer, positions: number[]): Buffer[] {
  const points = [...new Set(positions.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    chunks.push(bytes.subarray(last, p));
    last = p;
  }
  chunks.push(bytes.subarray(last));
  return chunks;
}

const qmpObject = fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 5 });

describe('QMP framing properties', () => {
  it('any chunking of a stream of objects (CRLF, pretty or compact) yields the same objects, no error', () => {
    fc.assert(
      fc.property(fc.array(qmpObject, { minLength: 1, maxLength: 6 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 12 }), (objects, pretty, positions) => {
        const text = objects.map((o) => JSON.stringify(o, null, pretty ? 2 : undefined).replace(/\n/g, '\r\n')).join('\r\n') + '\r\n';
        const { messages, errors } = frame(cut(Buffer.from(text, 'utf8'), positions));
        expect(errors).toEqual([]);
        expect(messages).toEqual(objects.map((o) => JSON.parse(JSON.stringify(o))));
      }),
      { numRuns: runs },
    );
  });

  it('arbitrary bytes never throw and never buffer more than maxMessageBytes', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 10 }), (chunks) => {
        const { maxBuffered } = frame(chunks.map((c) => Buffer.from(c)), { maxMessageBytes: 256 });
        expect(maxBuffered).toBeLessThanOrEqual(256);
      }),
      { numRuns: runs },
    );
  });

  it('nesting deeper than maxDepth is one error, nothing buffered, and the next object still arrives', () => {
    fc.assert(
      fc.property(fc.integer({ min: 9, max: 5_000 }), fc.constantFrom('[', '{"a":'), fc.array(fc.nat(), { maxLength: 8 }), (depth, open, positions) => {
        const close = open === '[' ? ']' : '}';
        const deep = open.repeat(depth) + '1' + close.repeat(depth);
        const text = `${deep}\r\n{"return":{}}\r\n`;
        const { messages, errors, maxBuffered } = frame(cut(Buffer.from(text), positions), { maxDepth: 8 });
        expect(errors).toEqual([expect.stringMatching(/nested deeper than 8 levels/)]);
        expect(messages).toEqual([{ return: {} }]);
        expect(maxBuffered).toBeLessThan(8 * 6 + 16);
      }),
      { numRuns: runs },
    );
  });

  it('4 MiB of nesting costs no parse: skipped with one error', () => {
    const depth = 2 * 1024 * 1024;
    const { messages, errors } = frame([Buffer.from('['.repeat(depth) + ']'.repeat(depth) + '{"event":"X"}')]);
    expect(errors).toHaveLength(1);
    expect(messages).toEqual([{ event: 'X' }]);
  });
});
