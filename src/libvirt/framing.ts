/**
 * Length framing of libvirt's RPC stream: each message is a 4-byte big-endian length (counting
 * itself), then a 24-byte header and the XDR body. Reads cut anywhere, so bytes are collected
 * until a whole message is present; one chunk may also carry many messages.
 *
 * Bound: a length below 28 or above 4 + maxMessageBytes (libvirt's own VIR_NET_MESSAGE_MAX by
 * default) is reported before anything of it is buffered. After a bad length the stream cannot be
 * re-synchronised (there is no marker to find), so the framer stops: the client drops the
 * connection. At most one message (<= maxMessageBytes + 4 bytes) is ever held.
 */
import { LibvirtProtocolError } from '../errors.js';
import { VIR_NET_MESSAGE_HEADER_BYTES, VIR_NET_MESSAGE_LEN_BYTES, VIR_NET_MESSAGE_MAX } from './constants.js';

const MIN_LENGTH = VIR_NET_MESSAGE_LEN_BYTES + VIR_NET_MESSAGE_HEADER_BYTES;

/** The first bytes of a message as hex, for error evidence. */
export function hexEvidence(bytes: Buffer, limit = 64): string {
  const head = bytes.subarray(0, limit).toString('hex');
  return bytes.length > limit ? `${head}… (${bytes.length} bytes)` : head;
}

export class RpcFramer {
  readonly maxMessageBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Length of the message being collected (with its length word); 0 until known. */
  private expected = 0;
  private failed = false;

  constructor(
    /** Gets header + body (the length word stripped), in stream order. */
    private readonly onMessage: (message: Buffer) => void,
    private readonly onError: (error: LibvirtProtocolError) => void,
    options: { maxMessageBytes?: number } = {},
  ) {
    const max = options.maxMessageBytes ?? VIR_NET_MESSAGE_MAX;
    if (!Number.isSafeInteger(max) || max < VIR_NET_MESSAGE_HEADER_BYTES || max > VIR_NET_MESSAGE_MAX) {
      throw new RangeError(`maxMessageBytes must be an integer in [${VIR_NET_MESSAGE_HEADER_BYTES}, ${VIR_NET_MESSAGE_MAX}], got ${max}`);
    }
    this.maxMessageBytes = max;
  }

  /** Bytes held for an unfinished message (never more than maxMessageBytes + 4). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (!this.failed) {
      if (this.expected === 0) {
        if (this.buffered < VIR_NET_MESSAGE_LEN_BYTES) return;
        const length = this.peekLength();
        if (length < MIN_LENGTH || length > this.maxMessageBytes + VIR_NET_MESSAGE_LEN_BYTES) {
          const head = this.take(Math.min(this.buffered, 64));
          this.fail(
            new LibvirtProtocolError(
              'frame-length',
              `message length ${length} is outside [${MIN_LENGTH}, ${this.maxMessageBytes + VIR_NET_MESSAGE_LEN_BYTES}]`,
              hexEvidence(head),
            ),
          );
          return;
        }
        this.expected = length;
      }
      if (this.buffered < this.expected) return;
      const message = this.take(this.expected).subarray(VIR_NET_MESSAGE_LEN_BYTES);
      this.expected = 0;
      this.onMessage(message);
    }
  }

  /** The stream ended: a message cut short is reported as `truncated`. */
  end(): void {
    if (!this.failed && this.buffered > 0) {
      const head = this.take(Math.min(this.buffered, 64));
      const expected = this.expected;
      this.fail(
        new LibvirtProtocolError(
          'truncated',
          expected ? `stream ended ${expected - head.length}+ bytes short of a ${expected}-byte message` : 'stream ended inside a length word',
          hexEvidence(head),
        ),
      );
      return;
    }
    this.stop();
  }

  /** Forget everything and deliver nothing more (also from the push in progress). Final. */
  stop(): void {
    this.chunks = [];
    this.buffered = 0;
    this.expected = 0;
    this.failed = true;
  }

  private fail(error: LibvirtProtocolError): void {
    this.stop();
    this.onError(error);
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    return Buffer.concat(this.chunks).readUInt32BE(0);
  }

  /** Remove and return the first `bytes` buffered bytes. */
  private take(bytes: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= bytes) {
      const out = first.subarray(0, bytes);
      if (first.length === bytes) this.chunks.shift();
      else this.chunks[0] = first.subarray(bytes);
      this.buffered -= bytes;
      return out;
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    const out = all.subarray(0, bytes);
    this.chunks = all.length > bytes ? [all.subarray(bytes)] : [];
    this.buffered -= bytes;
    return out;
  }
}
