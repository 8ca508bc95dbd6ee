/**
 * The QMP client against a real qemu-storage-daemon (QEMU 7.2): negotiation, command errors with
 * their QMP class, a real mirror's full event sequence, crash and restart, and a busy monitor.
 */
import { join } from 'node:path';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { afterEach, expect, it } from 'vitest';
import { QmpCommandError, QmpMonitorBusyError, QmpOutcomeUnknownError } from '../../src/errors.js';
import { QmpClient } from '../../src/qmp/client.js';
import type { QmpClientOptions } from '../../src/qmp/client-options.js';
import type { QmpEvent, QmpReply } from '../../src/qmp/types.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { recordingClient } from '../utils/recording-client.js';
import { startMirror } from '../../src/lab/jobs.js';
import { cleanupLeftoversAfterAll, makeTestDir, startQsd, type Qsd } from '../utils/qsd.js';

const clients: QmpClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

/** A started client that records everything it emits. */
function watch(options: QmpClientOptions) {
  const recorded = recordingClient(options);
  clients.push(recorded.qmp);
  recorded.qmp.start();
  return recorded;
}

async function until(condition: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function ready(qsd: Qsd, options: Partial<QmpClientOptions> = {}) {
  const watched = watch({ address: qsd.address('gw'), name: 'gw', ...options });
  await until(() => watched.qmp.state === 'ready', 'ready');
  return watched;
}

const statusesOf = (events: QmpEvent[], id: string) =>
  events.filter((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === id).map((e) => e.data.status);

describeQemu('QmpClient against qemu-storage-daemon', () => {
  cleanupLeftoversAfterAll();

  it('negotiates with QEMU 7.2 and exposes its greeting', async () => {
    const qsd = await startQsd();
    const { qmp, states, sessions } = await ready(qsd);
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready']);
    expect(sessions).toHaveLength(1);
    const greeting = sessions[0]!.greeting;
    expect(greeting.version.qemu).toMatchObject({ major: 7, minor: 2 });
    expect(greeting.capabilities).toContain('oob');
    // query-version answers with the very object the greeting carried.
    await expect(qmp.execute('query-version')).resolves.toEqual(greeting.version);
  });

  it('frames pretty-printed output (pretty=on: multi-line, CRLF) from a real monitor', async () => {
    const path = join(makeTestDir(), 'pretty.sock');
    const qsd = await startQsd({
      extraArgs: ['--chardev', `socket,id=mon-pretty,path=${path},server=on,wait=off`, '--monitor', 'chardev=mon-pretty,pretty=on'],
    });
    const logger = { lines: [] as string[], debug: (f: Record<string, unknown>) => void logger.lines.push(String(f.qmp ?? '')), info() {}, warn() {}, error() {} };
    const { qmp, events, errors } = watch({ address: `unix:${path}`, logger, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
    await until(() => qmp.state === 'ready', 'ready on the pretty monitor');
    await expect(qmp.execute('query-version')).resolves.toMatchObject({ qemu: { major: 7, minor: 2 } });
    await startMirror(qmp, qsd, { jobId: 'p0', dataMiB: 1, speed: 0 });
    await until(() => statusesOf(events, 'p0').includes('ready'), 'mirror ready');
    await qmp.execute('job-cancel', { id: 'p0' });
    await until(() => statusesOf(events, 'p0').includes('null'), 'mirror gone');
    expect(statusesOf(events, 'p0')).toEqual(['created', 'running', 'ready', 'aborting', 'concluded', 'null']);
    expect(logger.lines.some((text) => text.includes('\r\n    '))).toBe(true); // it really was pretty-printed
    expect(errors.filter((e) => e.code !== 'QMP_ERR_CONNECT')).toEqual([]);
  });

  it('surfaces command errors with their QMP class', async () => {
    const qsd = await startQsd();
    const { qmp } = await ready(qsd);
    const jobCancel = await qmp.execute('job-cancel', { id: 'nope' }).catch((e: unknown) => e);
    expect(jobCancel).toBeInstanceOf(QmpCommandError);
    expect(jobCancel).toMatchObject({ qmpClass: 'GenericError', sent: { execute: 'job-cancel', arguments: { id: 'nope' } } });
    expect((jobCancel as QmpCommandError).desc).toMatch(/not found/i);
    await expect(qmp.execute('block-job-cancel', { device: 'nope' })).rejects.toMatchObject({ qmpClass: 'DeviceNotActive' });
    await expect(qmp.execute('no-such-command')).rejects.toMatchObject({ qmpClass: 'CommandNotFound' });
    await expect(qmp.execute('query-jobs', { bogus: 1 })).rejects.toMatchObject({ qmpClass: 'GenericError' });
    expect(qmp.state).toBe('ready');
  });

  it('sees the full event sequence of a real blockdev-mirror, in wire order', async () => {
    const qsd = await startQsd();
    const oracle = await qsd.oracle();
    const { qmp, events } = await ready(qsd);
    const seen = (match: (e: QmpEvent) => boolean): Promise<QmpEvent> => firstValueFrom(qmp.events$.pipe(filter(match), timeout(30_000)));
    const becameReady = seen((e) => e.event === 'BLOCK_JOB_READY');
    let mirrorReply: QmpReply<unknown> | undefined;
    const executor = {
      execute: async (command: string, args?: Record<string, unknown>) => {
        const reply = await qmp.executeWithMeta(command, args);
        if (command === 'blockdev-mirror') mirrorReply = reply;
        return reply.value;
      },
    };
    await startMirror(executor, qsd, { jobId: 'm0', dataMiB: 8, speed: 0 });
    await becameReady;
    const gone = seen((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null');
    await qmp.execute('job-complete', { id: 'm0' });
    await gone;

    expect(statusesOf(events, 'm0')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    const mine = events.filter((e) => e.data.id === 'm0' || e.data.device === 'm0');
    const names = mine.map((e) => (e.event === 'JOB_STATUS_CHANGE' ? String(e.data.status) : e.event));
    expect(names).toEqual(['created', 'running', 'ready', 'BLOCK_JOB_READY', 'waiting', 'pending', 'BLOCK_JOB_COMPLETED', 'concluded', 'null']);
    const completed = mine.find((e) => e.event === 'BLOCK_JOB_COMPLETED')!;
    expect(completed.data).toMatchObject({ device: 'm0', type: 'mirror' });
    expect(completed.data.error).toBeUndefined();
    expect(completed.data.offset).toBe(completed.data.len);
    // seq is strictly increasing, the job was created before blockdev-mirror returned, all on session 1.
    expect(mine.every((e, i) => i === 0 || e.seq > mine[i - 1]!.seq)).toBe(true);
    expect(mine[0]!.seq).toBeLessThan(mirrorReply!.seq);
    expect(new Set(mine.map((e) => e.session))).toEqual(new Set([1]));
    expect(mine.every((e) => typeof e.qemuTimestamp === 'number' && e.receivedMono > 0)).toBe(true);
    // A second monitor saw exactly the same sequence (every event goes to every negotiated monitor).
    await oracle.waitForStatus('m0', 'null', 30_000);
    expect(oracle.statusSequence('m0')).toEqual(statusesOf(events, 'm0'));
  });

  it('rejects a command in flight when qemu-storage-daemon dies as outcome unknown', async () => {
    const qsd = await startQsd();
    const { qmp, states } = await ready(qsd);
    // Freeze the daemon so the command cannot be answered, then kill it.
    process.kill(qsd.pid, 'SIGSTOP');
    const inFlight = qmp.execute('query-block-jobs').catch((e: unknown) => e);
    expect(qmp.pendingCount).toBe(1);
    await qsd.kill('SIGKILL');
    const error = await inFlight;
    expect(error).toBeInstanceOf(QmpOutcomeUnknownError);
    expect(error).toMatchObject({ code: 'QMP_ERR_OUTCOME_UNKNOWN', sent: { execute: 'query-block-jobs' } });
    await until(() => qmp.state === 'disconnected', 'disconnected');
    expect(states).toEqual(['idle', 'connecting', 'negotiating', 'ready', 'disconnected']);
  });

  it('reconnects by itself after qemu-storage-daemon restarts; a new session begins and events flow again', async () => {
    const qsd = await startQsd();
    const { qmp, sessions, events, errors } = await ready(qsd, {
      reconnect: { enabled: true, initialDelayMs: 20, maxDelayMs: 200 },
    });
    await qsd.restart();
    await until(() => sessions.length === 2 && qmp.state === 'ready', 'second session');
    expect(sessions[1]).toMatchObject({ number: 2, sameProcess: 'unknown' }); // same binary: cannot tell
    expect(sessions[1]!.seq).toBeGreaterThan(sessions[0]!.seq);
    await startMirror(qmp, qsd, { jobId: 'after', dataMiB: 1, speed: 0 });
    await until(() => statusesOf(events, 'after').includes('ready'), 'mirror ready on session 2');
    await qmp.execute('job-cancel', { id: 'after' });
    await until(() => statusesOf(events, 'after').includes('null'), 'mirror gone');
    expect(events.filter((e) => e.data.id === 'after').every((e) => e.session === 2)).toBe(true);
    // The session's end is reported once, with its code; while the daemon was down, failed attempts
    // were reported, not thrown. Which failure depends on timing: a refused connect, or a socket of
    // the dying process that closed before any greeting.
    expect(errors.map((e) => e.code).filter((code) => !['QMP_ERR_CONNECT', 'QMP_ERR_MONITOR_BUSY', 'QMP_ERR_PROTOCOL'].includes(code))).toEqual(['QMP_ERR_DISCONNECTED']);
  });

  it('reports a second client on a busy monitor as busy within greetingTimeoutMs, and connects once it is free', async () => {
    const qsd = await startQsd();
    const first = await ready(qsd);
    const started = Date.now();
    const second = watch({ address: qsd.address('gw'), name: 'second', greetingTimeoutMs: 500 });
    await until(() => second.errors.length > 0, 'busy report', 10_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(second.errors[0]).toBeInstanceOf(QmpMonitorBusyError);
    expect(second.errors[0]!.message).toMatch(/monitor busy/);
    expect(second.states).toEqual(['idle', 'connecting', 'negotiating', 'disconnected']);

    await first.qmp.close();
    second.qmp.start();
    await until(() => second.qmp.state === 'ready', 'second client ready');
    await expect(second.qmp.execute('query-jobs')).resolves.toEqual([]);
  });
});
