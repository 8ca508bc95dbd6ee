/**
 * A lean WebSocket client for burst measurements: a raw TCP socket that reads into one buffer shared
 * by every socket of the process (net's `onread`: no stream machinery, no Buffer per read), a minimal
 * RFC 6455 frame reader, and each frame's receive time taken when its bytes arrive.
 *
 * Why: one subscriber process receiving a burst of 10,000 frames through the `ws` client spent more
 * CPU per frame (about 13-14 µs) than the server spent writing it (about 10 µs), so "last subscriber"
 * measured the receivers, not the server. This client costs about half as much. The bench uses it for
 * the gateway and the bare `ws` baseline alike; it answers pings (the gateway's heartbeats and read
 * probes) and closes, which is all a server asks of a client that only listens.
 */
import { randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';

/** One read's worth for all sockets: a burst frame is ~600 B, a snapshot batch ~40 KiB. */
const shared = Buffer.allocUnsafe(256 * 1024);
const END_OF_HEAD = Buffer.from('\r\n\r\n');

export interface LeanHandlers {
  /** The upgrade was answered with 101. */
  opened(): void;
  /** A text frame's payload; `bytes` is only valid during the call. `recv`: when its last bytes were read. */
  text(bytes: Buffer, start: number, end: number, recv: number): void;
  closed(code: number): void;
}

export class LeanWebSocket {
  private readonly socket: net.Socket;
  private upgraded = false;
  /** Bytes of an incomplete frame (or response head) carried to the next read. */
  private rest: Buffer | undefined;
  private closedCode: number | undefined;

  constructor(url: string, private readonly handlers: LeanHandlers) {
    const { hostname, port, pathname } = new URL(url);
    this.socket = net.connect({ host: hostname, port: Number(port), onread: { buffer: shared, callback: (n, buf) => this.onRead(n, buf as Buffer) } });
    this.socket.setNoDelay(true);
    this.socket.on('connect', () => {
      const key = randomBytes(16).toString('base64');
      this.socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closedCode ??= 1006;
      this.handlers.closed(this.closedCode);
    });
  }

  get open(): boolean {
    return this.upgraded && this.closedCode === undefined;
  }

  /** A masked text frame (clients must mask). */
  sendText(text: string): void {
    this.sendFrame(0x1, Buffer.from(text));
  }

  terminate(): void {
    this.socket.destroy();
  }

  private onRead(nread: number, buf: Buffer): boolean {
    const recv = performance.timeOrigin + performance.now();
    let bytes = buf;
    let at = 0;
    let end = nread;
    if (this.rest) {
      bytes = Buffer.concat([this.rest, buf.subarray(0, nread)]);
      end = bytes.length;
      this.rest = undefined;
    }
    if (!this.upgraded) {
      const head = bytes.indexOf(END_OF_HEAD);
      if (head < 0 || head >= end) {
        this.rest = Buffer.from(bytes.subarray(0, end));
        return true;
      }
      if (bytes.toString('latin1', 0, 12) !== 'HTTP/1.1 101') {
        this.socket.destroy();
        return false;
      }
      this.upgraded = true;
      at = head + END_OF_HEAD.length;
      this.handlers.opened();
    }
    while (at < end) {
      const frameEnd = this.frame(bytes, at, end, recv);
      if (frameEnd < 0) {
        this.rest = Buffer.from(bytes.subarray(at, end));
        break;
      }
      at = frameEnd;
    }
    return true;
  }

  /** Handles the frame at `at` and returns where it ends, or -1 when it is not all here yet. */
  private frame(bytes: Buffer, at: number, end: number, recv: number): number {
    if (end - at < 2) return -1;
    const opcode = bytes[at]! & 0x0f;
    let length = bytes[at + 1]! & 0x7f;
    let start = at + 2;
    if (length === 126) {
      if (end - at < 4) return -1;
      length = bytes.readUInt16BE(at + 2);
      start = at + 4;
    } else if (length === 127) {
      if (end - at < 10) return -1;
      length = Number(bytes.readBigUInt64BE(at + 2));
      start = at + 10;
    }
    const frameEnd = start + length;
    if (frameEnd > end) return -1;
    if (opcode === 0x1) this.handlers.text(bytes, start, frameEnd, recv);
    else if (opcode === 0x9) this.sendFrame(0xa, Buffer.from(bytes.subarray(start, frameEnd)));
    else if (opcode === 0x8) {
      this.closedCode = length >= 2 ? bytes.readUInt16BE(start) : 1005;
      this.sendFrame(0x8, Buffer.from(bytes.subarray(start, Math.min(frameEnd, start + 2))));
      this.socket.end();
    }
    return frameEnd;
  }

  private sendFrame(opcode: number, payload: Buffer): void {
    if (this.socket.destroyed) return;
    const length = payload.length;
    const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
    const frame = Buffer.allocUnsafe(header + 4 + length);
    frame[0] = 0x80 | opcode;
    if (header === 2) frame[1] = 0x80 | length;
    else if (header === 4) {
      frame[1] = 0x80 | 126;
      frame.writeUInt16BE(length, 2);
    } else {
      frame[1] = 0x80 | 127;
      frame.writeBigUInt64BE(BigInt(length), 2);
    }
    const mask = frame.subarray(header, header + 4);
    randomFillSync(mask);
    for (let i = 0; i < length; i++) frame[header + 4 + i] = payload[i]! ^ mask[i & 3]!;
    this.socket.write(frame);
  }
}
