import { BehaviorSubject, Subject, of } from 'rxjs';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, QmpCommandError, QmpConnectError } from '../../../src/errors.js';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import type { JobFeed } from '../../../src/jobs/monitor-jobs.js';
import { parseBlockJobRows } from '../../../src/jobs/qmp-payloads.js';
import { JobRegistry } from '../../../src/jobs/registry.js';
import type { JobTransition, ProgressUpdate, StreamInput, VmInfoUpdate } from '../../../src/jobs/types.js';
import type { QmpError } from '../../../src/errors.js';
import type { QmpEvent, QmpMonitor, QmpReply, QmpRunState, QmpSession } from '../../../src/qmp/types.js';
import { label } from './reducer-harness.js';

/** An in-memory monitor: the test drives sessions and events; polls answer from `blockJobs`. */
class FakeMonitor implements QmpMonitor {
  readonly state$ = new BehaviorSubject<QmpRunState>('connecting');
  readonly sessions$ = new Subject<QmpSession>();
  readonly events$ = new Subject<QmpEvent>();
  readonly errors$ = new Subject<QmpError>();
  session: QmpSession | undefined;
  blockJobs: Record<string, unknown>[] = [];
  seq = 0;
  closed = false;
  get state(): QmpRunState {
    return this.state$.value;
  }
  connect(): void {
    this.session = { number: (this.session?.number ?? 0) + 1, greeting: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' }, capabilities: [] }, sameProcess: 'first', startedAt: 0, seq: ++this.seq };
    this.state$.next('ready');
    this.sessions$.next(this.session);
  }
  emit(event: string, data: Record<string, unknown>): void {
    this.events$.next({ event, data, qemuTimestamp: null, receivedAt: Date.now(), receivedMono: 0, seq: ++this.seq, session: this.session?.number ?? 0 });
  }
  jsc(id: string, ...statuses: string[]): void {
    for (const status of statuses) this.emit('JOB_STATUS_CHANGE', { id, status });
  }
  async execute<T>(command: string): Promise<T> {
    return (await this.executeWithMeta<T>(command)).value;
  }
  async executeWithMeta<T>(command: string): Promise<QmpReply<T>> {
    const value = (() => {
      if (command === 'query-block-jobs') return structuredClone(this.blockJobs);
      if (command === 'query-jobs') return this.blockJobs.map((r) => ({ id: r['device'], type: r['type'], status: r['status'], 'current-progress': r['offset'], 'total-progress': r['len'] }));
      throw new QmpCommandError('CommandNotFound', `The command ${command} has not been found`, { execute: command });
    })();
    return { value: value as T, seq: ++this.seq, receivedAt: Date.now(), session: this.session?.number ?? 0 };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

const waitUntil = async (what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

let registry: JobRegistry | undefined;
afterEach(async () => {
  await registry?.close();
  registry = undefined;
});

function setup(options: ConstructorParameters<typeof JobRegistry>[0] = {}) {
  const monitor = new FakeMonitor();
  registry = new JobRegistry({ activePollMs: 20, idlePollMs: 0, internalPauseMs: 80, identifyHoldMs: 0, ...options, createMonitor: () => monitor });
  const changes: StreamInput[] = [];
  registry.changes$.subscribe((c) => changes.push(c));
  return { monitor, registry, changes };
}

describe('JobRegistry', () => {
  it('snapshot() reflects every change already emitted, from inside the changes$ callback', () => {
    const { monitor, registry: reg } = setup({ idlePollMs: 0, activePollMs: 60_000 });
    const seen: string[] = [];
    reg.changes$.subscribe((change) => {
      if (change.kind !== 'transition') return;
      const inSnapshot = reg.snapshot()[0]?.jobs.find((j) => j.id === change.job.id);
      seen.push(`${label(change.to)}:${inSnapshot ? label({ state: inSnapshot.state, ready: inSnapshot.ready, ...(inSnapshot.outcome ? { outcome: inSnapshot.outcome } : {}) }) : 'absent'}`);
    });
    reg.add('vm1', 'unix:/nowhere');
    monitor.connect();
    monitor.jsc('j', 'created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null');
    expect(seen).toEqual([
      'created:created', 'running:running', 'ready+:ready+', 'waiting:waiting', 'pending:pending',
      'concluded=completed:concluded=completed', 'dismissed=completed:dismissed=completed',
    ]);
  });

  it('a held pause is not in the snapshot until it is emitted; a noted pause shows at once', async () => {
    const { monitor, registry: reg, changes } = setup();
    reg.add('vm1', 'unix:/nowhere');
    monitor.connect();
    monitor.blockJobs.push({ device: 'j', type: 'mirror', status: 'running', len: 10, offset: 1, busy: true, paused: false, speed: 0, 'io-status': 'ok', ready: false });
    monitor.jsc('j', 'created', 'running', 'paused');
    monitor.blockJobs[0]!['status'] = 'paused';
    expect(reg.job('vm1', 'j')?.state).toBe('running');
    await waitUntil('the pause to persist', () => reg.job('vm1', 'j')?.state === 'paused');
    expect(reg.job('vm1', 'j')?.pauseReason).toBe('user');
    monitor.jsc('j', 'running');
    monitor.blockJobs[0]!['status'] = 'running';
    reg.engine('vm1')!.noteVerb('j', 'pause');
    monitor.jsc('j', 'paused');
    expect(reg.job('vm1', 'j')).toMatchObject({ state: 'paused', pauseReason: 'user' });
    const labels = changes.filter((c): c is JobTransition => c.kind === 'transition').map((c) => label(c.to));
    expect(labels).toEqual(['created', 'running', 'paused/user', 'running', 'paused/user']);
  });

  it('monitor down: VM status disconnected, jobs stale with their last state; then connected and reconciled', async () => {
    const { monitor, registry: reg, changes } = setup();
    reg.add('vm1', 'unix:/nowhere');
    monitor.connect();
    monitor.blockJobs.push({ device: 'j', type: 'mirror', status: 'ready', len: 10, offset: 10, busy: false, paused: false, speed: 0, 'io-status': 'ok', ready: true });
    monitor.jsc('j', 'created', 'running', 'ready');
    monitor.state$.next('disconnected');
    expect(reg.snapshot()[0]).toMatchObject({ status: 'disconnected', jobs: [{ id: 'j', state: 'ready', stale: true }] });
    monitor.connect();
    await waitUntil('reconciled', () => reg.job('vm1', 'j')?.stale === false);
    expect(changes.filter((c) => c.kind === 'vm').map((c) => (c.kind === 'vm' ? c.status : ''))).toEqual(['connected', 'disconnected', 'connected']);
  });

  it('a monitor that cannot connect is reported disconnected once, with the reason, then connected', () => {
    const { monitor, registry: reg, changes } = setup();
    reg.add('vm1', 'unix:/nowhere');
    expect(reg.snapshot()[0]?.status).toBe('connecting');
    monitor.errors$.next(new QmpConnectError('unix:/nowhere', 'connection refused'));
    monitor.errors$.next(new QmpConnectError('unix:/nowhere', 'connection refused'));
    monitor.connect();
    expect(changes.map((c) => (c.kind === 'vm' ? `${c.status}${c.reason ? `: ${c.reason}` : ''}` : ''))).toEqual([
      'disconnected: unix:/nowhere: connection refused',
      'connected',
    ]);
  });

  it('refuses bad or duplicate VM names with a specific error, and closes the monitors it created', async () => {
    const { monitor, registry: reg } = setup();
    reg.add('vm1', 'unix:/nowhere');
    expect(() => reg.add('vm1', 'unix:/x')).toThrow(ConfigError);
    expect(() => reg.add('vm1', 'unix:/x')).toThrow(/already registered/);
    expect(() => reg.add('bad name!', 'unix:/x')).toThrow(/invalid VM name "bad name!"/);
    expect(reg.vms()).toEqual(['vm1']);
    expect(await reg.remove('vm1')).toBe(true);
    expect(monitor.closed).toBe(true);
    expect(reg.vms()).toEqual([]);
    expect(await reg.remove('vm1')).toBe(false);
  });

  it('a monitor passed in stays the caller\'s: remove() does not close it', async () => {
    registry = new JobRegistry({ idlePollMs: 0 });
    const monitor = new FakeMonitor();
    registry.add('vm2', monitor);
    expect(registry.engine('vm2')?.feed).toBe(monitor);
    await registry.remove('vm2');
    expect(monitor.closed).toBe(false);
  });

  it('vmInfo$ replays every VM, then follows later ones: status, version, problems by code, removal', async () => {
    const first = new FakeMonitor();
    const second = new FakeMonitor();
    registry = new JobRegistry({ idlePollMs: 0 });
    registry.add('vm1', first);
    const updates: VmInfoUpdate[] = [];
    registry.vmInfo$.subscribe((update) => updates.push(update));
    expect(updates).toEqual([{ kind: 'info', info: { vm: 'vm1', status: 'connecting', backend: 'qmp', commandsSent: 0, problems: {} } }]);
    registry.add('vm2', second, { backend: 'simulated' });
    second.errors$.next(new QmpConnectError('unix:/x', 'connection refused'));
    second.connect();
    await waitUntil('vm2 connected with its version', () => registry!.info('vm2')?.qemu?.major === 7);
    const vm2 = updates.flatMap((u) => (u.kind === 'info' && u.info.vm === 'vm2' ? [u.info] : []));
    expect(vm2.map((info) => info.status)).toEqual(expect.arrayContaining(['connecting', 'disconnected', 'connected']));
    expect(vm2.find((info) => info.status === 'disconnected')).toMatchObject({ reason: expect.stringContaining('connection refused'), backend: 'simulated' });
    expect(registry.info('vm2')).toMatchObject({ status: 'connected', problems: { QMP_ERR_CONNECT: 1 }, lastProblem: { code: 'QMP_ERR_CONNECT' } });
    expect(registry.info('vm2')).not.toHaveProperty('reason');
    await registry.remove('vm2');
    expect(updates.at(-1)).toEqual({ kind: 'removed', vm: 'vm2' });
    expect(registry.info('vm2')).toBeUndefined();
  });

  it('progress carries the job type and its published state, so nobody looks the job up', async () => {
    const { monitor, registry: reg } = setup();
    const progress: ProgressUpdate[] = [];
    reg.progress$.subscribe((update) => progress.push(update));
    reg.add('vm1', 'unix:/nowhere');
    monitor.connect();
    monitor.blockJobs.push({ device: 'j', type: 'mirror', status: 'running', len: 10, offset: 1, busy: true, paused: false, speed: 0, 'io-status': 'ok', ready: false });
    monitor.jsc('j', 'created', 'running');
    await waitUntil('a progress update', () => progress.some((p) => p.progress.current === 1));
    monitor.blockJobs[0]!['offset'] = 5;
    await waitUntil('the next update', () => progress.some((p) => p.progress.current === 5));
    expect(progress.at(-1)).toMatchObject({ vm: 'vm1', job: 'j', type: 'mirror', state: 'running' });
  });

  it('follows a feed that is not a QMP monitor with its own poll and capabilities, and does not control it over QMP', async () => {
    const monitor = new FakeMonitor();
    const feed: JobFeed = { get state() { return monitor.state; }, state$: monitor.state$, sessions$: monitor.sessions$, get session() { return monitor.session; }, events$: monitor.events$, errors$: monitor.errors$ };
    registry = new JobRegistry({ idlePollMs: 0, activePollMs: 20, identifyHoldMs: 0 });
    expect(() => registry!.add('lv1', feed)).toThrow(ConfigError);
    let polls = 0;
    registry.add('lv1', feed, {
      backend: 'libvirt',
      detectCapabilities: (version) => of({ capabilities: capabilitiesFromVersion(version), from: 'version' as const }),
      poll: () => {
        polls++;
        return of({ rows: parseBlockJobRows(structuredClone(monitor.blockJobs)), seq: ++monitor.seq, receivedAt: Date.now(), session: monitor.session?.number ?? 0 });
      },
    });
    monitor.connect();
    monitor.blockJobs.push({ device: 'copy-vda', type: 'mirror', status: 'ready', len: 10, offset: 10, busy: false, paused: false, speed: 0, 'io-status': 'ok', ready: true });
    monitor.jsc('copy-vda', 'created', 'running', 'ready');
    await waitUntil('the job, and a poll through the injected poller', () => registry!.job('lv1', 'copy-vda')?.state === 'ready' && polls > 0);
    expect(registry.info('lv1')).toMatchObject({ backend: 'libvirt', status: 'connected' });
    expect(registry.control.mayTouch('lv1', registry.job('lv1', 'copy-vda')!)).toMatchObject({ ok: false, reason: 'not-supported', why: expect.stringContaining('no QMP monitor') });
  });
});
