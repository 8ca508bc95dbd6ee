/**
 * Streaming JSON framing for QMP. QEMU writes one JSON object per message, ends lines in CRLF and,
 * with `pretty=on`, spreads a message over many lines; TCP/unix reads cut anywhere, including
 * inside a UTF-8 sequence. So messages are found by structure, not by newlines: a byte scanner
 * tracks nesting depth, strings and escapes, and each complete value is parsed once with
 * JSON.parse.
 *
 * All structural bytes (`{ } [ ] " \` and whitespace) are ASCII, and every byte of a multi-byte
 * UTF-8 sequence is >= 0x80, so scanning bytes is exact and decoding happens only once a value is
 * complete (a split code point is never decoded half).
 *
 * Bounds: bytes of an unfinished value are buffered up to `maxMessageBytes`; beyond that the value
 * is reported as oversized and the rest of it is skipped (scanned, not stored) until it ends. They
 * are copied into one growing buffer, not kept as the chunks they came in: a peer that sends one
 * byte per write would otherwise cost a Buffer object per byte (~100x the message's size).
 *
 * Recovery: a bad value (invalid JSON, a non-object, oversized) is reported through `onError` and
 * scanning resumes after it, so the framer itself never gets stuck. The QMP client treats any of
 * these as fatal for the connection anyway; recovery matters for other users and for `reset()`.
 */
import { QmpProtocolError } from '../errors.js';

/** A default generous enough for `query-qmp-schema` (~200 KiB on 7.2) and huge `query-named-block-nodes`. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Nesting QMP never needs (query-qmp-schema nests a handful of levels). JSON.parse of megabytes of
 * `[[[[...` costs hundreds of MB; such a value is reported and skipped (scanned, not stored).
 */
export const DEFAULT_MAX_DEPTH = 64;

const EMPTY = Buffer.alloc(0);
/** First capacity of the held bytes of a value that spans chunks. */
const MIN_HOLD_BYTES = 4096;

/** How much of an offending message an error keeps as evidence. */
const EVIDENCE_CHARS = 256;

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;

/** What kind of top-level value is being scanned. */
const enum Value {
  None,
  Container,
  String,
  Scalar,
}

export interface JsonFramerOptions {
  /** A value longer than this (in bytes) is a protocol error and is skipped. @default 4 MiB */
  maxMessageBytes?: number;
  /** A value nested deeper than this is a protocol error and is skipped. @default 64 */
  maxDepth?: number;
}

export type FramedMessage = Record<string, unknown>;

/**
 * Splits a byte stream into JSON objects.
 *
 * `onMessage(message, text)` gets each object with its source text (for logs) in stream order;
 * `onError(error)` gets a QmpProtocolError (with the offending text, truncated, as `received`) for
 * each bad value. If a callback calls `reset()`, the rest of the current chunk is dropped.
 */
export class JsonObjectFramer {
  readonly maxMessageBytes: number;
  readonly maxDepth: number;
  /** scan() found the value nested too deep: push() reports it (callbacks may reset). */
  private tooDeep = false;

  private value = Value.None;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private opener = 0;
  /** The unfinished value's bytes from earlier chunks: the first `heldBytes` of `held` (capacity doubles, up to the bound). */
  private held: Buffer = EMPTY;
  private heldBytes = 0;
  /** The unfinished value is oversized: keep scanning to find its end, store nothing. */
  private discarding = false;
  /** Bumped by reset(), so push() notices a reset made from inside a callback. */
  private generation = 0;

  constructor(
    private readonly onMessage: (message: FramedMessage, text: string) => void,
    private readonly onError: (error: QmpProtocolError) => void,
    options: JsonFramerOptions = {},
  ) {
    const max = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!Number.isSafeInteger(max) || max < 2) {
      throw new RangeError(`maxMessageBytes must be an integer >= 2, got ${max}`);
    }
    this.maxMessageBytes = max;
    this.maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  }

  /** Bytes held for an unfinished value (never more than maxMessageBytes). */
  get bufferedBytes(): number {
    return this.heldBytes;
  }

  /** Forget any unfinished value (e.g. after a reconnect) and stop processing the current chunk. */
  reset(): void {
    this.generation++;
    this.clearValue();
  }

  /**
   * The stream ended. An unfinished value is reported as a protocol error (a truncated message),
   * then the framer is reset.
   */
  end(): void {
    if (this.value !== Value.None && !this.discarding) {
      const text = this.held.toString('utf8', 0, this.heldBytes);
      this.reset();
      this.onError(new QmpProtocolError(`stream ended inside a message (${text.length} chars)`, evidence(text)));
      return;
    }
    this.reset();
  }

  push(chunk: Buffer): void {
    const generation = this.generation;
    const length = chunk.length;
    let start = 0; // where the current value starts in this chunk
    let i = 0;
    while (i < length) {
      if (this.value === Value.None) {
        const byte = chunk[i]!;
        if (byte === SPACE || byte === LF || byte === CR || byte === TAB) {
          i++;
          continue;
        }
        start = i++;
        if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
          this.value = Value.Container;
          this.opener = byte;
          this.depth = 1;
        } else if (byte === QUOTE) {
          this.value = Value.String;
        } else {
          this.value = Value.Scalar;
        }
        continue;
      }

      const end = this.scan(chunk, i);
      if (this.tooDeep) {
        this.tooDeep = false;
        const head = this.leadingBytes(chunk.subarray(start, end < 0 ? length : end));
        this.held = EMPTY;
        this.heldBytes = 0;
        this.onError(new QmpProtocolError(`message nested deeper than ${this.maxDepth} levels`, evidence(head.toString('utf8'))));
        if (this.generation !== generation) return;
      }
      if (end < 0) break; // the value continues in the next chunk
      i = end;
      this.complete(chunk, start, end);
      if (this.generation !== generation) return;
    }
    if (this.value !== Value.None) this.keep(chunk, start);
  }

  /**
   * Advance through the current value; return the index just past its end, or -1 if it does not
   * end in this chunk. A plain byte loop over locals: QMP strings are short, so per-string indexOf
   * calls (a native call each) measured slower than this.
   */
  private scan(chunk: Buffer, from: number): number {
    const length = chunk.length;
    let i = from;
    let escaped = this.escaped;
    switch (this.value) {
      case Value.Container: {
        let depth = this.depth;
        let inString = this.inString;
        for (; i < length; i++) {
          const byte = chunk[i]!;
          if (inString) {
            if (escaped) escaped = false;
            else if (byte === BACKSLASH) escaped = true;
            else if (byte === QUOTE) inString = false;
          } else if (byte === QUOTE) {
            inString = true;
          } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
            if (++depth > this.maxDepth && !this.discarding) {
              this.discarding = true;
              this.tooDeep = true;
            }
          } else if ((byte === CLOSE_BRACE || byte === CLOSE_BRACKET) && --depth === 0) {
            return i + 1;
          }
        }
        this.depth = depth;
        this.inString = inString;
        this.escaped = escaped;
        return -1;
      }
      case Value.String:
        for (; i < length; i++) {
          const byte = chunk[i]!;
          if (escaped) escaped = false;
          else if (byte === BACKSLASH) escaped = true;
          else if (byte === QUOTE) return i + 1;
        }
        this.escaped = escaped;
        return -1;
      case Value.Scalar:
        // A bare number/literal (or junk) ends where whitespace or another value starts.
        for (; i < length; i++) {
          const byte = chunk[i]!;
          if (
            byte === SPACE || byte === LF || byte === CR || byte === TAB ||
            byte === OPEN_BRACE || byte === OPEN_BRACKET || byte === QUOTE
          ) {
            return i;
          }
        }
        return -1;
      case Value.None:
        return from;
    }
  }

  /** Save the unfinished tail of a chunk, or switch to discarding once the value is too big. */
  private keep(chunk: Buffer, start: number): void {
    if (this.discarding) return;
    const tail = chunk.length - start;
    if (this.heldBytes + tail > this.maxMessageBytes) {
      const head = this.leadingBytes(chunk.subarray(start));
      const seen = this.heldBytes + tail;
      this.held = EMPTY;
      this.heldBytes = 0;
      this.discarding = true;
      this.onError(oversized(seen, this.maxMessageBytes, head, false));
      return;
    }
    this.hold(chunk, start, chunk.length);
  }

  private complete(chunk: Buffer, start: number, end: number): void {
    const discarded = this.discarding;
    const size = this.heldBytes + (end - start);
    let bytes: Buffer;
    if (this.heldBytes === 0) {
      bytes = chunk.subarray(start, end);
    } else if (discarded || size > this.maxMessageBytes) {
      bytes = this.leadingBytes(chunk.subarray(start, end));
    } else {
      this.hold(chunk, start, end);
      bytes = this.held.subarray(0, size);
    }
    const opener = this.value === Value.Container ? this.opener : 0;
    this.clearValue();
    if (discarded) return; // already reported when it grew too big
    if (size > this.maxMessageBytes) {
      this.onError(oversized(size, this.maxMessageBytes, bytes, true));
      return;
    }
    const text = bytes.toString('utf8');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      this.onError(new QmpProtocolError(`invalid JSON: ${(err as Error).message}`, evidence(text), { cause: err }));
      return;
    }
    if (opener !== OPEN_BRACE) {
      this.onError(new QmpProtocolError(`expected a JSON object, got ${jsonTypeName(parsed)}`, evidence(text)));
      return;
    }
    this.onMessage(parsed as FramedMessage, text);
  }

  /** Appends chunk[from, to) to the held bytes, growing the buffer by doubling (never past the bound). */
  private hold(chunk: Buffer, from: number, to: number): void {
    const needed = this.heldBytes + (to - from);
    if (needed > this.held.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.maxMessageBytes, Math.max(needed, 2 * this.held.length, MIN_HOLD_BYTES)));
      this.held.copy(grown, 0, 0, this.heldBytes);
      this.held = grown;
    }
    chunk.copy(this.held, this.heldBytes, from, to);
    this.heldBytes = needed;
  }

  /** The start of the value (held bytes, then `tail`), as evidence for an error. */
  private leadingBytes(tail: Buffer): Buffer {
    const limit = EVIDENCE_CHARS * 4;
    const held = this.held.subarray(0, Math.min(this.heldBytes, limit));
    return held.length >= limit ? held : Buffer.concat([held, tail.subarray(0, limit - held.length)]);
  }

  private clearValue(): void {
    this.value = Value.None;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
    this.opener = 0;
    this.held = EMPTY; // a big message's buffer is not kept for the next one
    this.heldBytes = 0;
    this.discarding = false;
    this.tooDeep = false;
  }
}

function oversized(size: number, max: number, head: Buffer, complete: boolean): QmpProtocolError {
  const text = head.toString('utf8', 0, Math.min(head.length, EVIDENCE_CHARS * 4));
  const amount = complete ? `${size} bytes` : `more than ${max} bytes (${size} so far)`;
  return new QmpProtocolError(`message too large: ${amount}, maxMessageBytes is ${max}`, evidence(text));
}


/** The offending text, cut to a readable size. */
export function evidence(text: string): string {
  return text.length <= EVIDENCE_CHARS ? text : `${text.slice(0, EVIDENCE_CHARS)}… (${text.length} chars)`;
}

function jsonTypeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
