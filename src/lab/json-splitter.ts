/**
 * A minimal streaming splitter for a stream of JSON objects (QMP framing): it tracks brace depth
 * and strings, so CRLF, pretty-printed multi-line objects, several objects per chunk and one
 * object across chunks all work. It does not validate JSON (JSON.parse does that per object).
 * Deliberately independent of src/qmp, so the lab and the scripted peer can test the real client.
 */
import { StringDecoder } from 'node:string_decoder';
import { QmpProtocolError } from '../errors.js';

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

export class JsonObjectSplitter {
  private readonly decoder = new StringDecoder('utf8');
  /** Text of the object being read, before the current chunk. */
  private pending = '';
  private depth = 0;
  private inString = false;
  private escaped = false;

  /** @param maxMessageChars an object longer than this is a protocol error (the buffer stays bounded). */
  constructor(readonly maxMessageChars = 8 * 1024 * 1024) {}

  /** Feeds a chunk; returns the complete top-level objects it finished, as JSON text. */
  push(chunk: Buffer | string): string[] {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const complete: string[] = [];
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (this.depth === 0) {
        if (code === OPEN_BRACE) {
          this.depth = 1;
          start = i;
        } else if (!isWhitespace(code)) {
          throw new QmpProtocolError(`expected a JSON object, got ${JSON.stringify(text[i])}`, text.slice(i, i + 80));
        }
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (code === BACKSLASH) this.escaped = true;
        else if (code === QUOTE) this.inString = false;
        continue;
      }
      if (code === QUOTE) this.inString = true;
      else if (code === OPEN_BRACE || code === OPEN_BRACKET) this.depth++;
      else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
        this.depth--;
        if (this.depth === 0) {
          complete.push(this.checkSize(this.pending + text.slice(start, i + 1)));
          this.pending = '';
          start = -1;
        }
      }
    }
    if (this.depth > 0 && start >= 0) this.pending = this.checkSize(this.pending + text.slice(start));
    return complete;
  }

  private checkSize(message: string): string {
    if (message.length > this.maxMessageChars) throw new QmpProtocolError(`message longer than ${this.maxMessageChars} characters`);
    return message;
  }
}

/** Parses one framed object; a non-object or invalid JSON is a protocol error. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new QmpProtocolError('invalid JSON', text.slice(0, 200), { cause });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new QmpProtocolError('expected a JSON object', text.slice(0, 200));
  }
  return value as Record<string, unknown>;
}
