// Whatever libvirtd (or an impostor on its socket) writes, the client never throws, never crashes
// the process, and reports only typed LibvirtErrors; then it gets a clean session back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { firstValueFrom } from 'rxjs';
import { LibvirtError, LibvirtProtocolError } from '../../../src/errors.js';
import { LibvirtClient } from '../../../src/libvirt/client.js';
import { decodeBody, readBlockJobInfo, readDomainList, readRemoteError } from '../../../src/libvirt/codec.js';
import * as c from '../../../src/libvirt/constants.js';
import { encodeMessage } from '../../../src/libvirt/codec.js';
import { decodeEvent } from '../../../src/libvirt/events.js';
import { RpcFramer } from '../../../src/libvirt/framing.js';
import { XdrError } from '../../../src/libvirt/xdr.js';
import { LibvirtPeer } from '../../utils/libvirt-peer.js';

const body = fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes));

describe('decoders on arbitrary bytes', () => {
  it('throw only XdrError or LibvirtProtocolError', () => {
    fc.assert(
      fc.property(body, fc.constantFrom(318, 339, 6), (bytes, proc) => {
        for (const decode of [
          () => decodeEvent(proc === 6 ? c.QEMU_PROGRAM : c.REMOTE_PROGRAM, proc, bytes),
          () => decodeBody(bytes, 'info', readBlockJobInfo),
          () => decodeBody(bytes, 'list', readDomainList),
          () => decodeBody(bytes, 'error', readRemoteError),
        ]) {
          try {
            decode();
          } catch (err) {
            expect(err instanceof XdrError || err instanceof LibvirtProtocolError, String(err)).toBe(true);
          }
        }
      }),
    );
  });

  it('the framer reports only LibvirtProtocolError and never holds more than one message', () => {
    fc.assert(
      fc.property(fc.array(body, { maxLength: 20 }), (chunks) => {
        const framer = new RpcFramer(() => {}, (error) => expect(error).toBeInstanceOf(LibvirtProtocolError), { maxMessageBytes: 256 });
        for (const chunk of chunks) {
          framer.push(chunk);
          expect(framer.bufferedBytes).toBeLessThanOrEqual(256 + 4);
        }
        framer.end();
      }),
    );
  });
});

describe('the client under hostile messages', () => {
  let peer: LibvirtPeer;
  let client: LibvirtClient;
  const errors: LibvirtError[] = [];
  beforeAll(async () => {
    peer = await LibvirtPeer.start();
    // A short keepalive: a garbage length word can leave the framer waiting for bytes that never
    // complete a message; only the keepalive verdict ends such a connection.
    client = new LibvirtClient({ socketPath: peer.path, reconnect: { initialDelayMs: 1, maxDelayMs: 5 }, keepalive: { intervalMs: 50, count: 2 } });
    client.errors$.subscribe((e) => errors.push(e));
    client.watchMonitorEvents();
    client.watchDomainEvents('block-job-2');
    const session = firstValueFrom(client.sessions$);
    client.start();
    await session;
  });
  afterAll(async () => {
    await client.close();
    await peer.stop();
  });

  const frame = fc.record({
    prog: fc.constantFrom(c.REMOTE_PROGRAM, c.QEMU_PROGRAM, c.KEEPALIVE_PROGRAM, 0xdeadbeef),
    vers: fc.constantFrom(1, 2),
    proc: fc.constantFrom(1, 2, 6, 14, 318, 339, 9999),
    type: fc.integer({ min: 0, max: 6 }),
    serial: fc.constantFrom(0, 1, 3, 99),
    status: fc.integer({ min: 0, max: 3 }),
    body,
  });

  it('survives any sequence of frames and raw bytes, and comes back to a clean session', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(frame.map(({ body: b, ...header }) => encodeMessage(header, b)), body), { minLength: 1, maxLength: 8 }), async (writes) => {
        const before = peer.connectionCount;
        for (const bytes of writes) peer.write(bytes);
        // Whatever happened, a call on a healthy connection works again (after a reconnect if one was needed).
        const deadline = Date.now() + 5_000;
        for (;;) {
          const ok = await client.getLibVersion({ timeoutMs: 500 }).then(
            () => true,
            () => false,
          );
          if (ok) break;
          if (Date.now() > deadline) throw new Error(`no healthy session after ${writes.length} hostile writes (${peer.connectionCount - before} reconnects)`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        for (const error of errors.splice(0)) expect(error).toBeInstanceOf(LibvirtError);
      }),
      { numRuns: 40 },
    );
    expect(client.state).toBe('ready');
    // The writes did hurt: connections were dropped and re-established along the way.
    expect(peer.connectionCount).toBeGreaterThan(5);
  });
});
