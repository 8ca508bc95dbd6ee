import net from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import pino from 'pino';
import { config as rxConfig, firstValueFrom, toArray, type Observable } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  QmpClosedError,
  QmpCommandError,
  QmpConnectError,
  QmpMonitorBusyError,
  QmpOutcomeUnknownError,
  QmpProtocolError,
  QmpTimeoutError,
  QmpTooManyPendingError,
  StateError,
} from '../../../src/errors.js';
import { QmpClient } from '../../../src/qmp/client.js';
import type { QmpClientOptions } from '../../../src/qmp/client-options.js';
import type { Logger } from '../../../src/log.js';
import { startScriptedPeer, type ScriptedPeer, type ScriptedPeerOptions } from '../../utils/scripted-peer.js';
import { cleanupLeftoversAfterAll } from '../../utils/qsd.js';
import { recordingClient } from '../../utils/recording-client.js';
import { waitFor } from '../../utils/wait-for.js';

cleanupLeftoversAfterAll(); // the peers' temp dirs

const leftovers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const dispose of leftovers.splice(0).reverse()) await dispose();
});

const QEMU_7_2 = { qemu: { major: 7, minor: 2, micro: 22 }, package: 'scripted-peer 7.2.22' };

/** A scripted QEMU that, unless told otherwise, never answers commands: the test answers them. */
async function scriptedPeer(options: ScriptedPeerOptions = {}): Promise<ScriptedPeer> {
  const peer = await startScriptedPeer({ handler: () => undefined, ...options });
  leftovers.push(() => peer.close());
  return peer;
}

/** Messages as QEMU writes them, all in one string (so they arrive in one chunk). */
const wire = (...messages: object[]): string => messages.map((m) => `${JSON.stringify(m)}\r\n`).join('');
const event = (name: string, data?: Record<string, unknown>, timestamp = { seconds: 1_700_000_000, microseconds: 250_000 }) =>
  data === undefined ? { event: name, timestamp } : { event: name, data, timestamp };

/** A client that records its runstates, sessions, events and errors from the start. */
function client(options: QmpClientOptions) {
  const recorded = recordingClient(options);
  leftovers.push(() => recorded.qmp.close());
  return recorded;
}

/** A scripted peer plus a started client that has negotiated session 1. */
async function connected(options: Partial<QmpClientOptions> = {}, peerOptions: ScriptedPeerOptions = {}) {
  const peer = await scriptedPeer(peerOptions);
  const c = client({ address: peer.address, ...options });
  c.qmp.start();
  await waitFor(() => c.qmp.state === 'ready', 'ready');
  return { peer, ...c };
}

/** A transport that dials whatever path `target.path` holds at connect time (to move a monitor). */
function movableTransport(path: string) {
  const target = { path };
  return { target, connect: () => net.connect({ path: target.path }) };
}

/** A logger that records what it is given. */
function recordingLogger(): Logger & { lines: { level: string; fields: Record<string, unknown>; message?: string }[] } {
  const lines: { level: string; fields: Record<string, unknown>; message?: string }[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, message?: string) => void lines.push({ level, fields, message });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

describe('QmpClient runstate', () => {
  it('goes idle -> connecting -> negotiating -> ready on a good connect, and exposes the greeting', async () => {
    const peer = await scriptedPeer();
    const { qmp, states, sessions } = client({ address: peer.address, name: 'vm1' });
    expect(qmp.state).toBe('idle');
    qmp.start();
    await waitFor(() => qmp.state === 'ready', 'ready');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready']);
    const caps = await peer.waitForCommand('qmp_capabilities');
    expect(caps.message).toEqual({ execute: 'qmp_capabilities', id: expect.stringMatching(/^__bjg#\d+$/) });
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ number: 1, sameProcess: 'first', greeting: { version: QEMU_7_2, capabilities: ['oob'] } });
    expect(qmp.session).toBe(sessions[0]);
    expect(qmp.greeting).toEqual({ version: QEMU_7_2, capabilities: ['oob'] });
  });

  it('waits in negotiating until the qmp_capabilities reply arrives', async () => {
    const peer = await scriptedPeer({ autoNegotiate: false });
    const { qmp, states } = client({ address: peer.address });
    qmp.start();
    const caps = await peer.waitForCommand('qmp_capabilities');
    expect(qmp.state).toBe('negotiating');
    peer.sendMessage({ return: {}, id: caps.id });
    await waitFor(() => qmp.state === 'ready', 'ready');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready']);
  });

  it('goes ready -> disconnected on EOF and stays there with reconnect off', async () => {
    const { qmp, peer, states, errors } = await connected();
    peer.dropClient();
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready', 'disconnected']);
    expect(qmp.session).toBeUndefined();
    // A clean close after negotiation still says why, with a code (the VM's `disconnected` reason).
    expect(errors.map((e) => e.code)).toEqual(['QMP_ERR_DISCONNECTED']);
    expect(errors[0]!.message).toMatch(/: the monitor closed the connection \(EOF\)$/);
  });

  it('goes connecting -> disconnected when nothing listens, reporting a QmpConnectError with the cause', async () => {
    const peer = await scriptedPeer();
    const address = `${peer.address}.absent`;
    const { qmp, states, errors } = client({ address });
    qmp.start();
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(states).toEqual(['idle', 'connecting', 'disconnected']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(QmpConnectError);
    expect(errors[0]!.code).toBe('QMP_ERR_CONNECT');
    expect(errors[0]!.message).toContain(address);
    expect((errors[0]!.cause as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('close() is final and idempotent, completes every stream, and refuses later use', async () => {
    const { qmp, states } = await connected();
    const streams = [qmp.state$, qmp.sessions$, qmp.events$, qmp.errors$] as Observable<unknown>[];
    const completions = Promise.all(streams.map((s) => firstValueFrom(s.pipe(toArray()))));
    const first = qmp.close();
    expect(qmp.close()).toBe(first);
    await first;
    await completions;
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready', 'closed']);
    await expect(qmp.execute('query-version')).rejects.toBeInstanceOf(QmpClosedError);
    expect(() => qmp.start()).toThrow(QmpClosedError);
  });

  it('refuses start() twice with a StateError naming the state', async () => {
    const { qmp } = await connected();
    let error: unknown;
    try {
      qmp.start();
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(StateError);
    expect(error).toMatchObject({ code: 'GW_ERR_STATE', state: 'ready', required: ['idle', 'disconnected'] });
  });

  it('reports a monitor that accepts but never greets as busy within greetingTimeoutMs', async () => {
    const peer = await scriptedPeer({ greeting: null });
    const { qmp, states, errors } = client({ address: peer.address, greetingTimeoutMs: 150 });
    const started = performance.now();
    qmp.start();
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'disconnected']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(QmpMonitorBusyError);
    expect(errors[0]!.message).toMatch(/no QMP greeting within 150 ms: monitor busy/);
    expect(errors[0]!.message).toMatch(/one client at a time/);
  });

  it('treats a refused qmp_capabilities as a failed connect', async () => {
    const peer = await scriptedPeer({ autoNegotiate: false, handler: () => ({ error: { class: 'GenericError', desc: 'nope' } }) });
    const { qmp, states, errors } = client({ address: peer.address });
    qmp.start();
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'disconnected']);
    expect(errors[0]).toBeInstanceOf(QmpConnectError);
    expect(errors[0]!.message).toMatch(/negotiation refused: qmp_capabilities: GenericError: nope/);
  });

  it('treats a malformed greeting as a protocol error', async () => {
    const peer = await scriptedPeer({ greeting: { QMP: { version: { qemu: { major: '7' } }, capabilities: [] } } });
    const { qmp, errors } = client({ address: peer.address });
    qmp.start();
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(errors[0]).toBeInstanceOf(QmpProtocolError);
    expect(errors[0]!.message).toMatch(/malformed greeting/);
  });
});

describe('QmpClient execute', () => {
  it('correlates replies by id, whatever their order, with events interleaved', async () => {
    const { qmp, peer, events } = await connected();
    const a = qmp.executeWithMeta('query-a');
    const b = qmp.executeWithMeta('query-b', { x: 1 });
    const c = qmp.executeWithMeta('query-c');
    const sent = [await peer.waitForCommand('query-a'), await peer.waitForCommand('query-b'), await peer.waitForCommand('query-c')];
    expect(sent[1]!.arguments).toEqual({ x: 1 });
    expect(new Set(sent.map((s) => s.id)).size).toBe(3);
    peer.sendRaw(
      wire(
        { return: 'C', id: sent[2]!.id },
        event('JOB_STATUS_CHANGE', { id: 'j', status: 'created' }),
        { return: 'A', id: sent[0]!.id },
        event('JOB_STATUS_CHANGE', { id: 'j', status: 'running' }),
        { return: 'B', id: sent[1]!.id },
      ),
    );
    const [ra, rb, rc] = await Promise.all([a, b, c]);
    expect([ra.value, rb.value, rc.value]).toEqual(['A', 'B', 'C']);
    expect(events.map((e) => e.data.status)).toEqual(['created', 'running']);
    // One seq counter for replies and events, in wire order.
    expect(rc.seq).toBeLessThan(events[0]!.seq);
    expect(events[0]!.seq).toBeLessThan(ra.seq);
    expect(ra.seq).toBeLessThan(events[1]!.seq);
    expect(events[1]!.seq).toBeLessThan(rb.seq);
    expect(ra.session).toBe(1);
  });

  it('surfaces a QMP error with its class, desc and what was sent', async () => {
    const { qmp } = await connected({}, { handler: (_, args) => ({ error: { class: 'GenericError', desc: `Job '${String(args?.id)}' not found` } }) });
    const error = await qmp.execute('job-cancel', { id: 'nope' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QmpCommandError);
    expect(error).toMatchObject({
      code: 'QMP_ERR_COMMAND',
      qmpClass: 'GenericError',
      desc: "Job 'nope' not found",
      sent: { execute: 'job-cancel', arguments: { id: 'nope' } },
    });
  });

  it('times out a command that gets no reply, then drops the late reply and keeps working', async () => {
    const logger = recordingLogger();
    const { qmp, peer } = await connected({ logger });
    const slow = qmp.execute('query-slow', undefined, { timeoutMs: 100 }).catch((e: unknown) => e);
    const command = await peer.waitForCommand('query-slow');
    const error = await slow;
    expect(error).toBeInstanceOf(QmpTimeoutError);
    expect(error).toMatchObject({ code: 'QMP_ERR_TIMEOUT', timeoutMs: 100, sent: { execute: 'query-slow' } });
    expect(qmp.pendingCount).toBe(0);
    peer.sendMessage({ return: 'late', id: command.id });
    const next = qmp.execute('query-next');
    peer.sendMessage({ return: 'next', id: (await peer.waitForCommand('query-next')).id });
    await expect(next).resolves.toBe('next');
    expect(logger.lines.some((l) => l.level === 'warn' && /unknown or timed-out id/.test(l.message ?? ''))).toBe(true);
    expect(qmp.state).toBe('ready');
  });

  it('waits for many replies without a timer per command, and each command still times out on its own', async () => {
    const { qmp, peer } = await connected();
    const timers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
    const before = timers();
    // 200 polls in flight (the peer answers none yet): one shared deadline, not 200 timers.
    const polls = Array.from({ length: 200 }, () => qmp.executeWithMeta('query-jobs', undefined, { timeoutMs: 60_000 }).catch((e: unknown) => e));
    expect(timers() - before).toBeLessThanOrEqual(1);
    await waitFor(() => peer.received.filter((c) => c.execute === 'query-jobs').length === 200, 'all 200 written');
    for (const command of peer.received.filter((c) => c.execute === 'query-jobs')) peer.sendMessage({ return: [], id: command.id });
    const replies = await Promise.all(polls);
    expect(replies.every((r) => (r as { value: unknown }).value !== undefined)).toBe(true);
    // One that is never answered still times out, after its own length, amid answered ones. The
    // answered one's length only has to outlast the peer's answer on a loaded machine (150 ms did
    // not, once); how waits share a lane is deadlines.test.ts's, on virtual time.
    const slow = qmp.execute('query-slow', undefined, { timeoutMs: 150 }).catch((e: unknown) => e);
    const fast = qmp.execute('query-fast', undefined, { timeoutMs: 60_000 });
    peer.sendMessage({ return: 'fast', id: (await peer.waitForCommand('query-fast')).id });
    await expect(fast).resolves.toBe('fast');
    expect(await slow).toBeInstanceOf(QmpTimeoutError);
    expect(qmp.pendingCount).toBe(0);
  });

  it('rejects a command in flight at disconnect as outcome unknown', async () => {
    const { qmp, peer } = await connected();
    const inFlight = qmp.execute('block-job-complete', { device: 'j0' }).catch((e: unknown) => e);
    await peer.waitForCommand('block-job-complete');
    peer.dropClient();
    const error = await inFlight;
    expect(error).toBeInstanceOf(QmpOutcomeUnknownError);
    expect(error).toMatchObject({ code: 'QMP_ERR_OUTCOME_UNKNOWN', sent: { execute: 'block-job-complete', arguments: { device: 'j0' } } });
  });

  it('rejects a command in flight at close() as outcome unknown', async () => {
    const { qmp, peer } = await connected();
    const inFlight = qmp.execute('query-jobs').catch((e: unknown) => e);
    await peer.waitForCommand('query-jobs');
    await qmp.close();
    expect(await inFlight).toBeInstanceOf(QmpOutcomeUnknownError);
  });

  it('treats an id-less error reply as a fatal protocol error', async () => {
    const { qmp, peer, errors, states } = await connected();
    const pending = qmp.execute('query-jobs').catch((e: unknown) => e);
    await peer.waitForCommand('query-jobs');
    peer.sendMessage({ error: { class: 'GenericError', desc: 'JSON parse error, expecting value' } });
    expect(await pending).toBeInstanceOf(QmpOutcomeUnknownError);
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(states.slice(-2)).toEqual(['ready', 'disconnected']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(QmpProtocolError);
    expect(errors[0]!.message).toBe('id-less error reply: GenericError: JSON parse error, expecting value');
    expect((errors[0] as QmpProtocolError).received).toContain('JSON parse error');
  });

  it('rejects execute while not ready with a StateError naming the state', async () => {
    const peer = await scriptedPeer({ greeting: null });
    const { qmp } = client({ address: peer.address });
    await expect(qmp.execute('query-version')).rejects.toMatchObject({ code: 'GW_ERR_STATE', state: 'idle', required: ['ready'] });
    qmp.start();
    await waitFor(() => qmp.state === 'negotiating', 'negotiating');
    const error = await qmp.execute('query-version').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StateError);
    expect((error as Error).message).toMatch(/the monitor is negotiating, not ready/);
  });

  it('bounds the commands awaiting replies', async () => {
    const { qmp, peer } = await connected({ maxPendingCommands: 2 });
    const first = qmp.execute('a');
    const second = qmp.execute('b');
    const third = await qmp.execute('c').catch((e: unknown) => e);
    expect(third).toBeInstanceOf(QmpTooManyPendingError);
    expect(third).toMatchObject({ code: 'QMP_ERR_TOO_MANY_PENDING', limit: 2 });
    peer.sendMessage({ return: 1, id: (await peer.waitForCommand('a')).id });
    peer.sendMessage({ return: 2, id: (await peer.waitForCommand('b')).id });
    await expect(Promise.all([first, second])).resolves.toEqual([1, 2]);
    expect(peer.received.map((r) => r.execute)).toEqual(['qmp_capabilities', 'a', 'b']);
  });

  it('rejects bad arguments with specific errors', async () => {
    const { qmp } = await connected();
    await expect(qmp.execute('')).rejects.toThrow(/non-empty string/);
    await expect(qmp.execute('x', [1] as unknown as Record<string, unknown>)).rejects.toThrow(/arguments must be an object/);
    await expect(qmp.execute('x', {}, { timeoutMs: -1 })).rejects.toThrow(RangeError);
    await expect(qmp.execute('x', { n: 1n })).rejects.toThrow(/not serializable/);
  });
});

describe('QmpClient events and sessions', () => {
  it('delivers events with QEMU and local timestamps, seq and session; -1/-1 becomes null', async () => {
    const { peer, events } = await connected();
    const before = Date.now();
    peer.sendRaw(wire(event('STOP'), event('RESUME', {}, { seconds: -1, microseconds: -1 })));
    await waitFor(() => events.length === 2, 'two events');
    expect(events[0]).toMatchObject({ event: 'STOP', data: {}, qemuTimestamp: 1_700_000_000_250, session: 1 });
    expect(events[0]!.receivedAt).toBeGreaterThanOrEqual(before);
    expect(events[0]!.receivedMono).toBeGreaterThan(0);
    expect(events[1]).toMatchObject({ event: 'RESUME', qemuTimestamp: null });
    expect(events[1]!.seq).toBe(events[0]!.seq + 1);
  });

  it('emits the session before dispatching events that follow the qmp_capabilities reply in the same chunk', async () => {
    const peer = await scriptedPeer({ autoNegotiate: false });
    const qmp = new QmpClient({ address: peer.address, reconnect: { enabled: false } });
    leftovers.push(() => qmp.close());
    const order: string[] = [];
    qmp.sessions$.subscribe((s) => {
      order.push(`session ${s.number} (state ${qmp.state})`);
      void qmp.execute('query-jobs').catch(() => {});
    });
    qmp.events$.subscribe((e) => order.push(`event ${e.event} seq ${e.seq}`));
    qmp.start();
    const caps = await peer.waitForCommand('qmp_capabilities');
    peer.sendRaw(wire({ return: {}, id: caps.id }, event('JOB_STATUS_CHANGE', { id: 'j', status: 'ready' })));
    await waitFor(() => order.length === 2, 'session and event');
    // greeting = seq 1, qmp_capabilities reply = seq 2 (the session's), the event = seq 3
    expect(order).toEqual(['session 1 (state ready)', 'event JOB_STATUS_CHANGE seq 3']);
    expect(qmp.session!.seq).toBe(2);
    await peer.waitForCommand('query-jobs');
  });

  it('reconnects with backoff; sessions$ and events$ subscribers survive; sameProcess compares greetings', async () => {
    const peer = await scriptedPeer();
    const upgraded = await scriptedPeer({ version: { major: 8, minor: 2, micro: 0 } });
    const transport = movableTransport(peer.path);
    const { qmp, states, sessions, events } = client({
      address: peer.address,
      connect: transport.connect,
      reconnect: { enabled: true, initialDelayMs: 20, maxDelayMs: 50, jitter: 0 },
    });
    qmp.start();
    await waitFor(() => qmp.state === 'ready', 'ready');
    peer.emitEvent('BEFORE');
    await waitFor(() => events.length === 1, 'first event');

    peer.dropClient();
    await waitFor(() => sessions.length === 2, 'second session');
    peer.emitEvent('AFTER');
    await waitFor(() => events.length === 2, 'second event');
    expect(sessions[1]).toMatchObject({ number: 2, sameProcess: 'unknown' });
    expect(events.map((e) => [e.event, e.session])).toEqual([['BEFORE', 1], ['AFTER', 2]]);
    expect(events[1]!.seq).toBeGreaterThan(sessions[1]!.seq);

    transport.target.path = upgraded.path; // "QEMU was upgraded and restarted"
    peer.dropClient();
    await waitFor(() => sessions.length === 3, 'third session');
    expect(sessions[2]).toMatchObject({ number: 3, sameProcess: false });
    const cycle = ['disconnected', 'connecting', 'negotiating', 'ready'];
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready', ...cycle, ...cycle]);
    expect(qmp.session).toBe(sessions[2]);
  });

  it('keeps retrying a monitor that is down, then connects when it comes back', async () => {
    const peer = await scriptedPeer();
    const transport = movableTransport(`${peer.path}.absent`);
    const { qmp, errors, states } = client({
      address: peer.address,
      connect: transport.connect,
      reconnect: { enabled: true, initialDelayMs: 10, maxDelayMs: 40, jitter: 0 },
    });
    qmp.start();
    await waitFor(() => errors.length >= 3, 'three failed attempts');
    transport.target.path = peer.path;
    await waitFor(() => qmp.state === 'ready', 'ready');
    expect(errors.every((e) => e instanceof QmpConnectError)).toBe(true);
    expect(states.slice(0, 5)).toEqual(['idle', 'connecting', 'disconnected', 'connecting', 'disconnected']);
    expect(states.slice(-3)).toEqual(['connecting', 'negotiating', 'ready']);
  });

  it('restarts the backoff after a session that stayed up healthyAfterMs', async () => {
    const logger = recordingLogger();
    const peer = await scriptedPeer();
    const transport = movableTransport(`${peer.path}.absent`);
    const { qmp, errors } = client({
      address: peer.address,
      connect: transport.connect,
      logger,
      reconnect: { enabled: true, initialDelayMs: 5, maxDelayMs: 40, jitter: 0, healthyAfterMs: 200 },
    });
    const retries = () => logger.lines.filter((l) => l.message === 'reconnect scheduled').map((l) => [l.fields.attempt, l.fields.delayMs]);
    qmp.start();
    await waitFor(() => errors.length >= 4, 'four failed attempts');
    transport.target.path = peer.path;
    await waitFor(() => qmp.state === 'ready', 'ready');
    const before = retries().length;
    expect(retries().slice(0, 4)).toEqual([[1, 5], [2, 10], [3, 20], [4, 40]]);
    await new Promise((resolve) => setTimeout(resolve, 250));
    peer.dropClient();
    await waitFor(() => retries().length > before, 'a retry after the loss');
    expect(retries()[before]).toEqual([1, 5]);
  });

  it('keeps backing off a peer that negotiates and then breaks the session (issue 15)', async () => {
    // Each session is cut right after qmp_capabilities: before, every one counted as healthy and
    // the next attempt came after initialDelayMs, forever (~10 reconnects a second by default).
    const peer = await scriptedPeer();
    const { qmp, sessions } = client({
      address: peer.address,
      reconnect: { enabled: true, initialDelayMs: 20, maxDelayMs: 10_000, jitter: 0, healthyAfterMs: 5_000 },
    });
    const readyAt: number[] = [];
    qmp.sessions$.subscribe(() => {
      readyAt.push(Date.now());
      setImmediate(() => peer.dropClient());
    });
    qmp.start();
    await waitFor(() => sessions.length >= 6, 'six sessions', 20_000);
    const gaps = readyAt.slice(1).map((at, i) => at - readyAt[i]!);
    // The delays before sessions 2..6 are 20, 40, 80, 160, 320 ms (plus connect time).
    expect(gaps[3]).toBeGreaterThanOrEqual(160);
    expect(gaps[4]).toBeGreaterThanOrEqual(320);
    expect(gaps[4]).toBeGreaterThan(gaps[0]!);
  });

  it('disconnects on an oversized message and reports it as a protocol error', async () => {
    const { qmp, peer, errors } = await connected({ maxMessageBytes: 1024 });
    peer.emitEvent('HUGE', { blob: 'z'.repeat(5000) });
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBeInstanceOf(QmpProtocolError);
    expect(errors[0]!.message).toMatch(/message too large/);
  });

  it('disconnects on invalid JSON from the monitor', async () => {
    const { qmp, peer, errors } = await connected();
    peer.sendRaw('{"event": oops}\r\n');
    await waitFor(() => qmp.state === 'disconnected', 'disconnected');
    expect(errors[0]).toMatchObject({ code: 'QMP_ERR_PROTOCOL', received: '{"event": oops}' });
  });

  it('survives a subscriber that throws: other subscribers and the client carry on', async () => {
    const reported: unknown[] = [];
    const previous = rxConfig.onUnhandledError;
    rxConfig.onUnhandledError = (err) => reported.push(err);
    leftovers.push(async () => {
      rxConfig.onUnhandledError = previous;
    });
    const { qmp, peer, events } = await connected({}, { handler: () => ({ return: { status: 'running' } }) });
    qmp.events$.subscribe(() => {
      throw new Error('consumer bug');
    });
    peer.emitEvent('ONE');
    peer.emitEvent('TWO');
    await waitFor(() => events.length === 2 && reported.length === 2, 'both events and both reports');
    expect((reported[0] as Error).message).toBe('consumer bug');
    await expect(qmp.execute('query-status')).resolves.toEqual({ status: 'running' });
    expect(qmp.state).toBe('ready');
  });
});

describe('QmpClient transport and logging', () => {
  it('speaks over an injected Duplex', async () => {
    const toClient = new PassThrough();
    const fromClient = new PassThrough();
    const transport = Duplex.from({ readable: toClient, writable: fromClient });
    const { qmp, states } = client({ address: 'tcp:qemu.invalid:4444', connect: () => transport });
    qmp.start();
    expect(states).toEqual(['idle', 'connecting', 'negotiating']);
    toClient.write(JSON.stringify({ QMP: { version: QEMU_7_2, capabilities: [] } }));
    const caps = JSON.parse(await new Promise<string>((resolve) => fromClient.once('data', (b: Buffer) => resolve(b.toString()))));
    expect(caps.execute).toBe('qmp_capabilities');
    toClient.write(JSON.stringify({ return: {}, id: caps.id }));
    await waitFor(() => qmp.state === 'ready', 'ready');
  });

  it('connects over TCP', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const sockets: net.Socket[] = [];
    leftovers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    leftovers.push(async () => sockets.forEach((s) => s.destroy()));
    server.on('connection', (socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      socket.write(wire({ QMP: { version: QEMU_7_2, capabilities: [] } }));
      socket.once('data', (chunk: Buffer) => socket.write(wire({ return: {}, id: JSON.parse(chunk.toString()).id })));
    });
    const { port } = server.address() as net.AddressInfo;
    const { qmp, states } = client({ address: `tcp:127.0.0.1:${port}` });
    qmp.start();
    await waitFor(() => qmp.state === 'ready', 'ready over tcp');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready']);
    expect(qmp.name).toBe(`tcp:127.0.0.1:${port}`);
  });

  it('logs every message in and out at debug with the monitor name, and accepts a pino logger', async () => {
    const logger = recordingLogger();
    const { qmp } = await connected({ logger, name: 'vm7' }, { handler: () => ({ return: { status: 'running' } }) });
    await qmp.execute('query-status');
    const traces = logger.lines.filter((l) => l.message === '-->' || l.message === '<--');
    expect(traces.map((l) => [l.level, l.message, l.fields.monitor])).toEqual([
      ['debug', '<--', 'vm7'], // greeting
      ['debug', '-->', 'vm7'], // qmp_capabilities
      ['debug', '<--', 'vm7'],
      ['debug', '-->', 'vm7'], // query-status
      ['debug', '<--', 'vm7'],
    ]);
    expect(traces[3]!.fields.qmp).toMatch(/"execute":"query-status"/);
    // Type-level check that pino fits the logger seam.
    const withPino = new QmpClient({ address: 'unix:/nonexistent', logger: pino({ level: 'silent' }) });
    await withPino.close();
  });

  it('validates its options', () => {
    expect(() => new QmpClient({ address: 'http://x' })).toThrow(ConfigError);
    expect(() => new QmpClient({ address: 'unix:/x', greetingTimeoutMs: 0 })).toThrow(/greetingTimeoutMs: must be a positive number/);
    expect(() => new QmpClient({ address: 'unix:/x', reconnect: { jitter: 2 } })).toThrow(/reconnect.jitter/);
  });
});

describe('a monitor that floods (issue 15: hostile peer modes)', () => {
  it('is read 64 KiB per turn of the event loop, so it cannot hold the loop for all it sends', async () => {
    // A transport that hands the client megabytes in one turn, as libuv does (up to 32 reads of 64 KiB per turn).
    const transport = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        const command = JSON.parse(chunk.toString()) as { execute: string; id: string };
        if (command.execute === 'qmp_capabilities') setImmediate(() => transport.push(`${JSON.stringify({ return: {}, id: command.id })}\r\n`));
        done();
      },
    });
    transport.push(`${JSON.stringify({ QMP: { version: QEMU_7_2, capabilities: [] } })}\r\n`);
    const { qmp, events } = client({ address: 'unix:/flood', connect: () => transport });
    qmp.start();
    await waitFor(() => qmp.state === 'ready', 'ready');
    let burst = 0;
    let maxBurst = 0;
    qmp.events$.subscribe(() => {
      if (burst++ === 0) setImmediate(() => ((maxBurst = Math.max(maxBurst, burst)), (burst = 0)));
    });
    const one = wire(event('FLOOD', { n: 123456 }));
    const chunk = one.repeat(Math.floor(65_536 / one.length));
    for (let i = 0; i < 48; i++) transport.push(chunk); // ~3 MiB in one turn
    const total = 48 * Math.floor(65_536 / one.length);
    await waitFor(() => events.length === total, () => `${total} events (got ${events.length})`);
    await new Promise((resolve) => setImmediate(resolve));
    maxBurst = Math.max(maxBurst, burst);
    // Before, all ~35,000 were dispatched in one turn.
    expect(maxBurst).toBeLessThanOrEqual(2 * Math.ceil(65_536 / one.length));
  });
});
