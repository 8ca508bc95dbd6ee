/**
 * XDR (RFC 4506), the subset libvirt's RPC uses: int, unsigned int, hyper, unsigned hyper,
 * bool/enum (as int), fixed opaque, bounded variable-length string and array, optional (`*T`).
 *
 * Hand-coded rather than a library: the client needs ~20 small types, libvirt's bounds (string
 * max, array max) must be enforced at decode time with a precise error, and the one well-kept XDR
 * package on npm is built around Stellar's generated schemas. Seventy lines of reader and writer
 * are easier to audit than that dependency.
 *
 * A reader never reads past its buffer: every failure is an XdrError naming what was being read
 * and where, which the client reports as a LibvirtProtocolError (fault `body`).
 */

/** A decode failure; `offset` is where in the body it happened. */
export class XdrError extends Error {
  override name = 'XdrError';
  /** The value decoded but bytes were left over (see end()). */
  trailing = false;
  constructor(message: string, readonly offset: number) {
    super(`${message} (at byte ${offset})`);
  }
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;

export class XdrReader {
  private offset = 0;

  constructor(private readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  get position(): number {
    return this.offset;
  }

  private need(bytes: number, what: string): void {
    if (this.remaining < bytes) throw new XdrError(`${what}: need ${bytes} bytes, ${this.remaining} left`, this.offset);
  }

  int(what = 'int'): number {
    this.need(4, what);
    const value = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  uint(what = 'unsigned int'): number {
    this.need(4, what);
    const value = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return value;
  }

  /** A hyper as a number; a value beyond 2^53 - 1 in magnitude is an error, never rounded. */
  hyper(what = 'hyper'): number {
    this.need(8, what);
    const value = this.buffer.readBigInt64BE(this.offset);
    return this.safe(value, what);
  }

  uhyper(what = 'unsigned hyper'): number {
    this.need(8, what);
    const value = this.buffer.readBigUInt64BE(this.offset);
    return this.safe(value, what);
  }

  private safe(value: bigint, what: string): number {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new XdrError(`${what}: ${value} is beyond 2^53 - 1`, this.offset);
    }
    this.offset += 8;
    return Number(value);
  }

  bool(what = 'bool'): boolean {
    const value = this.int(what);
    if (value !== 0 && value !== 1) throw new XdrError(`${what}: bool must be 0 or 1, got ${value}`, this.offset - 4);
    return value === 1;
  }

  fixedOpaque(length: number, what = 'opaque'): Buffer {
    this.need(length + pad4(length), what);
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length + pad4(length);
    return value;
  }

  /** `string<max>`; libvirt strings are UTF-8. */
  string(max: number, what = 'string'): string {
    const at = this.offset;
    const length = this.uint(`${what} length`);
    if (length > max) throw new XdrError(`${what}: length ${length} exceeds its bound ${max}`, at);
    return this.fixedOpaque(length, what).toString('utf8');
  }

  /** `T *`: a bool, then the value when true. */
  optional<T>(read: () => T, what = 'optional'): T | null {
    return this.bool(`${what} presence`) ? read() : null;
  }

  /** `T<max>`: a count, then that many values. */
  array<T>(max: number, read: () => T, what = 'array'): T[] {
    const at = this.offset;
    const count = this.uint(`${what} count`);
    if (count > max) throw new XdrError(`${what}: ${count} elements exceed its bound ${max}`, at);
    // Each element takes at least 4 bytes: a count the body cannot hold is caught before allocating.
    if (count * 4 > this.remaining) throw new XdrError(`${what}: ${count} elements cannot fit in ${this.remaining} bytes`, at);
    const values: T[] = [];
    for (let i = 0; i < count; i++) values.push(read());
    return values;
  }

  /** The body must be consumed exactly. */
  end(what: string): void {
    if (this.remaining === 0) return;
    const error = new XdrError(`${what}: ${this.remaining} bytes left over`, this.offset);
    error.trailing = true;
    throw error;
  }
}

/** Appends XDR items to a growing list of chunks; `toBuffer()` joins them. */
export class XdrWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;

  private push(chunk: Buffer): this {
    this.chunks.push(chunk);
    this.length += chunk.length;
    return this;
  }

  int(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value);
    return this.push(b);
  }

  uint(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(value);
    return this.push(b);
  }

  hyper(value: number): this {
    if (!Number.isSafeInteger(value)) throw new RangeError(`hyper must be a safe integer, got ${value}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigInt64BE(BigInt(value));
    return this.push(b);
  }

  uhyper(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`unsigned hyper must be a safe integer >= 0, got ${value}`);
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt(value));
    return this.push(b);
  }

  bool(value: boolean): this {
    return this.int(value ? 1 : 0);
  }

  fixedOpaque(bytes: Buffer): this {
    this.push(bytes);
    const padding = pad4(bytes.length);
    return padding ? this.push(Buffer.alloc(padding)) : this;
  }

  string(value: string): this {
    const bytes = Buffer.from(value, 'utf8');
    this.uint(bytes.length);
    return this.fixedOpaque(bytes);
  }

  optional<T>(value: T | null | undefined, write: (value: T) => void): this {
    if (value === null || value === undefined) return this.bool(false);
    this.bool(true);
    write(value);
    return this;
  }

  get byteLength(): number {
    return this.length;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}
