/**
 * A WebSocket client on a bare TCP socket, for attacks the `ws` client cannot stage: reading at a
 * trickle (a few hundred bytes per tick, the rest waits in the kernel), and sending an upgrade a
 * byte at a time. It answers pings when it gets to read them, as any client would, and parses
 * text and close frames (server frames are never masked).
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface RawFrameLog {
  texts: string[];
  closeCode?: number;
  closed: boolean;
}

export class TrickleClient {
  readonly log: RawFrameLog = { texts: [], closed: false };
  private pending = Buffer.alloc(0);
  private timer: NodeJS.Timeout | undefined;

  private constructor(readonly socket: Socket) {
    socket.on('error', () => {});
    socket.on('close', () => {
      this.log.closed = true;
      if (this.timer) clearInterval(this.timer);
    });
  }

  /** Upgrades, then reads at most `bytesPerTick` every `tickMs` (paused in between). */
  static async open(port: number, path: string, bytesPerTick: number, tickMs: number): Promise<TrickleClient> {
    const socket = connect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.write(upgradeRequest(port, path));
    // The 101 and its headers are read at once; the trickle starts with the frames.
    const head = await new Promise<Buffer>((resolve, reject) => {
      let text = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        text = Buffer.concat([text, chunk]);
        const end = text.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        socket.pause();
        if (!text.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) reject(new Error(`upgrade refused: ${text.subarray(0, end).toString()}`));
        resolve(text.subarray(end + 4));
      };
      socket.on('data', onData);
    });
    const client = new TrickleClient(socket);
    client.consume(head);
    client.timer = setInterval(() => {
      const available = socket.readableLength;
      if (available === 0) {
        socket.read(0); // let the stream pull from the kernel
        return;
      }
      const chunk = socket.read(Math.min(bytesPerTick, available)) as Buffer | null;
      if (chunk) client.consume(chunk);
    }, tickMs);
    return client;
  }

  sendText(text: string): void {
    this.socket.write(maskedFrame(0x1, Buffer.from(text)));
  }

  destroy(): void {
    if (this.timer) clearInterval(this.timer);
    this.socket.destroy();
  }

  private consume(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    for (;;) {
      const frame = parseFrame(this.pending);
      if (!frame) return;
      this.pending = this.pending.subarray(frame.size);
      if (frame.opcode === 0x1) this.log.texts.push(frame.payload.toString());
      else if (frame.opcode === 0x9) this.socket.write(maskedFrame(0xa, frame.payload));
      else if (frame.opcode === 0x8) this.log.closeCode = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
    }
  }
}

/** The text of a WebSocket upgrade request to 127.0.0.1:port. */
export function upgradeRequest(port: number, path: string): string {
  return [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    'Sec-WebSocket-Version: 13',
    '',
    '',
  ].join('\r\n');
}

function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x80 | opcode, 0x80 | length]) : Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 0xff]);
  const body = Buffer.alloc(length);
  for (let i = 0; i < length; i++) body[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, mask, body]);
}

function parseFrame(data: Buffer): { opcode: number; payload: Buffer; size: number } | undefined {
  if (data.length < 2) return undefined;
  const opcode = data[0]! & 0x0f;
  let length = data[1]! & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (data.length < 4) return undefined;
    length = data.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (data.length < 10) return undefined;
    length = Number(data.readBigUInt64BE(2));
    offset = 10;
  }
  if (data.length < offset + length) return undefined;
  return { opcode, payload: data.subarray(offset, offset + length), size: offset + length };
}
