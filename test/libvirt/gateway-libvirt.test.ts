/**
 * `serve --libvirt` against the lab's real libvirtd and TCG domains, with no domain XML change.
 * Each test drives a block job the way an operator would (virsh) or through the gateway, and
 * compares what the gateway pushed with QEMU's own JOB_STATUS_CHANGE sequence as an independent
 * observer saw it (`virsh qemu-monitor-event --loop`), and with libvirt's own verdicts.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serve } from '../../src/cli/serve.js';
import type { RunningGateway } from '../../src/gateway/server.js';
import type { RawQmpEvent } from '../../src/lab/raw-qmp.js';
import { TestClient, type Msg } from '../utils/gateway-support.js';
import { describeLibvirt } from '../utils/libvirt-gate.js';
import { expectedEngineStates, waitUntil } from '../utils/job-scenarios.js';
import {
  acquireLibvirtd,
  cleanupLeftoversAfterAll,
  createLabDomain,
  LibvirtEventObserver,
  makeTestDir,
  QemuEventObserver,
  virsh,
  JobOracle,
  type LabDomain,
  type Libvirtd,
} from '../utils/qsd.js';
import { tokensFile } from '../utils/tokens.js';

const OPS = 'ops-secret';
const VIEWER = 'viewer-secret';

describeLibvirt('serve --libvirt (real libvirtd)', () => {
  cleanupLeftoversAfterAll();
  let gateway: RunningGateway;
  let qemu: QemuEventObserver;
  let libvirt: LibvirtEventObserver;
  let ops: TestClient;
  let viewer: TestClient;
  const stop = new AbortController();
  let exit: Promise<number>;
  let commandCount = 0;
  let daemon: Libvirtd;

  beforeAll(async () => {
    daemon = await acquireLibvirtd();
    qemu = new QemuEventObserver();
    libvirt = new LibvirtEventObserver();
    const dir = makeTestDir();
    const tokens = join(dir, 'tokens.json');
    writeFileSync(tokens, JSON.stringify(tokensFile([{ name: 'ops', secret: OPS, scopes: ['read', 'control'] }, { name: 'viewer', secret: VIEWER, scopes: ['read'] }])));
    // The config file's domain filter keeps other domains on this host out of the gateway.
    const config = join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ libvirt: [{ uri: 'qemu:///system', domains: `^lvg-${process.pid}-` }] }));
    await new Promise<void>((resolve, reject) => {
      exit = serve(['--config', config, '--tokens', tokens, '--listen', '127.0.0.1:0', '--log-level', process.env.LIBVIRT_TEST_LOG ?? 'silent', '--log-format', 'json'], {
        signal: stop.signal,
        out: () => {},
        onListening: (g) => {
          gateway = g;
          resolve();
        },
      });
      exit.catch(reject);
    });
    ops = await TestClient.connect(gateway.wsUrl, { headers: { Authorization: `Bearer ${OPS}` } });
    viewer = await TestClient.connect(gateway.wsUrl, { headers: { Authorization: `Bearer ${VIEWER}` } });
    ops.send({ type: 'subscribe', id: 's', sub: 'all' });
    // No VM yet (synced is per VM); domains started later are delivered live.
    await ops.next((m) => m.type === 'subscribed');
  });

  afterAll(async () => {
    ops?.ws.terminate();
    viewer?.ws.terminate();
    stop.abort();
    await exit;
    await qemu?.stop();
    await libvirt?.stop();
  });

  /** A new domain the gateway follows (it starts after the gateway, so it must appear by itself). */
  async function followedDomain(options: { extraQmp?: boolean } = {}): Promise<LabDomain> {
    const domain = await createLabDomain(`lvg-${process.pid}`, options);
    await qemu.ready(domain.name);
    await libvirt.ready(domain.name);
    await ops.until((all) => all.some((m) => m.type === 'vm' && m.vm === domain.name && m.status === 'connected'), 30_000);
    return domain;
  }

  /** Events the gateway pushed for one job, in order. */
  const pushed = (vm: string, job: string): Msg[] => ops.ofType('event', 'all').filter((m) => m.vm === vm && m.job.id === job);
  const pushedStates = (vm: string, job: string): string[] => pushed(vm, job).map((m) => m.transition.to);

  /** What QEMU reported, as the engine must show it (null = dismissed, internal pause blips dropped). */
  function qemuStates(vm: string, job: string): string[] {
    const events = qemu.records.filter((r) => r.domain === vm).map((r) => ({ event: r.event, data: r.data, receivedAt: r.receivedMs }) as unknown as RawQmpEvent);
    return expectedEngineStates(events, job);
  }

  /** The pushed event of `job` entering `state` (waits for it; never consumes messages). */
  async function pushedState(vm: string, job: string, state: string, timeoutMs = 60_000): Promise<Msg> {
    const find = () => pushed(vm, job).find((m) => m.transition.to === state);
    await ops.until(() => find() !== undefined, timeoutMs);
    return find()!;
  }

  /** Waits until QEMU dismissed the job and the gateway pushed `dismissed`; then both sequences must agree. */
  async function expectSameSequence(vm: string, job: string): Promise<Msg> {
    await qemu.waitForStatus(vm, job, 'null');
    const last = await pushedState(vm, job, 'dismissed');
    expect(pushedStates(vm, job)).toEqual(qemuStates(vm, job));
    return last;
  }

  /**
   * libvirt's block-job-2 texts for `vm` once its verdict ending `job` (e.g. 'Block Copy for vda') reached
   * the independent observer: its virsh lags the gateway on a loaded machine, and one virsh stream keeps a
   * domain's events in order, so the earlier texts are in by then.
   */
  async function libvirtVerdicts(vm: string, job: string): Promise<string[]> {
    await libvirt.waitFor((r) => r.domain === vm && r.event === 'block-job-2' && r.detail.startsWith(`${job} for `) && /\b(completed|failed|canceled)$/.test(r.detail));
    return libvirt.blockJobs(vm);
  }

  async function command(client: TestClient, body: Record<string, unknown>): Promise<Msg> {
    const id = `c${++commandCount}`;
    client.send({ type: 'command', id, ...body });
    const find = () => client.messages.find((m) => m.type === 'result' && m.id === id);
    await client.until(() => find() !== undefined, 90_000);
    return find()!;
  }

  /** libvirt's `virsh blockjob --raw` line: cur and end, or undefined when the disk has no job. */
  async function rawInfo(vm: string): Promise<{ cur: number; end: number } | undefined> {
    const text = await virsh(['blockjob', vm, 'vda', '--raw']);
    const cur = /\bcur=(\d+)/.exec(text)?.[1];
    const end = /\bend=(\d+)/.exec(text)?.[1];
    return cur !== undefined && end !== undefined ? { cur: Number(cur), end: Number(end) } : undefined;
  }

  it('blockcopy: a read-only token cannot pivot; complete sent while libvirt shows 99 % pivots once ready', async () => {
    const domain = await followedDomain();
    const job = 'copy-vda-libvirt-1-format';
    const target = domain.path('copy.qcow2');
    // 4 MiB/s: libvirt's cur = end - 1 shim lasts seconds before QEMU's READY, long enough to catch on a busy machine.
    await virsh(['blockcopy', domain.name, 'vda', target, '--transient-job', '--bandwidth', '4']);
    const created = await pushedState(domain.name, job, 'created');
    expect(created.job.libvirt).toEqual({ domainUuid: domain.uuid, disk: 'vda' });
    // /v1/info names both versions of a libvirt VM: QEMU's and libvirt's own.
    const info = (await (await fetch(`${gateway.url}/v1/info`, { headers: { Authorization: `Bearer ${OPS}` } })).json()) as { vms: Array<Record<string, unknown>> };
    expect(info.vms.find((vm) => vm.vm === domain.name)).toMatchObject({ source: 'libvirt', qemu: expect.stringMatching(/^\d+\.\d+\.\d+$/), libvirt: expect.stringMatching(/^\d+\.\d+\.\d+$/) });

    const refused = await command(viewer, { vm: domain.name, job, action: 'complete', when: 'ready' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'forbidden' } });

    // Wait for libvirt's "99 %": QEMU says offset == len but not ready yet.
    const shim = await waitUntil('libvirt cur = end - 1', async () => {
      const info = await rawInfo(domain.name);
      return info && info.cur === info.end - 1 ? info : undefined;
    }, 60_000);
    expect(pushedStates(domain.name, job)).not.toContain('ready');
    const result = await command(ops, { vm: domain.name, job, action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
    expect(shim.end).toBeGreaterThan(0);

    const dismissed = await expectSameSequence(domain.name, job);
    expect(dismissed.job).toMatchObject({ outcome: 'completed', pivoted: true, libvirt: { domainUuid: domain.uuid, disk: 'vda', verdict: 'completed' } });
    // The ready pushed came before the answer, and the pivot is real: the domain now runs on the copy.
    expect(ops.messages.indexOf(pushed(domain.name, job).find((m) => m.transition.to === 'ready')!)).toBeLessThan(ops.messages.indexOf(result));
    expect(await domain.vdaSource()).toBe(target);
    expect(await libvirtVerdicts(domain.name, 'Block Copy')).toEqual(['Block Copy for vda ready', 'Block Copy for vda completed']);
    // The internal job that created the target is hidden.
    expect(ops.ofType('event', 'all').some((m) => m.vm === domain.name && m.job.id.startsWith('create-'))).toBe(false);
    expect(domain.log()).not.toMatch(/custom-monitor/);
    await domain.destroy();
  });

  it('cancel through the gateway before READY: cancelled in QEMU and libvirt', async () => {
    const domain = await followedDomain();
    const job = 'copy-vda-libvirt-1-format';
    await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
    await pushedState(domain.name, job, 'running');
    const result = await command(ops, { vm: domain.name, job, action: 'cancel', await: 'concluded', timeoutMs: 60_000 });
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, job: { outcome: 'cancelled' } });
    const dismissed = await expectSameSequence(domain.name, job);
    expect(dismissed.job).toMatchObject({ outcome: 'cancelled', libvirt: { verdict: 'canceled' } });
    expect(await libvirtVerdicts(domain.name, 'Block Copy')).toEqual(['Block Copy for vda canceled']);
    await domain.destroy();
  });

  it('virsh blockcopy --finish after READY: QEMU completed, libvirt canceled, both carried; no pivot', async () => {
    const domain = await followedDomain();
    const job = 'copy-vda-libvirt-1-format';
    const source = await domain.vdaSource();
    await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--wait', '--finish']);
    const dismissed = await expectSameSequence(domain.name, job);
    expect(pushedStates(domain.name, job)).toContain('ready');
    expect(dismissed.job).toMatchObject({ outcome: 'completed', pivoted: false, libvirt: { verdict: 'canceled' } });
    expect(await libvirtVerdicts(domain.name, 'Block Copy')).toEqual(['Block Copy for vda ready', 'Block Copy for vda canceled']);
    expect(await domain.vdaSource()).toBe(source);
    await domain.destroy();
  });

  it('pause, resume, finalize and dismiss are refused as not supported for libvirt jobs', async () => {
    const domain = await followedDomain();
    const job = 'copy-vda-libvirt-1-format';
    await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
    await pushedState(domain.name, job, 'running');
    for (const action of ['pause', 'resume', 'finalize', 'dismiss']) {
      const result = await command(ops, { vm: domain.name, job, action });
      expect(result, action).toMatchObject({ ok: false, error: { code: 'not_supported' } });
    }
    const speed = await command(ops, { vm: domain.name, job, action: 'set-speed', speed: 2 * 1024 * 1024 });
    expect(speed).toMatchObject({ ok: true });
    await waitUntil('libvirt bandwidth 2 MiB/s', async () => /\bbandwidth=(2|2097152)\b/.test(await virsh(['blockjob', domain.name, 'vda', '--raw'])));
    await command(ops, { vm: domain.name, job, action: 'cancel', await: 'concluded', timeoutMs: 60_000 });
    await expectSameSequence(domain.name, job);
    await domain.destroy();
  });

  it('blockcommit --active, pivoted through the gateway; then blockpull', async () => {
    const domain = await followedDomain();
    // A disk-only snapshot gives vda a backing chain: base (index 1) <- overlay (index 2).
    await virsh(['snapshot-create-as', domain.name, '--disk-only', '--no-metadata', '--diskspec', `vda,file=${domain.path('overlay.qcow2')}`]);
    const overlay = await domain.vdaSource();
    expect(overlay).toBe(domain.path('overlay.qcow2'));
    await virsh(['blockcommit', domain.name, 'vda', '--active', '--bandwidth', '8']);
    const commit = await waitUntil('a commit job pushed', () => ops.ofType('event', 'all').find((m) => m.vm === domain.name && m.job.id.startsWith('commit-vda-'))?.job.id as string | undefined);
    const result = await command(ops, { vm: domain.name, job: commit, action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, job: { type: 'commit', outcome: 'completed', pivoted: true } });
    const dismissed = await expectSameSequence(domain.name, commit);
    expect(dismissed.job.libvirt).toMatchObject({ disk: 'vda', verdict: 'completed' });
    expect(await domain.vdaSource()).toBe(domain.disk);

    await virsh(['snapshot-create-as', domain.name, '--disk-only', '--no-metadata', '--diskspec', `vda,file=${domain.path('overlay2.qcow2')}`]);
    await virsh(['blockpull', domain.name, 'vda', '--wait']);
    const pull = await waitUntil('a pull job pushed', () => ops.ofType('event', 'all').find((m) => m.vm === domain.name && m.job.id.startsWith('pull-vda-'))?.job.id as string | undefined);
    const pulled = await expectSameSequence(domain.name, pull);
    expect(pulled.job).toMatchObject({ type: 'stream', outcome: 'completed', libvirt: { verdict: 'completed' } });
    expect(await libvirtVerdicts(domain.name, 'Block Pull')).toEqual(['Active Block Commit for vda ready', 'Active Block Commit for vda completed', 'Block Pull for vda completed']);
    await domain.destroy();
  });

  it('backup-begin: the backup job follows QEMU, paused blip included as QEMU reported it', async () => {
    const domain = await followedDomain();
    const backupXml = join(domain.dir, 'backup.xml');
    writeFileSync(backupXml, `<domainbackup><disks><disk name='vda' type='file'><target file='${domain.path('backup.qcow2')}'/><driver type='qcow2'/></disk></disks></domainbackup>`);
    await virsh(['backup-begin', domain.name, backupXml]);
    const job = await waitUntil('a backup job pushed', () => ops.ofType('event', 'all').find((m) => m.vm === domain.name && m.job.id.startsWith('backup-vda-'))?.job.id as string | undefined);
    const dismissed = await expectSameSequence(domain.name, job);
    expect(dismissed.job).toMatchObject({ type: 'backup', outcome: 'completed', libvirt: { disk: 'vda', verdict: 'completed' } });
    await domain.destroy();
  });

  it('a domain destroyed mid-job: the VM goes disconnected, its job stale, and then the VM is removed', async () => {
    const domain = await followedDomain();
    const job = 'copy-vda-libvirt-1-format';
    await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
    await pushedState(domain.name, job, 'running');
    await virsh(['destroy', domain.name]);
    const isDown = (m: Msg) => m.type === 'vm' && m.vm === domain.name && m.status === 'disconnected';
    await ops.until((all) => all.some(isDown), 30_000);
    const down = ops.messages.find(isDown)!;
    expect(down.reason).toMatch(/stopped|destroyed/);
    // No outcome is invented for a job whose QEMU died.
    expect(pushed(domain.name, job).map((m) => m.job.outcome).filter(Boolean)).toEqual([]);
    await waitUntil('the VM leaves /v1/jobs', async () => {
      const res = await fetch(`${gateway.url}/v1/jobs`, { headers: { Authorization: `Bearer ${OPS}` } });
      const body = (await res.json()) as { vms: { vm: string }[] };
      return !body.vms.some((vm) => vm.vm === domain.name);
    });
    await domain.destroy();
  });

  it('libvirtd restarted mid-job: the VM goes disconnected, resyncs, misses nothing and invents no outcome', async (ctx) => {
    if (!daemon.owned) ctx.skip(); // an operator's libvirtd is never restarted by the lab
    // The observer that survives the restart: QEMU's own extra monitor (virsh's listener dies with libvirtd).
    const domain = await followedDomain({ extraQmp: true });
    const oracle = new JobOracle(await domain.rawQmp());
    const job = 'copy-vda-libvirt-1-format';
    const target = domain.path('copy.qcow2');
    await virsh(['blockcopy', domain.name, 'vda', target, '--transient-job', '--bandwidth', '8']);
    await pushedState(domain.name, job, 'running');
    const before = ops.messages.length;
    await daemon.restart();
    const isVm = (status: string) => (m: Msg) => m.type === 'vm' && m.vm === domain.name && m.status === status;
    await ops.until((all) => all.slice(before).some(isVm('connected')), 60_000);
    const after = ops.messages.slice(before);
    expect(after.findIndex(isVm('disconnected'))).toBeGreaterThanOrEqual(0);
    expect(after.findIndex(isVm('disconnected'))).toBeLessThan(after.findIndex(isVm('connected')));
    // Still the same job, current again, and no outcome made up while libvirtd was away.
    const result = await command(ops, { vm: domain.name, job, action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 90_000 });
    expect(result, JSON.stringify(result)).toMatchObject({ ok: true, job: { incarnation: 1, outcome: 'completed', pivoted: true } });
    await oracle.waitForStatus(job, 'null');
    await pushedState(domain.name, job, 'dismissed');
    expect(pushedStates(domain.name, job)).toEqual(expectedEngineStates(oracle.raw.events, job));
    expect(pushed(domain.name, job).filter((m) => m.job.outcome !== undefined).map((m) => m.job.outcome)).toEqual(['completed', 'completed']);
    expect(await domain.vdaSource()).toBe(target);
    expect(domain.log()).not.toMatch(/custom-monitor/);
    await oracle.close();
    await domain.destroy();
  });

  it('--libvirt and --qmp mixed in one gateway: the same QEMU seen both ways agrees; libvirt jobs are controlled only through libvirt', async () => {
    const domain = await followedDomain({ extraQmp: true });
    const stopMixed = new AbortController();
    let mixed!: RunningGateway;
    const exited = new Promise<number>((resolve, reject) => {
      serve(['--libvirt', 'qemu:///system', '--qmp', `direct=unix:${domain.qmpSocket}`, '--listen', '127.0.0.1:0', '--log-level', 'silent', '--log-format', 'json'], {
        signal: stopMixed.signal,
        out: () => {},
        onListening: (g) => (mixed = g),
      }).then(resolve, reject);
    });
    try {
      await waitUntil('the mixed gateway listening', () => mixed);
      const client = await TestClient.connect(mixed.wsUrl);
      // No VM filter: the libvirt VMs are not known yet when it subscribes (they arrive live).
      client.send({ type: 'subscribe', id: 's', sub: 'm' });
      const connected = (vm: string) => (all: Msg[]) => all.some((m) => (m.type === 'synced' || (m.type === 'vm' && m.status === 'connected')) && m.vm === vm);
      await client.until((all) => connected('direct')(all) && connected(domain.name)(all), 30_000);
      const job = 'copy-vda-libvirt-1-format';
      await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--bandwidth', '1']);
      const running = (vm: string) => (all: Msg[]) => all.some((m) => m.type === 'event' && m.vm === vm && m.job.id === job && m.transition.to === 'running');
      await client.until((all) => running('direct')(all) && running(domain.name)(all), 30_000);
      client.send({ type: 'command', id: 'd1', vm: 'direct', job, action: 'cancel' });
      await client.until((all) => all.some((m) => m.type === 'result' && m.id === 'd1'), 30_000);
      expect(client.messages.find((m) => m.type === 'result' && m.id === 'd1')).toMatchObject({ ok: false, error: { code: 'not_supported' } });
      client.send({ type: 'command', id: 'l1', vm: domain.name, job, action: 'cancel', await: 'concluded', timeoutMs: 60_000 });
      await client.until((all) => all.some((m) => m.type === 'result' && m.id === 'l1'), 60_000);
      expect(client.messages.find((m) => m.type === 'result' && m.id === 'l1')).toMatchObject({ ok: true, job: { outcome: 'cancelled' } });
      const states = (vm: string) => client.messages.filter((m) => m.type === 'event' && m.vm === vm && m.job.id === job).map((m) => m.transition.to);
      await client.until(() => states('direct').includes('dismissed') && states(domain.name).includes('dismissed'), 30_000);
      expect(states('direct')).toEqual(states(domain.name));
      client.ws.terminate();
    } finally {
      stopMixed.abort();
      await exited;
    }
    await domain.destroy();
  });
});
