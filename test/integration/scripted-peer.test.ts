import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { connectRawQmp, JsonObjectSplitter, type RawQmp } from '../../src/lab/index.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { qmpGreeting, startScriptedPeer } from '../utils/scripted-peer.js';
import { fixturePath, loadTranscript, transcriptEvents, transcriptGreeting } from '../utils/transcript.js';

/** Connects a plain socket and collects parsed messages (for what RawQmp deliberately does not do). */
async function plainClient(path: string): Promise<{ send(text: string): void; next(): Promise<Record<string, unknown>>; close(): void }> {
  const socket = createConnection(path);
  await new Promise((resolve) => socket.once('connect', resolve));
  const splitter = new JsonObjectSplitter();
  const inbox: Array<Record<string, unknown>> = [];
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    for (const text of splitter.push(chunk)) inbox.push(JSON.parse(text) as Record<string, unknown>);
    wake?.();
  });
  return {
    send: (text) => socket.write(text),
    async next() {
      while (inbox.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return inbox.shift()!;
    },
    close: () => socket.destroy(),
  };
}

describe('scripted QMP peer', () => {
  cleanupLeftoversAfterAll();

  it('greets like QEMU 7.2, negotiates, and refuses unknown commands without a handler', async () => {
    const peer = await startScriptedPeer();
    const client = await connectRawQmp(peer.path);
    expect(client.greeting).toEqual(qmpGreeting({ major: 7, minor: 2, micro: 22 }).QMP);
    expect(peer.negotiated).toBe(true);
    await expect(client.execute('query-jobs')).rejects.toMatchObject({ class: 'CommandNotFound', desc: 'The command query-jobs has not been found' });
    await client.close();
    await peer.close();
    expect(existsSync(dirname(peer.path))).toBe(false);
  });

  it('listens on TCP when asked', async () => {
    const peer = await startScriptedPeer({ listen: 'tcp' });
    const [, host, port] = /^tcp:(127\.0\.0\.1):(\d+)$/.exec(peer.address) ?? [];
    expect(Number(port)).toBeGreaterThan(0);
    const socket = createConnection(Number(port), host);
    const splitter = new JsonObjectSplitter();
    const greeting = await new Promise<string>((resolve) => socket.on('data', (chunk: Buffer) => splitter.push(chunk).forEach(resolve)));
    expect(JSON.parse(greeting)).toHaveProperty('QMP.version.qemu.major', 7);
    expect(() => peer.path).toThrow('not on a unix socket');
    socket.destroy();
    await peer.close();
  });

  it('refuses commands before qmp_capabilities and a second negotiation, as QEMU does', async () => {
    const peer = await startScriptedPeer({ handler: () => ({ return: [] }) });
    const client = await connectRawQmp(peer.path, { negotiate: false });
    await expect(client.execute('query-jobs')).rejects.toMatchObject({ class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" });
    await client.execute('qmp_capabilities');
    await expect(client.execute('qmp_capabilities')).rejects.toMatchObject({ class: 'CommandNotFound' });
    expect(await client.execute('query-jobs')).toEqual([]);
    await client.close();
    await peer.close();
  });

  it('answers through the handler: reply, error, late reply, no reply', async () => {
    let releaseLate: (() => void) | undefined;
    const peer = await startScriptedPeer({
      handler: (execute, args) => {
        if (execute === 'echo') return { return: args };
        if (execute === 'fail') return { error: { class: 'DeviceNotActive', desc: "Block job 'j' not found" } };
        if (execute === 'late') return new Promise((resolve) => (releaseLate = () => resolve({ return: 'late' })));
        return undefined;
      },
    });
    const client = await connectRawQmp(peer.path);
    expect(await client.execute('echo', { a: [1, 2.5, null] })).toEqual({ a: [1, 2.5, null] });
    await expect(client.execute('fail')).rejects.toMatchObject({ class: 'DeviceNotActive', desc: "Block job 'j' not found" });
    const late = client.execute('late');
    await peer.waitForCommand('late');
    releaseLate!();
    expect(await late).toBe('late');
    await expect(client.execute('silent', undefined, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'QMP_ERR_TIMEOUT' });
    expect(peer.received.map((command) => command.execute)).toEqual(['qmp_capabilities', 'echo', 'fail', 'late', 'silent']);
    await client.close();
    await peer.close();
  });

  it('echoes any JSON id verbatim and answers unparsable input with an id-less error', async () => {
    const peer = await startScriptedPeer({ handler: () => ({ return: {} }) });
    const client = await plainClient(peer.path);
    expect(await client.next()).toHaveProperty('QMP');
    client.send('{"execute":"qmp_capabilities","id":{"k":[1,2.5,null]}}');
    expect(await client.next()).toEqual({ return: {}, id: { k: [1, 2.5, null] } });
    client.send('{"execute":"x"}');
    expect(await client.next()).toEqual({ return: {} });
    client.send('garbage');
    const error = await client.next();
    expect(error).not.toHaveProperty('id');
    expect(error).toMatchObject({ error: { class: 'GenericError' } });
    client.close();
    await peer.close();
  });

  it('can be a busy monitor that never greets, or greet as an old QEMU', async () => {
    const busy = await startScriptedPeer({ greeting: null });
    await expect(connectRawQmp(busy.path, { greetingTimeoutMs: 200 })).rejects.toMatchObject({ code: 'QMP_ERR_MONITOR_BUSY' });
    await busy.close();
    const old = await startScriptedPeer({ version: { major: 1, minor: 7, micro: 0 }, capabilities: [] });
    const client = await connectRawQmp(old.path);
    expect(client.greeting).toMatchObject({ version: { qemu: { major: 1, minor: 7, micro: 0 } }, capabilities: [] });
    await client.close();
    await old.close();
  });

  it('delivers events only after negotiation, with a QMP timestamp', async () => {
    const peer = await startScriptedPeer();
    const client = await connectRawQmp(peer.path, { negotiate: false });
    expect(peer.emitEvent('EARLY')).toBe(false);
    await client.execute('qmp_capabilities');
    expect(peer.emitEvent('BLOCK_JOB_READY', { device: 'j0', len: 1, offset: 1 })).toBe(true);
    const event = await client.waitForEvent((e) => e.event === 'BLOCK_JOB_READY', 5000);
    expect(event.data).toEqual({ device: 'j0', len: 1, offset: 1 });
    expect(event.timestamp.seconds).toBeGreaterThan(1_600_000_000);
    expect(client.events.map((e) => e.event)).toEqual(['BLOCK_JOB_READY']);
    await client.close();
    await peer.close();
  });

  it('sends exact bytes: pretty-printed CRLF JSON split across writes', async () => {
    const peer = await startScriptedPeer();
    const client = await connectRawQmp(peer.path);
    const pretty = JSON.stringify({ event: 'JOB_STATUS_CHANGE', data: { id: 'j0', status: 'ready' }, timestamp: { seconds: 1, microseconds: 2 } }, null, 4).replace(/\n/g, '\r\n');
    const middle = Math.floor(pretty.length / 2);
    peer.sendRaw(pretty.slice(0, middle));
    await new Promise((resolve) => setImmediate(resolve));
    peer.sendRaw(Buffer.from(`${pretty.slice(middle)}\r\n`));
    const event = await client.waitForEvent((e) => e.event === 'JOB_STATUS_CHANGE', 5000);
    expect(event.data).toEqual({ id: 'j0', status: 'ready' });
    await client.close();
    await peer.close();
  });

  it('serves one client at a time; a dropped client loses its in-flight command', async () => {
    const peer = await startScriptedPeer({ handler: () => undefined });
    const first = await connectRawQmp(peer.path);
    const secondConnecting = connectRawQmp(peer.path, { greetingTimeoutMs: 10_000 });
    await expect(connectRawQmp(peer.path, { greetingTimeoutMs: 200 })).rejects.toMatchObject({ code: 'QMP_ERR_MONITOR_BUSY' });
    const inFlight = first.execute('job-complete', { id: 'j0' });
    await peer.waitForCommand('job-complete');
    peer.dropClient();
    await expect(inFlight).rejects.toMatchObject({ code: 'QMP_ERR_OUTCOME_UNKNOWN' });
    const second: RawQmp = await secondConnecting;
    expect(second.greeting).toHaveProperty('version');
    expect(peer.connections).toBe(3);
    await second.close();
    await peer.close();
  });

  it('replays a transcript recorded from QEMU 7.2, events before replies included', async () => {
    const transcript = loadTranscript(fixturePath('mirror-complete'));
    const peer = await startScriptedPeer({ greeting: transcriptGreeting(transcript) });
    const client = await connectRawQmp(peer.path);
    expect(client.greeting).toEqual(transcriptGreeting(transcript).QMP);
    const replay = peer.replay(transcript);
    const recordedCommands = transcript.messages.filter((entry) => entry.dir === 'out' && entry.msg.execute !== 'qmp_capabilities');
    const replies: unknown[] = [];
    for (const { msg } of recordedCommands) replies.push(await client.execute(msg.execute as string, msg.arguments as Record<string, unknown> | undefined));
    await replay;
    const received = client.events.map(({ event, data }) => ({ event, data }));
    expect(received).toEqual(transcriptEvents(transcript));
    expect(received.filter((e) => e.event === 'JOB_STATUS_CHANGE').map((e) => e.data.status)).toEqual([
      'created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null',
    ]);
    // The mirror's created/running events precede the blockdev-mirror reply, as on the wire.
    const firstReply = transcript.messages.findIndex((entry) => entry.dir === 'in' && (entry.msg as { id?: string }).id === recordedCommands[0]!.msg.id);
    const created = transcript.messages.findIndex((entry) => (entry.msg.data as { status?: string } | undefined)?.status === 'created');
    expect(created).toBeLessThan(firstReply);
    expect((replies[1] as Array<{ ready: boolean }>)[0]?.ready).toBe(false);
    await client.close();
    await peer.close();
  });

  it('fails a replay when the client sends a command the transcript does not expect', async () => {
    const transcript = loadTranscript(fixturePath('mirror-cancel'));
    const peer = await startScriptedPeer();
    const client = await connectRawQmp(peer.path);
    const replay = peer.replay(transcript, { timeoutMs: 5000 });
    void client.execute('query-version', undefined, { timeoutMs: 5000 }).catch(() => undefined);
    await expect(replay).rejects.toThrow('expected blockdev-mirror, the client sent query-version');
    await client.close();
    await peer.close();
  });
});
