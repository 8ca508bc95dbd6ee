import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { QmpProtocolError } from '../../../src/errors.js';
import { JsonObjectFramer, type FramedMessage, type JsonFramerOptions } from '../../../src/qmp/framing.js';

/** A framer that records everything it emits. */
function recorder(options?: JsonFramerOptions) {
  const messages: FramedMessage[] = [];
  const texts: string[] = [];
  const errors: QmpProtocolError[] = [];
  const framer = new JsonObjectFramer(
    (message, text) => {
      messages.push(message);
      texts.push(text);
    },
    (error) => errors.push(error),
    options,
  );
  const push = (...chunks: (string | Buffer)[]) => {
    for (const chunk of chunks) framer.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  };
  return { framer, messages, texts, errors, push };
}

/** Feed `bytes` cut at every boundary pair (i, j): three chunks. */
function everySplit(bytes: Buffer, check: (chunks: Buffer[]) => void): void {
  for (let i = 0; i <= bytes.length; i++) {
    for (let j = i; j <= bytes.length; j += Math.max(1, Math.floor(bytes.length / 17))) {
      check([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]);
    }
  }
}

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}\r\n';
const EVENT =
  '{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "JOB_STATUS_CHANGE", "data": {"status": "ready", "id": "j0"}}\r\n';
const TRICKY = String.raw`{"return": {"desc": "braces { [ in \"strings\" ] } and \\ backslash \\\" and \u00e9", "n": [1, {"a": "}"}]}, "id": "__bjg#1"}` + '\r\n';

describe('JsonObjectFramer', () => {
  it('splits QEMU output (CRLF-terminated objects) into messages, many per chunk, in order', () => {
    const r = recorder();
    r.push(GREETING + EVENT + TRICKY);
    expect(r.errors).toEqual([]);
    expect(r.messages).toEqual([JSON.parse(GREETING), JSON.parse(EVENT), JSON.parse(TRICKY)]);
    expect(r.texts[1]).toBe(EVENT.trimEnd());
    expect(r.framer.bufferedBytes).toBe(0);
  });

  it('yields the same messages however the stream is cut, including inside escapes and UTF-8 sequences', () => {
    const stream = Buffer.from(GREETING + TRICKY + '{"event":"X","data":{"s":"日本語 ✓ 🚀"}}' + EVENT, 'utf8');
    const expected = [JSON.parse(GREETING), JSON.parse(TRICKY), { event: 'X', data: { s: '日本語 ✓ 🚀' } }, JSON.parse(EVENT)];
    everySplit(stream, (chunks) => {
      const r = recorder();
      r.push(...chunks);
      expect(r.errors).toEqual([]);
      expect(r.messages).toEqual(expected);
    });
  });

  it('handles one byte per chunk', () => {
    const r = recorder();
    const bytes = Buffer.from(TRICKY + EVENT);
    for (let i = 0; i < bytes.length; i++) r.push(bytes.subarray(i, i + 1));
    expect(r.messages).toEqual([JSON.parse(TRICKY), JSON.parse(EVENT)]);
  });

  it('parses pretty-printed multi-line messages (pretty=on) with whitespace between them', () => {
    const pretty = JSON.stringify(JSON.parse(EVENT), null, 4).replaceAll('\n', '\r\n');
    const r = recorder();
    r.push(`\r\n  ${pretty}\r\n\t\n${pretty}   `);
    expect(r.errors).toEqual([]);
    expect(r.messages).toEqual([JSON.parse(EVENT), JSON.parse(EVENT)]);
  });

  it('parses objects that follow each other with no separator', () => {
    const r = recorder();
    r.push('{"a":1}{"b":{"c":[]}}{"d":"}{"}');
    expect(r.messages).toEqual([{ a: 1 }, { b: { c: [] } }, { d: '}{' }]);
  });

  it('reports invalid JSON with the offending text and recovers at the next message', () => {
    const r = recorder();
    r.push('{"execute": }\r\n', EVENT);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toBeInstanceOf(QmpProtocolError);
    expect(r.errors[0]!.code).toBe('QMP_ERR_PROTOCOL');
    expect(r.errors[0]!.message).toMatch(/^invalid JSON/);
    expect(r.errors[0]!.received).toBe('{"execute": }');
    expect(r.messages).toEqual([JSON.parse(EVENT)]);
  });

  it.each([
    ['42', 'a number'],
    ['[1, {"a": 2}]', 'an array'],
    ['"x y"', 'a string'],
    ['true', 'a boolean'],
    ['null', 'null'],
  ])('reports non-object JSON %s as %s', (text, kind) => {
    const r = recorder();
    r.push(`${text}\r\n{"ok":1}\r\n`);
    expect(r.errors.map((e) => e.message)).toEqual([`expected a JSON object, got ${kind}`]);
    expect(r.errors[0]!.received).toBe(text);
    expect(r.messages).toEqual([{ ok: 1 }]);
  });

  it('reports stray junk between messages as invalid JSON', () => {
    const r = recorder();
    r.push('{"a":1}}\r\n{"b":2}');
    expect(r.messages).toEqual([{ a: 1 }, { b: 2 }]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.received).toBe('}');
  });

  it('waits for a delimiter before judging a bare scalar split across chunks', () => {
    const r = recorder();
    r.push('4', '2');
    expect(r.errors).toEqual([]);
    r.push(' ');
    expect(r.errors.map((e) => e.received)).toEqual(['42']);
  });

  it('rejects a single oversized message that arrives in one chunk, then continues', () => {
    const r = recorder({ maxMessageBytes: 64 });
    const big = JSON.stringify({ data: 'x'.repeat(100) });
    r.push(`${big}\r\n{"small":true}\r\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toBe(`message too large: ${Buffer.byteLength(big)} bytes, maxMessageBytes is 64`);
    expect(r.messages).toEqual([{ small: true }]);
  });

  it('never buffers more than maxMessageBytes of a runaway stream, reports it once, and resyncs after it ends', () => {
    const max = 1024;
    const r = recorder({ maxMessageBytes: max });
    r.push('{"data": "');
    for (let i = 0; i < 200; i++) {
      r.push('y'.repeat(100) + '{[\\"');
      expect(r.framer.bufferedBytes).toBeLessThanOrEqual(max);
    }
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/message too large: more than 1024 bytes/);
    expect(r.errors[0]!.received).toMatch(/^\{"data": "y/);
    expect(r.errors[0]!.received!.length).toBeLessThan(400);
    r.push('"}\r\n{"next":1}');
    expect(r.framer.bufferedBytes).toBe(0);
    expect(r.errors).toHaveLength(1);
    expect(r.messages).toEqual([{ next: 1 }]);
  });

  it('truncates long evidence', () => {
    const r = recorder();
    const long = `{"a": ${'1'.repeat(5000)}x}`;
    r.push(long);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.received!.length).toBeLessThan(320);
    expect(r.errors[0]!.received).toMatch(/… \(5008 chars\)$/);
  });

  it('reports a message cut short by the end of the stream', () => {
    const r = recorder();
    r.push('{"event": "X", "data": {');
    r.framer.end();
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/stream ended inside a message/);
    expect(r.framer.bufferedBytes).toBe(0);
  });

  it('stops processing the current chunk when a callback resets it', () => {
    const messages: FramedMessage[] = [];
    const framer: JsonObjectFramer = new JsonObjectFramer(
      (message) => {
        messages.push(message);
        framer.reset();
      },
      () => {},
    );
    framer.push(Buffer.from('{"a":1}{"b":2}{"c":'));
    expect(messages).toEqual([{ a: 1 }]);
    expect(framer.bufferedBytes).toBe(0);
    framer.push(Buffer.from('{"d":4}'));
    expect(messages).toEqual([{ a: 1 }, { d: 4 }]);
  });

  it('refuses a nonsensical limit', () => {
    expect(() => new JsonObjectFramer(() => {}, () => {}, { maxMessageBytes: 0 })).toThrow(RangeError);
  });
});

describe('a message sent one byte at a time (issue 15: hostile peer modes)', () => {
  it('holds about its size, not a Buffer per byte (it cost ~100x its size before)', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const size = 1024 * 1024;
    const bytes = Buffer.from(JSON.stringify({ event: 'DRIP', data: { blob: 'd'.repeat(size) } }));
    const { framer, messages, errors } = recorder();
    gc();
    const before = process.memoryUsage();
    // Each byte in a Buffer of its own, as each read of a socket written one byte at a time is.
    for (let i = 0; i < bytes.length - 1; i++) framer.push(Buffer.from(bytes.subarray(i, i + 1)));
    gc();
    const after = process.memoryUsage();
    const grownMiB = (after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / 1024 / 1024;
    expect(framer.bufferedBytes).toBe(bytes.length - 1);
    expect(grownMiB).toBeLessThan(4);
    framer.push(bytes.subarray(bytes.length - 1));
    expect(errors).toEqual([]);
    expect((messages[0]!.data as { blob: string }).blob).toHaveLength(size);
    expect(framer.bufferedBytes).toBe(0);
  });
});
