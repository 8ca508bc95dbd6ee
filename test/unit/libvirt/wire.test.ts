// XDR, length framing and the wire structs, byte for byte against fixtures written from RFC 4506
// and libvirt's .x files (virnetprotocol.x, remote_protocol.x, qemu_protocol.x).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RpcFramer } from '../../../src/libvirt/framing.js';
import * as codec from '../../../src/libvirt/codec.js';
import * as c from '../../../src/libvirt/constants.js';
import { decodeEvent } from '../../../src/libvirt/events.js';
import { specs } from '../../../src/libvirt/calls.js';
import { XdrError, XdrReader, XdrWriter } from '../../../src/libvirt/xdr.js';
import type { LibvirtProtocolError } from '../../../src/errors.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const write = (fn: (w: XdrWriter) => void): string => {
  const w = new XdrWriter();
  fn(w);
  return w.toBuffer().toString('hex');
};

describe('XDR', () => {
  it('encodes the primitives as RFC 4506 says', () => {
    expect(write((w) => w.int(-2))).toBe('fffffffe');
    expect(write((w) => w.uint(0x20008086))).toBe('20008086');
    expect(write((w) => w.hyper(-1))).toBe('ffffffffffffffff');
    expect(write((w) => w.uhyper(9_000_000))).toBe('0000000000895440');
    expect(write((w) => w.bool(true))).toBe('00000001');
    // string<>: length, bytes, zero padding to 4.
    expect(write((w) => w.string('vda'))).toBe('00000003' + '76646100');
    expect(write((w) => w.string('abcd'))).toBe('00000004' + '61626364');
    expect(write((w) => w.string(''))).toBe('00000000');
    // optional (`*T`): presence bool, then the value.
    expect(write((w) => w.optional<string>(null, (v) => w.string(v)))).toBe('00000000');
    expect(write((w) => w.optional('é', (v) => w.string(v)))).toBe('00000001' + '00000002' + 'c3a90000');
  });

  it('decodes what it encodes (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.maxSafeNat(), fc.string(), fc.option(fc.string()), (i, n, s, o) => {
        const negative = n === 0 ? 0 : -n;
        const w = new XdrWriter().int(i).uhyper(n).hyper(negative).string(s);
        w.optional(o, (v) => w.string(v));
        const r = new XdrReader(w.toBuffer());
        expect([r.int(), r.uhyper(), r.hyper(), r.string(1 << 20), r.optional(() => r.string(1 << 20))]).toEqual([i, n, negative, s, o]);
        r.end('all');
      }),
    );
  });

  it('names every malformed input precisely', () => {
    const fails = (bytes: string, read: (r: XdrReader) => unknown): string => {
      try {
        read(new XdrReader(hex(bytes)));
      } catch (err) {
        expect(err).toBeInstanceOf(XdrError);
        return (err as Error).message;
      }
      throw new Error('did not fail');
    };
    expect(fails('000000', (r) => r.int('proc'))).toBe('proc: need 4 bytes, 3 left (at byte 0)');
    expect(fails('00000005 6162', (r) => r.string(100, 'name'))).toBe('name: need 8 bytes, 2 left (at byte 4)');
    expect(fails('00000065', (r) => r.string(100, 'name'))).toBe('name: length 101 exceeds its bound 100 (at byte 0)');
    expect(fails('00000002', (r) => r.bool('flag'))).toBe('flag: bool must be 0 or 1, got 2 (at byte 0)');
    expect(fails('0020000000000000', (r) => r.uhyper('cur'))).toBe('cur: 9007199254740992 is beyond 2^53 - 1 (at byte 0)');
    expect(fails('00000003 00000001', (r) => r.array(10, () => r.int(), 'ids'))).toBe('ids: 3 elements cannot fit in 4 bytes (at byte 0)');
    expect(fails('0000000b', (r) => r.array(10, () => r.int(), 'ids'))).toBe('ids: 11 elements exceed its bound 10 (at byte 0)');
    const trailing = (() => {
      try {
        codec.decodeBody(hex('00000001 00000000'), 'ret', (r) => r.int());
      } catch (err) {
        return err as XdrError;
      }
    })();
    expect(trailing).toMatchObject({ trailing: true, message: 'ret: 4 bytes left over (at byte 4)' });
  });
});

describe('framing', () => {
  const frames = [
    codec.encodeMessage({ prog: c.REMOTE_PROGRAM, vers: 1, proc: 66, type: c.MessageType.Reply, serial: 1, status: 0 }, hex('00000001 00000000')),
    codec.encodeMessage({ prog: c.KEEPALIVE_PROGRAM, vers: 1, proc: 1, type: c.MessageType.Message, serial: 0, status: 0 }),
    codec.encodeMessage({ prog: c.QEMU_PROGRAM, vers: 1, proc: 6, type: c.MessageType.Message, serial: 0, status: 0 }, Buffer.alloc(400, 7)),
  ];
  const stream = Buffer.concat(frames);

  it('a keepalive PING is 28 bytes exactly as libvirt writes it', () => {
    expect(frames[1]!.toString('hex')).toBe('0000001c' + '6b656570' + '00000001' + '00000001' + '00000002' + '00000000' + '00000000');
  });

  it('delivers the same messages however the stream is cut (property), holding at most one message', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 20 }), (cuts) => {
        const got: string[] = [];
        const framer = new RpcFramer((m) => got.push(m.toString('hex')), (e) => {
          throw e;
        });
        let from = 0;
        for (const cut of [...cuts.sort((a, b) => a - b), stream.length]) {
          framer.push(stream.subarray(from, cut));
          expect(framer.bufferedBytes).toBeLessThanOrEqual(frames[2]!.length);
          from = cut;
        }
        expect(got).toEqual(frames.map((f) => f.subarray(4).toString('hex')));
        expect(framer.bufferedBytes).toBe(0);
      }),
    );
  });

  it('batched: three messages in one chunk, in order', () => {
    const got: number[] = [];
    new RpcFramer((m) => got.push(codec.decodeHeader(m).prog), () => {}).push(stream);
    expect(got).toEqual([c.REMOTE_PROGRAM, c.KEEPALIVE_PROGRAM, c.QEMU_PROGRAM]);
  });

  const failure = (chunks: Buffer[], options?: { maxMessageBytes?: number }, end = false): LibvirtProtocolError => {
    const errors: LibvirtProtocolError[] = [];
    const framer = new RpcFramer(() => {}, (e) => errors.push(e), options);
    for (const chunk of chunks) framer.push(chunk);
    if (end) framer.end();
    expect(errors).toHaveLength(1);
    expect(framer.bufferedBytes).toBe(0);
    return errors[0]!;
  };

  it("refuses a length over libvirt's VIR_NET_MESSAGE_MAX (16 MiB + the length word) at once", () => {
    expect(failure([hex('01000005')])).toMatchObject({ fault: 'frame-length', message: 'frame-length: message length 16777221 is outside [28, 16777220]', received: '01000005' });
    // The limit itself is fine: it waits for the bytes.
    const framer = new RpcFramer(() => {}, () => {
      throw new Error('no');
    });
    framer.push(hex('01000004 00'));
    expect(framer.bufferedBytes).toBe(5);
  });

  it('refuses a length under the header size, and one over a configured maximum', () => {
    expect(failure([hex('0000001b')]).fault).toBe('frame-length');
    expect(failure([hex('00000000')]).fault).toBe('frame-length');
    expect(failure([hex('00000409')], { maxMessageBytes: 1024 }).message).toContain('outside [28, 1028]');
  });

  it('stops after a bad length: nothing after it is delivered', () => {
    const got: Buffer[] = [];
    const framer = new RpcFramer((m) => got.push(m), () => {});
    framer.push(Buffer.concat([hex('ffffffff'), frames[0]!]));
    framer.push(frames[1]!);
    expect(got).toEqual([]);
  });

  it('reports a message cut short by the end of the stream as truncated', () => {
    expect(failure([frames[2]!.subarray(0, 100)], undefined, true)).toMatchObject({ fault: 'truncated', message: expect.stringContaining('short of a 428-byte message') });
    expect(failure([hex('0000')], undefined, true).message).toContain('inside a length word');
  });

  it('rejects a maxMessageBytes beyond libvirt\'s own limit', () => {
    expect(() => new RpcFramer(() => {}, () => {}, { maxMessageBytes: c.VIR_NET_MESSAGE_MAX + 1 })).toThrow(RangeError);
  });
});

describe('wire structs', () => {
  const domain = { name: 'vm1', uuid: '00112233-4455-6677-8899-aabbccddeeff', id: 7 };
  const domainHex = '00000003 766d3100' + '00112233445566778899aabbccddeeff' + '00000007';

  it('a connect open call: header then optional name and flags', () => {
    const spec = specs.connectOpen('qemu:///system', c.VIR_CONNECT_RO);
    const message = codec.encodeMessage({ prog: spec.program, vers: spec.version, proc: spec.proc, type: c.MessageType.Call, serial: 2, status: 0 }, codec.encodeBody(spec.encode!));
    expect(message.toString('hex')).toBe(
      hex('00000038 20008086 00000001 00000001 00000000 00000002 00000000' + '00000001 0000000e 71656d753a2f2f2f73797374656d 0000' + '00000001').toString('hex'),
    );
  });

  it('a block job abort with PIVOT, a set speed in bytes/s, a job info query with BANDWIDTH_BYTES', () => {
    expect(codec.encodeBody(specs.blockJobAbort(domain, 'vda', c.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT).encode!)).toEqual(hex(domainHex + '00000003 76646100 00000002'));
    expect(codec.encodeBody(specs.blockJobSetSpeed(domain, 'vda', 8 * 1024 * 1024).encode!)).toEqual(hex(domainHex + '00000003 76646100 0000000000800000 00000001'));
    expect(codec.encodeBody(specs.blockJobInfo(domain, 'vda').encode!)).toEqual(hex(domainHex + '00000003 76646100 00000001'));
  });

  it('event registrations: all domains (null dom), block-job-2 = 16; QEMU passthrough with no name filter', () => {
    expect(codec.encodeBody(specs.domainRegister({ kind: 'domain', eventId: 'block-job-2', domain: undefined, id: 1, description: '' }).encode!)).toEqual(hex('00000010 00000000'));
    expect(codec.encodeBody(specs.monitorRegister({ kind: 'monitor', domain: undefined, event: undefined, id: 1, description: '' }).encode!)).toEqual(hex('00000000 00000000 00000000'));
    expect(codec.encodeBody(specs.monitorRegister({ kind: 'monitor', domain, event: 'STOP', id: 1, description: '' }).encode!)).toEqual(hex('00000001' + domainHex + '00000001 00000004 53544f50 00000000'));
  });

  it('decodes a domain list, block job info, an error', () => {
    expect(codec.decodeBody(hex('00000001' + domainHex + '00000001'), 'list', codec.readDomainList)).toEqual([domain]);
    expect(() => codec.decodeBody(hex('00000001' + domainHex + '00000002'), 'list', codec.readDomainList)).toThrow('domain count 2 differs from the 1 domains sent');
    expect(codec.decodeBody(hex('00000001 00000002 0000000000100000 0000000000000010 0000000004000000'), 'info', codec.readBlockJobInfo)).toEqual({
      type: 'copy', typeCode: 2, bandwidth: 1048576, cur: 16, end: 67108864,
    });
    expect(codec.decodeBody(hex('00000000 00000000 0000000000000000 0000000000000000 0000000000000000'), 'info', codec.readBlockJobInfo)).toBeNull();
    // code, domain, message?, level, dom? (null), str1?, str2? (null), str3? (null), int1, int2, net? (null)
    const error = hex('0000002a 0000000a' + '00000001 00000005 6e6f706521000000' + '00000002 00000000' + '00000001 00000002 61310000' + '00000000 00000000 00000000 00000000 00000000');
    expect(codec.decodeBody(error, 'error', codec.readRemoteError)).toEqual({ code: 42, domain: 10, message: 'nope!', level: 2, str1: 'a1', str2: null, str3: null, int1: 0, int2: 0 });
  });

  it('decodes the three events; an unknown (future) enum value is named unknown, with its number', () => {
    const monitor = decodeEvent(c.QEMU_PROGRAM, 6, hex('00000003' + domainHex + '00000004 53544f50' + '000000006553f100 0001e240' + '00000001 00000002 7b7d0000'));
    expect(monitor).toMatchObject({ space: 'monitor', callbackId: 3, domain, event: { event: 'STOP', seconds: 1700000000, micros: 123456, qemuTimestamp: 1700000000123.456, data: {} } });
    const job = decodeEvent(c.REMOTE_PROGRAM, 339, hex('00000002' + domainHex + '00000003 76646100 00000009 00000003'));
    expect(job).toMatchObject({ space: 'domain', callbackId: 2, event: { kind: 'block-job-2', disk: 'vda', type: 'unknown', typeCode: 9, status: 'ready' } });
    const life = decodeEvent(c.REMOTE_PROGRAM, 318, hex('00000001' + domainHex + '00000005 00000001'));
    expect(life).toMatchObject({ space: 'domain', event: { kind: 'lifecycle', event: 'stopped', detail: 1 } });
    expect(decodeEvent(c.REMOTE_PROGRAM, 107, Buffer.alloc(0))).toBeUndefined();
  });

  it('UUIDs: canonical lowercase out, dashed or not and any case in', () => {
    expect(codec.uuidToString(hex('00112233445566778899AABBCCDDEEFF'))).toBe('00112233-4455-6677-8899-aabbccddeeff');
    expect(codec.uuidToBytes('00112233445566778899AABBCCDDEEFF')).toEqual(hex('00112233445566778899aabbccddeeff'));
    expect(() => codec.uuidToBytes('0011')).toThrow(TypeError);
  });
});
