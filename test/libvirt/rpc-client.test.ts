// The libvirt RPC client against the real libvirtd of the lab: sessions, queries, a real blockcopy
// followed through QEMU's passthrough and block-job-2 (compared with `virsh qemu-monitor-event`),
// control, read-only limits, keepalive, and a libvirtd restart.
import { afterEach, beforeAll, expect, it } from 'vitest';
import { firstValueFrom, filter } from 'rxjs';
import { LibvirtClient } from '../../src/libvirt/client.js';
import type { LibvirtClientOptions, LibvirtDomainEvent, LibvirtMonitorEvent, LibvirtSession } from '../../src/libvirt/types.js';
import type { LibvirtError } from '../../src/errors.js';
import { describeLibvirt } from '../utils/libvirt-gate.js';
import { acquireLibvirtd, cleanupLeftoversAfterAll, createLabDomain, QemuEventObserver, virsh, type LabDomain, type Libvirtd } from '../utils/qsd.js';

/** A client with every stream recorded, and a way to wait on what it recorded. */
class Recorded {
  readonly client: LibvirtClient;
  readonly monitor: LibvirtMonitorEvent[] = [];
  readonly domain: LibvirtDomainEvent[] = [];
  readonly sessions: LibvirtSession[] = [];
  readonly errors: LibvirtError[] = [];
  readonly states: string[] = [];
  readonly logs: { level: string; message?: string; fields: Record<string, unknown> }[] = [];

  constructor(options: LibvirtClientOptions = {}) {
    const log = (level: string) => (fields: Record<string, unknown>, message?: string) => {
      if (this.logs.length < 100_000) this.logs.push({ level, message, fields });
    };
    this.client = new LibvirtClient({ ...options, logger: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') } });
    this.client.monitorEvents$.subscribe((e) => this.monitor.push(e));
    this.client.domainEvents$.subscribe((e) => this.domain.push(e));
    this.client.sessions$.subscribe((s) => this.sessions.push(s));
    this.client.errors$.subscribe((e) => this.errors.push(e));
    this.client.state$.subscribe((s) => this.states.push(s));
  }

  async started(): Promise<LibvirtSession> {
    const session = firstValueFrom(this.client.sessions$);
    this.client.start();
    return session;
  }

  statuses(domain: string, jobId: string): string[] {
    return this.monitor.filter((e) => e.domain.name === domain && e.event === 'JOB_STATUS_CHANGE' && e.data.id === jobId).map((e) => String(e.data.status));
  }
}

/** Polls `condition` until true (the machine is loaded: generous, never a fixed sleep). */
async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const COPY_JOB = 'copy-vda-libvirt-1-format';

describeLibvirt('libvirt RPC client on a real libvirtd', () => {
  cleanupLeftoversAfterAll();
  let daemon: Libvirtd;
  const clients: Recorded[] = [];
  const domains: LabDomain[] = [];
  const recorded = (options?: LibvirtClientOptions): Recorded => {
    const r = new Recorded(options);
    clients.push(r);
    return r;
  };
  const domainNamed = async (): Promise<LabDomain> => {
    const d = await createLabDomain('lvrpc');
    domains.push(d);
    return d;
  };

  beforeAll(async () => {
    daemon = await acquireLibvirtd();
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((r) => r.client.close()));
    await Promise.all(domains.splice(0).map((d) => d.destroy()));
  });
  // The lease is a leftover: cleanupLeftoversAfterAll() releases it after the domains are gone.

  it('opens a session with both versions and keepalive, then lists, looks up and reads XML', async () => {
    const dom = await domainNamed();
    const r = recorded();
    const session = await r.started();
    expect(r.states).toEqual(['idle', 'connecting', 'negotiating', 'ready']);
    expect(session).toMatchObject({ number: 1, uri: 'qemu:///system', readOnly: false, keepalive: true });
    const [major, minor, micro] = (await virsh(['version', '--daemon'])).match(/Running against daemon: (\d+)\.(\d+)\.(\d+)/)!.slice(1).map(Number);
    expect(session.libVersion).toMatchObject({ major, minor, micro });
    expect(session.hypervisorVersion.major).toBeGreaterThanOrEqual(7);

    const list = await r.client.listAllDomains();
    expect(list).toContainEqual({ name: dom.name, uuid: dom.uuid, id: expect.any(Number), active: true });
    const byName = await r.client.lookupDomainByName(dom.name);
    const byUuid = await r.client.lookupDomainByUuid(dom.uuid.toUpperCase());
    expect(byUuid).toEqual(byName);
    expect(byName.id).toBeGreaterThan(0);
    const xml = await r.client.getDomainXml(byName);
    expect(xml).toContain(`<name>${dom.name}</name>`);
    expect(xml).toContain(dom.disk);
    expect(await r.client.getBlockJobInfo(byName, 'vda')).toBeNull();

    await expect(r.client.lookupDomainByName(`${dom.name}-missing`)).rejects.toMatchObject({
      code: 'LIBVIRT_ERR_REMOTE',
      virCode: 42,
      virCodeName: 'VIR_ERR_NO_DOMAIN',
    });
    await expect(r.client.getBlockJobInfo(byName, 'vdz')).rejects.toMatchObject({ code: 'LIBVIRT_ERR_REMOTE', call: { procedure: 'REMOTE_PROC_DOMAIN_GET_BLOCK_JOB_INFO' } });
    expect(r.errors).toEqual([]);
  });

  it('follows a real blockcopy: job info, set speed, QEMU events in virsh order, block-job-2, pivot', async () => {
    const dom = await domainNamed();
    const r = recorded();
    r.client.watchMonitorEvents();
    r.client.watchDomainEvents('block-job-2');
    await r.started();
    const observer = new QemuEventObserver();
    try {
      await observer.ready(dom.name); // suspends/resumes the domain: our watch sees that RESUME too
      await until(() => r.monitor.some((e) => e.domain.name === dom.name && e.event === 'RESUME'), 'our RESUME');
      const ref = await r.client.lookupDomainByName(dom.name);

      await virsh(['blockcopy', dom.name, 'vda', dom.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
      const running = await r.client.getBlockJobInfo(ref, 'vda');
      expect(running).toMatchObject({ type: 'copy', typeCode: 2, bandwidth: 1024 * 1024, end: 64 * 1024 * 1024 });
      expect(running!.cur).toBeLessThan(running!.end);
      await r.client.blockJobSetSpeed(ref, 'vda', 0);
      expect((await r.client.getBlockJobInfo(ref, 'vda'))?.bandwidth).toBe(0);

      await until(() => r.domain.some((e) => e.kind === 'block-job-2' && e.domain.name === dom.name && e.status === 'ready'), 'block-job-2 ready');
      expect(r.statuses(dom.name, COPY_JOB)).toContain('ready');
      const ready = await r.client.getBlockJobInfo(ref, 'vda');
      expect(ready?.cur).toBe(ready?.end);
      expect(await r.client.getDomainXml(ref)).toMatch(/<mirror [^>]*ready='yes'/);

      await r.client.blockJobAbort(ref, 'vda', { pivot: true });
      await until(() => r.domain.some((e) => e.kind === 'block-job-2' && e.domain.name === dom.name && e.status === 'completed'), 'block-job-2 completed');
      expect(await dom.vdaSource()).toBe(dom.path('copy.qcow2'));
      expect(await r.client.getBlockJobInfo(ref, 'vda')).toBeNull();

      // The independent observer saw the same QEMU events, in the same order, with the same timestamps.
      await observer.waitForStatus(dom.name, COPY_JOB, 'null');
      await until(() => r.statuses(dom.name, COPY_JOB).at(-1) === 'null', 'our null');
      expect(r.statuses(dom.name, COPY_JOB)).toEqual(observer.statusSequence(dom.name, COPY_JOB));
      const ours = r.monitor.filter((e) => e.domain.name === dom.name && e.event === 'JOB_STATUS_CHANGE').map((e) => (e.seconds * 1e6 + e.micros));
      const theirs = observer.records.filter((e) => e.domain === dom.name && e.event === 'JOB_STATUS_CHANGE').map((e) => Math.round(e.qemuSeconds * 1e6));
      expect(ours).toEqual(theirs);
      const readyEvent = r.monitor.find((e) => e.domain.name === dom.name && e.event === 'BLOCK_JOB_READY')!;
      expect(readyEvent.data).toMatchObject({ device: COPY_JOB, type: 'mirror' });
      expect(readyEvent.qemuTimestamp).toBeCloseTo(readyEvent.seconds * 1000 + readyEvent.micros / 1000, 6);
      // Wire order: seq strictly increases over both streams together.
      const seqs = [...r.monitor, ...r.domain].map((e) => e.seq).sort((a, b) => a - b);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(r.domain.filter((e) => e.domain.name === dom.name).map((e) => e.kind === 'block-job-2' && `${e.type} ${e.status}`)).toEqual(['copy ready', 'copy completed']);
    } finally {
      await observer.stop();
    }
    // libvirtd was only ever asked through its API: no custom-monitor taint.
    expect(dom.log()).not.toMatch(/custom-monitor/);
  });

  it('cancels a copy before READY (abort, async): block-job-2 canceled, QEMU cancelled', async () => {
    const dom = await domainNamed();
    const r = recorded();
    r.client.watchMonitorEvents({ event: 'BLOCK_JOB_CANCELLED' });
    r.client.watchDomainEvents('block-job-2');
    await r.started();
    const ref = await r.client.lookupDomainByName(dom.name);
    await virsh(['blockcopy', dom.name, 'vda', dom.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
    await r.client.blockJobAbort(ref, 'vda', { async: true });
    await until(() => r.domain.some((e) => e.domain.name === dom.name && e.kind === 'block-job-2' && e.status === 'canceled'), 'canceled');
    await until(() => r.monitor.some((e) => e.domain.name === dom.name), 'BLOCK_JOB_CANCELLED');
    // The event-name filter is libvirt's: nothing else came through that watch.
    expect(new Set(r.monitor.map((e) => e.event))).toEqual(new Set(['BLOCK_JOB_CANCELLED']));
  });

  it('sees domains started after it connected, through the all-domains watches', async () => {
    const r = recorded();
    r.client.watchDomainEvents('lifecycle');
    r.client.watchMonitorEvents({ event: 'RESUME' });
    await r.started();
    const dom = await domainNamed();
    await until(() => r.domain.some((e) => e.kind === 'lifecycle' && e.domain.name === dom.name && e.event === 'started'), 'lifecycle started');
    await virsh(['suspend', dom.name]);
    await virsh(['resume', dom.name]);
    await until(() => r.monitor.some((e) => e.domain.name === dom.name && e.event === 'RESUME'), 'RESUME of the new domain');
    const kinds = r.domain.filter((e) => e.domain.name === dom.name).map((e) => e.kind === 'lifecycle' && e.event);
    // libvirt 9.0 reports a start as resumed (unpaused) and then started (booted).
    expect(kinds).toEqual(['resumed', 'started', 'suspended', 'resumed']);
    expect(r.domain.find((e) => e.domain.name === dom.name)?.domain.uuid).toBe(dom.uuid);
  });

  it('read-only: queries and events work; control and the QEMU passthrough are refused with typed errors', async () => {
    const dom = await domainNamed();
    const r = recorded({ readOnly: true });
    r.client.watchDomainEvents('lifecycle');
    const monitorWatch = r.client.watchMonitorEvents();
    const session = await r.started();
    expect(session.readOnly).toBe(true);
    expect(session.watches).toEqual({ registered: [1], failed: [monitorWatch.id] });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ code: 'LIBVIRT_ERR_REGISTRATION', cause: { code: 'LIBVIRT_ERR_REMOTE', virCodeName: 'VIR_ERR_OPERATION_DENIED' } });
    expect(monitorWatch.callbackId).toBeUndefined();
    const ref = await r.client.lookupDomainByName(dom.name);
    expect(await r.client.getBlockJobInfo(ref, 'vda')).toBeNull();
    await expect(r.client.blockJobAbort(ref, 'vda', { pivot: true })).rejects.toMatchObject({ code: 'LIBVIRT_ERR_REMOTE', virCodeName: 'VIR_ERR_OPERATION_DENIED' });
    await virsh(['suspend', dom.name]);
    await until(() => r.domain.some((e) => e.domain.name === dom.name && e.kind === 'lifecycle' && e.event === 'suspended'), 'suspended');
  });

  it('keepalive: pings libvirtd when idle, gets answers, and the session stays up', async () => {
    const r = recorded({ keepalive: { intervalMs: 100, count: 3 } });
    const session = await r.started();
    const pings = () => r.logs.filter((l) => l.message === '-->' && l.fields.keepalive === 'PING').length;
    const pongs = () => r.logs.filter((l) => l.message === '<--' && l.fields.prog === 0x6b656570 && l.fields.proc === 2).length;
    await until(() => pongs() >= 5, '5 PONGs');
    expect(pings()).toBeGreaterThanOrEqual(5);
    expect(r.client.state).toBe('ready');
    expect(r.client.session).toBe(session);
    expect(r.errors).toEqual([]);
  });

  it("answers libvirtd's own PINGs (its keepalive_interval, 5 s by default, runs once we asked for the feature)", async () => {
    // Our own interval is long, so the connection is idle from libvirtd's side and it pings us.
    const r = recorded({ keepalive: { intervalMs: 60_000, count: 5 } });
    await r.started();
    const theirPings = () => r.logs.filter((l) => l.message === '<--' && l.fields.prog === 0x6b656570 && l.fields.proc === 1).length;
    const ourPongs = () => r.logs.filter((l) => l.message === '-->' && l.fields.keepalive === 'PONG').length;
    await until(() => theirPings() >= 1 && ourPongs() >= 1, "libvirtd's PING and our PONG", 30_000);
    expect(r.client.session?.number).toBe(1);
  });

  it('a hung libvirtd (SIGSTOP) is declared dead by keepalive; once it runs again, a new session', async (ctx) => {
    if (!daemon.owned) ctx.skip(); // never freeze an operator's libvirtd
    const r = recorded({ keepalive: { intervalMs: 100, count: 3 }, negotiateTimeoutMs: 2_000, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } });
    await r.started();
    const pid = daemon.pid;
    process.kill(pid, 'SIGSTOP');
    try {
      await until(() => r.errors.some((e) => e.code === 'LIBVIRT_ERR_KEEPALIVE'), 'the keepalive verdict', 30_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(r.errors.find((e) => e.code === 'LIBVIRT_ERR_KEEPALIVE')).toMatchObject({ intervalMs: 100, count: 3 });
    await until(() => r.sessions.length === 2, 'session 2', 60_000);
    expect(await r.client.getLibVersion()).toEqual(r.sessions[0]!.libVersion);
  });

  it('libvirtd restarted: reconnects, re-registers its watches, emits a new session, events flow again', async (ctx) => {
    if (!daemon.owned) ctx.skip(); // the lab never restarts an operator's libvirtd
    const dom = await domainNamed();
    const r = recorded({ reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
    r.client.watchMonitorEvents({ event: 'RESUME' });
    r.client.watchDomainEvents('lifecycle');
    await r.started();
    const ref = await r.client.lookupDomainByName(dom.name);
    await daemon.restart(async () => {
      await until(() => r.client.state !== 'ready', 'the loss');
      await expect(r.client.getDomainXml(ref)).rejects.toMatchObject({ code: 'GW_ERR_STATE' });
    });
    await until(() => r.sessions.length === 2, 'session 2', 90_000);
    expect(r.sessions[1]).toMatchObject({ number: 2, watches: { registered: [1, 2], failed: [] } });
    expect(r.states).toContain('disconnected');
    // Domains survive a libvirtd restart; a new connection sees the same one.
    expect(await r.client.lookupDomainByName(dom.name)).toEqual(ref);
    await virsh(['suspend', dom.name]);
    await virsh(['resume', dom.name]);
    await until(() => r.monitor.some((e) => e.session === 2 && e.domain.name === dom.name && e.event === 'RESUME'), 'RESUME on session 2');
    await until(() => r.domain.some((e) => e.session === 2 && e.kind === 'lifecycle' && e.event === 'resumed'), 'lifecycle on session 2');
  });
});
