// LibvirtClient against a scripted libvirtd (test/utils/libvirt-peer.ts): the faults the real
// daemon cannot show on cue. Every malformed input gets its own typed error and never crashes.
import { afterEach, describe, expect, it } from 'vitest';
import { config as rxConfig, firstValueFrom } from 'rxjs';
import { LibvirtClient } from '../../../src/libvirt/client.js';
import * as c from '../../../src/libvirt/constants.js';
import { encodeMessage } from '../../../src/libvirt/codec.js';
import type { LibvirtClientOptions, LibvirtDomainEvent, LibvirtMonitorEvent, LibvirtSession } from '../../../src/libvirt/types.js';
import type { LibvirtError } from '../../../src/errors.js';
import { LibvirtPeer, PEER_DOMAIN, remoteErrorBody, xdr, type PeerHandler } from '../../utils/libvirt-peer.js';

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const peers: LibvirtPeer[] = [];
const clients: LibvirtClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(peers.splice(0).map((peer) => peer.stop()));
});

interface Harness {
  peer: LibvirtPeer;
  client: LibvirtClient;
  errors: LibvirtError[];
  monitor: LibvirtMonitorEvent[];
  domain: LibvirtDomainEvent[];
  sessions: LibvirtSession[];
}

async function connected(handler?: PeerHandler, options: LibvirtClientOptions = {}, waitForSession = true): Promise<Harness> {
  const peer = await LibvirtPeer.start(handler);
  peers.push(peer);
  const client = new LibvirtClient({ socketPath: peer.path, reconnect: { initialDelayMs: 10, maxDelayMs: 50 }, ...options });
  clients.push(client);
  const h: Harness = { peer, client, errors: [], monitor: [], domain: [], sessions: [] };
  client.errors$.subscribe((e) => h.errors.push(e));
  client.monitorEvents$.subscribe((e) => h.monitor.push(e));
  client.domainEvents$.subscribe((e) => h.domain.push(e));
  client.sessions$.subscribe((s) => h.sessions.push(s));
  client.watchMonitorEvents();
  client.watchDomainEvents('block-job-2');
  const session = firstValueFrom(client.sessions$);
  client.start();
  if (waitForSession) await session;
  else session.catch(() => {}); // completes empty when the test closes the client
  return h;
}

describe('LibvirtClient negotiation', () => {
  it('speaks the handshake in libvirt order and registers every watch', async () => {
    const { peer, client } = await connected();
    const order = peer.calls.map((call) => `${call.header.prog === c.QEMU_PROGRAM ? 'qemu' : 'remote'}:${call.header.proc}`);
    expect(order).toEqual([
      `remote:${c.RemoteProc.AUTH_LIST}`,
      `remote:${c.RemoteProc.CONNECT_OPEN}`,
      `remote:${c.RemoteProc.CONNECT_SUPPORTS_FEATURE}`,
      `remote:${c.RemoteProc.CONNECT_GET_LIB_VERSION}`,
      `remote:${c.RemoteProc.CONNECT_GET_VERSION}`,
      `qemu:${c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_REGISTER}`,
      `remote:${c.RemoteProc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY}`,
    ]);
    // connect open: optional string "qemu:///system", flags 0 (read-write).
    expect(peer.callsOf(c.RemoteProc.CONNECT_OPEN)[0]!.body.toString('hex')).toBe('00000001' + '0000000e' + Buffer.from('qemu:///system').toString('hex') + '0000' + '00000000');
    // Serials count from 1 per connection.
    expect(peer.calls.map((call) => call.header.serial)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(client.callsSent).toBe(7);
    expect(client.session).toMatchObject({ number: 1, libVersion: { major: 9, minor: 0, micro: 0 }, hypervisorVersion: { major: 7, minor: 2, micro: 22 }, keepalive: true });
  });

  it('a SASL-only daemon: LibvirtAuthError, no connect open, retried with backoff', async () => {
    const { peer, client, errors } = await connected(
      (call) => (call.header.proc === c.RemoteProc.AUTH_LIST ? { ok: xdr((w) => w.uint(1).int(1)) } : undefined),
      {},
      false,
    );
    await until(() => peer.connectionCount >= 2, 'a retry');
    expect(errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_AUTH', offered: ['sasl'] });
    expect(peer.callsOf(c.RemoteProc.CONNECT_OPEN)).toEqual([]);
    expect(client.state).not.toBe('ready');
  });

  it('a polkit daemon: asks for the polkit check, then opens', async () => {
    const { peer, client } = await connected((call) => (call.header.proc === c.RemoteProc.AUTH_LIST ? { ok: xdr((w) => w.uint(2).int(2).int(1)) } : undefined));
    expect(peer.calls.slice(0, 3).map((call) => call.header.proc)).toEqual([c.RemoteProc.AUTH_LIST, c.RemoteProc.AUTH_POLKIT, c.RemoteProc.CONNECT_OPEN]);
    expect(client.state).toBe('ready');
  });

  it('a polkit refusal: LibvirtAuthError with the remote error as cause', async () => {
    const { errors } = await connected(
      (call) =>
        call.header.proc === c.RemoteProc.AUTH_LIST
          ? { ok: xdr((w) => w.uint(1).int(2)) }
          : call.header.proc === c.RemoteProc.AUTH_POLKIT
            ? { error: remoteErrorBody(45, 'authentication failed: access denied by policy') }
            : undefined,
      {},
      false,
    );
    await until(() => errors.length > 0, 'the refusal');
    expect(errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_AUTH', offered: ['polkit'], cause: { virCode: 45, virCodeName: 'VIR_ERR_AUTH_FAILED' } });
  });

  it('connect open refused: LibvirtConnectError carrying the remote error', async () => {
    const { errors } = await connected(
      (call) => (call.header.proc === c.RemoteProc.CONNECT_OPEN ? { error: remoteErrorBody(38, 'Failed to connect socket') } : undefined),
      {},
      false,
    );
    await until(() => errors.length > 0, 'the error');
    expect(errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_CONNECT', cause: { code: 'LIBVIRT_ERR_REMOTE', virCode: 38, remoteMessage: 'Failed to connect socket' } });
  });
});

describe('LibvirtClient calls', () => {
  it('matches replies by serial, not by order', async () => {
    const held: Buffer[] = [];
    const { peer, client } = await connected((call, p) => {
      if (call.header.proc !== c.RemoteProc.DOMAIN_GET_XML_DESC) return undefined;
      held.push(p.reply(call, { ok: xdr((w) => w.string(`<xml serial='${call.header.serial}'/>`)) }));
      return 'silent';
    });
    const first = client.getDomainXml(PEER_DOMAIN);
    const second = client.getDomainXml(PEER_DOMAIN);
    await until(() => held.length === 2, 'both calls');
    peer.write(Buffer.concat([held[1]!, held[0]!]));
    const serials = peer.callsOf(c.RemoteProc.DOMAIN_GET_XML_DESC).map((call) => call.header.serial);
    expect(await first).toBe(`<xml serial='${serials[0]}'/>`);
    expect(await second).toBe(`<xml serial='${serials[1]}'/>`);
  });

  it('a reply with trailing bytes fails that call only; the session goes on', async () => {
    const { client, errors } = await connected((call) =>
      call.header.proc === c.RemoteProc.DOMAIN_LOOKUP_BY_UUID ? { ok: Buffer.concat([xdr((w) => w.string('vm1').fixedOpaque(Buffer.alloc(16)).int(1)), Buffer.alloc(4)]) } : undefined,
    );
    await expect(client.lookupDomainByUuid(PEER_DOMAIN.uuid)).rejects.toMatchObject({ code: 'LIBVIRT_ERR_PROTOCOL', fault: 'trailing-bytes' });
    expect(errors.map((e) => e.code)).toEqual(['LIBVIRT_ERR_PROTOCOL']);
    expect(client.session?.number).toBe(1);
    expect(await client.lookupDomainByName('vm1')).toEqual(PEER_DOMAIN);
  });

  it('a reply body cut short, a string over its bound, a bad found flag: fault body', async () => {
    const bodies: Record<number, Buffer> = {
      [c.RemoteProc.DOMAIN_GET_XML_DESC]: xdr((w) => w.uint(10).fixedOpaque(Buffer.from('abc'))),
      [c.RemoteProc.CONNECT_LIST_ALL_DOMAINS]: xdr((w) => w.uint(c.REMOTE_DOMAIN_LIST_MAX + 1)),
      [c.RemoteProc.DOMAIN_GET_BLOCK_JOB_INFO]: xdr((w) => w.int(2).int(2).uhyper(0).uhyper(1).uhyper(2)),
    };
    const { client } = await connected((call) => (bodies[call.header.proc] ? { ok: bodies[call.header.proc]! } : undefined));
    await expect(client.getDomainXml(PEER_DOMAIN)).rejects.toMatchObject({ fault: 'body', message: expect.stringContaining('need 12 bytes') });
    await expect(client.listAllDomains()).rejects.toMatchObject({ fault: 'body', message: expect.stringContaining('exceed its bound 16384') });
    await expect(client.getBlockJobInfo(PEER_DOMAIN, 'vda')).rejects.toMatchObject({ fault: 'body', message: expect.stringContaining('found must be 0 or 1') });
    expect(client.state).toBe('ready');
  });

  it('decodes a remote error into LibvirtRemoteError', async () => {
    const { client } = await connected((call) =>
      call.header.proc === c.RemoteProc.DOMAIN_BLOCK_JOB_ABORT ? { error: remoteErrorBody(55, "Requested operation is not valid: block job 'vda' not ready") } : undefined,
    );
    const error = await client.blockJobAbort(PEER_DOMAIN, 'vda', { pivot: true }).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'LIBVIRT_ERR_REMOTE',
      virCode: 55,
      virCodeName: 'VIR_ERR_OPERATION_INVALID',
      level: 2,
      call: { procedure: 'REMOTE_PROC_DOMAIN_BLOCK_JOB_ABORT', args: { domain: 'vm1', disk: 'vda', flags: 2 } },
    });
  });

  it('times out a call; its late reply is dropped without a fault', async () => {
    const late: Buffer[] = [];
    const { peer, client, errors } = await connected((call, p) => {
      if (call.header.proc !== c.RemoteProc.CONNECT_GET_LIB_VERSION || call.header.serial < 6) return undefined;
      late.push(p.reply(call, { ok: xdr((w) => w.uhyper(9_000_000)) }));
      return 'silent';
    });
    await expect(client.getLibVersion({ timeoutMs: 50 })).rejects.toMatchObject({ code: 'LIBVIRT_ERR_TIMEOUT', timeoutMs: 50 });
    peer.write(late[0]!);
    expect(await client.getHypervisorVersion()).toMatchObject({ packed: 7_002_022 });
    expect(errors).toEqual([]);
  });

  it('a call in flight when the daemon hangs up: outcome unknown; then a new session', async () => {
    const { peer, client, sessions } = await connected((call) => (call.header.proc === c.RemoteProc.DOMAIN_BLOCK_JOB_ABORT ? 'silent' : undefined));
    const pending = client.blockJobAbort(PEER_DOMAIN, 'vda', { pivot: true });
    await until(() => peer.callsOf(c.RemoteProc.DOMAIN_BLOCK_JOB_ABORT).length === 1, 'the call');
    peer.hangUp();
    await expect(pending).rejects.toMatchObject({ code: 'LIBVIRT_ERR_OUTCOME_UNKNOWN', call: { procedure: 'REMOTE_PROC_DOMAIN_BLOCK_JOB_ABORT' } });
    await until(() => sessions.length === 2, 'session 2');
    // Both watches registered again on the new connection.
    const registers = [...peer.callsOf(c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_REGISTER, c.QEMU_PROGRAM), ...peer.callsOf(c.RemoteProc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY)];
    expect(registers.map((call) => call.connection).sort()).toEqual([1, 1, 2, 2]);
    expect(sessions[1]!.watches).toEqual({ registered: [1, 2], failed: [] });
  });

  it('keeps backing off a daemon that negotiates and then hangs up (issue 15)', async () => {
    // Before, every negotiated session reset the streak, so such a daemon was retried at initialDelayMs forever.
    const { peer, sessions } = await connected(undefined, { reconnect: { initialDelayMs: 20, maxDelayMs: 10_000, jitter: 0, healthyAfterMs: 5_000 } }, false);
    const readyAt: number[] = [];
    const cut = (): void => {
      readyAt.push(Date.now());
      setImmediate(() => peer.hangUp());
    };
    if (sessions.length > 0) cut();
    const subscription = clients.at(-1)!.sessions$.subscribe(cut);
    await until(() => readyAt.length >= 6, 'six sessions', 20_000);
    subscription.unsubscribe();
    const gaps = readyAt.slice(1).map((at, i) => at - readyAt[i]!);
    expect(gaps[3]).toBeGreaterThanOrEqual(160);
    expect(gaps[4]).toBeGreaterThanOrEqual(320);
  });

  it('refuses calls beyond maxPendingCalls instead of queueing them', async () => {
    const { client } = await connected((call) => (call.header.proc === c.RemoteProc.DOMAIN_GET_XML_DESC ? 'silent' : undefined), { maxPendingCalls: 2 });
    void client.getDomainXml(PEER_DOMAIN).catch(() => {});
    void client.getDomainXml(PEER_DOMAIN).catch(() => {});
    await expect(client.getDomainXml(PEER_DOMAIN)).rejects.toMatchObject({ code: 'LIBVIRT_ERR_TOO_MANY_PENDING', limit: 2 });
  });

  it('argument errors reject before anything is written', async () => {
    const { peer, client } = await connected();
    const before = peer.calls.length;
    await expect(client.lookupDomainByUuid('not-a-uuid')).rejects.toThrow(TypeError);
    await expect(client.blockJobSetSpeed(PEER_DOMAIN, 'vda', -1)).rejects.toThrow(TypeError);
    expect(peer.calls.length).toBe(before);
  });
});

describe('LibvirtClient framing and faults', () => {
  it('reads replies split into single bytes and events batched into one write, in wire order', async () => {
    let split = false;
    const { peer, client, monitor, domain } = await connected((call, p) => {
      if (call.header.proc !== c.RemoteProc.DOMAIN_GET_XML_DESC) return undefined;
      const bytes = p.reply(call, { ok: xdr((w) => w.string('<domain/>')) });
      split = true;
      void (async () => {
        for (const byte of bytes) {
          p.write(Buffer.from([byte]));
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      return 'silent';
    });
    expect(await client.getDomainXml(PEER_DOMAIN)).toBe('<domain/>');
    expect(split).toBe(true);
    peer.write(
      Buffer.concat([
        peer.monitorEvent(1, 'JOB_STATUS_CHANGE', '{"id":"copy-vda-libvirt-1-format","status":"ready"}'),
        peer.blockJob2(2, 'vda', 2, 3),
        peer.monitorEvent(1, 'BLOCK_JOB_READY', null, -1, 4294967295),
      ]),
    );
    await until(() => monitor.length === 2 && domain.length === 1, 'three events');
    expect(monitor[0]).toMatchObject({ kind: 'qemu-monitor', event: 'JOB_STATUS_CHANGE', data: { status: 'ready' }, qemuTimestamp: 1_700_000_000_123.456, domain: PEER_DOMAIN, watch: 1, session: 1 });
    expect(domain[0]).toMatchObject({ kind: 'block-job-2', disk: 'vda', type: 'copy', status: 'ready', watch: 2 });
    expect(monitor[1]).toMatchObject({ event: 'BLOCK_JOB_READY', data: {}, qemuTimestamp: null, seconds: -1 });
    expect([monitor[0]!.seq, domain[0]!.seq, monitor[1]!.seq]).toEqual([...[monitor[0]!.seq, domain[0]!.seq, monitor[1]!.seq]].sort((a, b) => a - b));
  });

  const fatal: [string, (peer: LibvirtPeer) => Buffer, string][] = [
    ['an oversized length word', () => Buffer.from('7fffffff', 'hex'), 'frame-length'],
    ['a length word below the header size', () => Buffer.from('0000000a0000000000000000000000', 'hex'), 'frame-length'],
    ['an unknown program', () => encodeMessage({ prog: 0x1234, vers: 1, proc: 1, type: c.MessageType.Message, serial: 0, status: 0 }), 'header'],
    ['a reply to a serial never sent', () => encodeMessage({ prog: c.REMOTE_PROGRAM, vers: 1, proc: 14, type: c.MessageType.Reply, serial: 999, status: 0 }), 'header'],
    ['a call from the daemon', () => encodeMessage({ prog: c.REMOTE_PROGRAM, vers: 1, proc: 1, type: c.MessageType.Call, serial: 1, status: 0 }), 'header'],
    ['a message cut short by EOF', (p) => p.blockJob2(2, 'vda', 2, 3).subarray(0, 60), 'truncated'],
    ['an event whose body does not decode', (p) => p.event(c.RemoteProc.DOMAIN_EVENT_BLOCK_JOB_2, xdr((w) => w.int(2).uint(5))), 'body'],
    ['an event with trailing bytes', (p) => p.event(c.RemoteProc.DOMAIN_EVENT_BLOCK_JOB_2, Buffer.concat([p.blockJob2(2, 'vda', 2, 3).subarray(28), Buffer.alloc(4)])), 'trailing-bytes'],
    ['QEMU event details that are not JSON', (p) => p.monitorEvent(1, 'JOB_STATUS_CHANGE', '{"id":'), 'event-details'],
    ['QEMU event details that are an array', (p) => p.monitorEvent(1, 'JOB_STATUS_CHANGE', '[1]'), 'event-details'],
  ];
  for (const [what, bytes, fault] of fatal) {
    it(`${what}: LibvirtProtocolError ${fault}, connection dropped, a new session re-registers`, async () => {
      const { peer, client, errors, sessions } = await connected();
      peer.write(bytes(peer));
      // A message cut short only shows when the stream ends.
      if (fault === 'truncated') peer.hangUp();
      await until(() => sessions.length === 2, 'session 2');
      expect(errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_PROTOCOL', fault });
      expect(peer.calls.filter((call) => call.connection === 2).length).toBe(7);
      expect(client.state).toBe('ready');
    });
  }

  it('an oversized length word is refused before it is buffered', async () => {
    const { peer, errors } = await connected(undefined, { maxMessageBytes: 1024 });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1024 + 4 + 1);
    peer.write(header);
    await until(() => errors.length === 1, 'the error');
    expect(errors[0]).toMatchObject({ fault: 'frame-length', message: expect.stringContaining('outside [28, 1028]') });
  });

  it('a stream packet and an unregistered event procedure are reported but not fatal', async () => {
    const { peer, client, errors } = await connected();
    peer.write(encodeMessage({ prog: c.REMOTE_PROGRAM, vers: 1, proc: 1, type: c.MessageType.Stream, serial: 3, status: c.MessageStatus.Continue }, Buffer.from('data')));
    peer.write(peer.event(107, xdr((w) => w.int(0))));
    await until(() => errors.length === 2, 'two errors');
    expect(errors.map((e) => (e as { fault?: string }).fault)).toEqual(['unexpected-message', 'unexpected-message']);
    // Made per packet a peer sends: no stack (see withoutStack), the evidence says what came.
    expect(errors.map((e) => /\n\s+at /.test(e.stack ?? ''))).toEqual([false, false]);
    expect(client.session?.number).toBe(1);
  });

  it('events sent around a registration reply (before it, or after it in the same read) reach the new watch in order', async () => {
    const { monitor, client } = await connected((call, p) => {
      if (call.header.prog !== c.QEMU_PROGRAM || call.header.proc !== c.QemuProc.CONNECT_DOMAIN_MONITOR_EVENT_REGISTER) return undefined;
      // libvirtd registers the callback, then writes its reply; QEMU events may be queued around it.
      const id = 1;
      const reply = p.reply(call, { ok: xdr((w) => w.int(id)) });
      return { raw: Buffer.concat([p.monitorEvent(id, 'STOP', null), reply, p.monitorEvent(id, 'RESUME', null)]) };
    });
    await until(() => monitor.length === 2, 'both events');
    expect(monitor.map((e) => [e.event, e.session, e.watch])).toEqual([
      ['STOP', 1, 1],
      ['RESUME', 1, 1],
    ]);
    expect(monitor[0]!.seq).toBeLessThan(monitor[1]!.seq);
    expect(client.session?.number).toBe(1);
  });

  it('an event for a callback id it does not know is dropped quietly (libvirt does the same)', async () => {
    const { peer, monitor, errors, client } = await connected();
    peer.write(peer.monitorEvent(99, 'RESUME', null));
    peer.write(peer.monitorEvent(1, 'STOP', null));
    await until(() => monitor.length === 1, 'the known event');
    expect(monitor[0]!.event).toBe('STOP');
    expect(errors).toEqual([]);
    expect(client.session?.number).toBe(1);
  });

  it('a subscriber that throws does not stop delivery', async () => {
    const reported: unknown[] = [];
    const previous = rxConfig.onUnhandledError;
    rxConfig.onUnhandledError = (err) => reported.push(err);
    try {
      const { peer, client, monitor } = await connected();
      client.monitorEvents$.subscribe(() => {
        throw new Error('bad subscriber');
      });
      peer.write(Buffer.concat([peer.monitorEvent(1, 'STOP', null), peer.monitorEvent(1, 'RESUME', null)]));
      await until(() => monitor.length === 2 && reported.length === 2, 'both events');
      expect(client.state).toBe('ready');
    } finally {
      rxConfig.onUnhandledError = previous;
    }
  });
});

describe('LibvirtClient keepalive', () => {
  it("answers the daemon's PING with a PONG (serial 0, type MESSAGE)", async () => {
    const { peer } = await connected();
    peer.write(encodeMessage({ prog: c.KEEPALIVE_PROGRAM, vers: 1, proc: c.KEEPALIVE_PROC_PING, type: c.MessageType.Message, serial: 0, status: 0 }));
    await until(() => peer.keepalives.some((k) => k.proc === c.KEEPALIVE_PROC_PONG), 'the PONG');
  });

  it('declares a silent daemon dead after count unanswered PINGs, then reconnects', async () => {
    const { peer, errors, sessions } = await connected(undefined, { keepalive: { intervalMs: 30, count: 2 } });
    peer.answerPings = false;
    await until(() => errors.some((e) => e.code === 'LIBVIRT_ERR_KEEPALIVE'), 'the verdict');
    // The unanswered ones: a PING sent before answerPings went false was answered (on a loaded machine
    // 30 ms of silence can pass before it does), and an answer starts the count again.
    expect(peer.keepalives.filter((k) => k.connection === 1 && k.proc === c.KEEPALIVE_PROC_PING && !k.answered).length).toBe(2);
    expect(errors.find((e) => e.code === 'LIBVIRT_ERR_KEEPALIVE')).toMatchObject({ intervalMs: 30, count: 2 });
    await until(() => sessions.length === 2, 'session 2');
  });

  it('keepalive: false sends no PINGs and does not ask libvirtd to start its own', async () => {
    const { peer, client } = await connected(undefined, { keepalive: false });
    expect(peer.callsOf(c.RemoteProc.CONNECT_SUPPORTS_FEATURE)).toEqual([]);
    expect(client.session?.keepalive).toBe(false);
  });
});

describe('LibvirtClient watches and close', () => {
  it('a watch added while ready registers at once; close() deregisters it', async () => {
    const { peer, client, domain } = await connected();
    const watch = client.watchDomainEvents('lifecycle', { domain: PEER_DOMAIN });
    await until(() => watch.callbackId !== undefined, 'the registration');
    const register = peer.callsOf(c.RemoteProc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY).at(-1)!;
    expect(register.body.readInt32BE(0)).toBe(c.VIR_DOMAIN_EVENT_ID_LIFECYCLE);
    peer.write(peer.event(c.RemoteProc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, xdr((w) => {
      w.int(watch.callbackId!).string('vm1').fixedOpaque(Buffer.from('00112233445566778899aabbccddeeff', 'hex')).int(7).int(2).int(0);
    })));
    await until(() => domain.length === 1, 'the lifecycle event');
    expect(domain[0]).toMatchObject({ kind: 'lifecycle', event: 'started', eventCode: 2, detail: 0, watch: watch.id });
    const callbackId = watch.callbackId!;
    await watch.close();
    const deregister = peer.callsOf(c.RemoteProc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY);
    expect(deregister.map((call) => call.body.readInt32BE(0))).toEqual([callbackId]);
    expect(watch.callbackId).toBeUndefined();
  });

  it('close(): connect close is sent, pending calls end as outcome unknown, streams complete, start() refused', async () => {
    const { peer, client } = await connected((call) => (call.header.proc === c.RemoteProc.DOMAIN_GET_XML_DESC ? 'silent' : undefined));
    let completed = false;
    client.domainEvents$.subscribe({ complete: () => (completed = true) });
    const pending = client.getDomainXml(PEER_DOMAIN);
    await until(() => peer.callsOf(c.RemoteProc.DOMAIN_GET_XML_DESC).length === 1, 'the call');
    await client.close();
    await expect(pending).rejects.toMatchObject({ code: 'LIBVIRT_ERR_OUTCOME_UNKNOWN' });
    expect(peer.callsOf(c.RemoteProc.CONNECT_CLOSE)).toHaveLength(1);
    expect(completed).toBe(true);
    expect(client.state).toBe('closed');
    expect(() => client.start()).toThrow(expect.objectContaining({ code: 'LIBVIRT_ERR_CLOSED' }));
    await expect(client.listAllDomains()).rejects.toMatchObject({ code: 'LIBVIRT_ERR_CLOSED' });
  });

  it('no daemon at the socket: LibvirtConnectError and retries until one appears', async () => {
    const client = new LibvirtClient({ socketPath: '/nonexistent/libvirt-sock', reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    clients.push(client);
    const errors: LibvirtError[] = [];
    client.errors$.subscribe((e) => errors.push(e));
    client.start();
    await until(() => errors.length >= 2, 'two attempts');
    expect(errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_CONNECT', address: '/nonexistent/libvirt-sock' });
  });
});
