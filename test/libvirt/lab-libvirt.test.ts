// The libvirt lab itself: a shared libvirtd by lease, TCG domains, and the virsh observers that the
// libvirt source's tests use as their oracle.
import { beforeAll, expect, it } from 'vitest';
import { describeLibvirt } from '../utils/libvirt-gate.js';
import {
  acquireLibvirtd,
  cleanupLeftoversAfterAll,
  createLabDomain,
  LibvirtEventObserver,
  parseQemuEventLine,
  QemuEventObserver,
  virsh,
  type Libvirtd,
} from '../utils/qsd.js';

describeLibvirt('libvirt lab', () => {
  cleanupLeftoversAfterAll();
  let daemon: Libvirtd;
  beforeAll(async () => {
    daemon = await acquireLibvirtd();
  });

  it('parses virsh qemu-monitor-event lines with QEMU timestamps', () => {
    const record = parseQemuEventLine(`event JOB_STATUS_CHANGE at 1795636692.128507 for domain 'fin': {"status":"created","id":"copy-vda-libvirt-1-format"}`, 5);
    expect(record).toEqual({ event: 'JOB_STATUS_CHANGE', domain: 'fin', data: { status: 'created', id: 'copy-vda-libvirt-1-format' }, qemuSeconds: 1795636692.128507, receivedMs: 5 });
    expect(parseQemuEventLine('garbage')).toBeNull();
  });

  it('a second lease reuses the running daemon', async () => {
    const second = await acquireLibvirtd();
    expect(second.pid).toBe(daemon.pid);
    await second.release();
    // Our own lease still holds it up.
    expect((await virsh(['version'])).length).toBeGreaterThan(0);
  });

  it('runs a TCG domain and observes a blockcopy through both observers', async () => {
    const domain = await createLabDomain('lab');
    expect(domain.uuid).toMatch(/^[0-9a-f-]{36}$/);
    const qemu = new QemuEventObserver();
    const libvirt = new LibvirtEventObserver();
    await qemu.ready(domain.name);
    await libvirt.ready(domain.name);
    await virsh(['blockcopy', domain.name, 'vda', domain.path('copy.qcow2'), '--transient-job', '--wait', '--pivot']);
    const id = 'copy-vda-libvirt-1-format';
    await qemu.waitForStatus(domain.name, id, 'null');
    expect(qemu.statusSequence(domain.name, id).slice(0, 3)).toEqual(['created', 'running', 'ready']);
    expect(qemu.statusSequence(domain.name, id).at(-1)).toBe('null');
    await libvirt.waitFor((r) => r.domain === domain.name && r.detail === 'Block Copy for vda completed');
    expect(await domain.vdaSource()).toBe(domain.path('copy.qcow2'));
    await qemu.stop();
    await libvirt.stop();
    await domain.destroy();
    await expect(virsh(['domstate', domain.name])).rejects.toThrow();
  });

  it('restarts a daemon it owns; domains keep running and observers come back', async (ctx) => {
    if (!daemon.owned) ctx.skip(); // an operator's libvirtd is never restarted by the lab
    const domain = await createLabDomain('lab');
    const qemu = new QemuEventObserver();
    await qemu.ready(domain.name);
    const before = daemon.pid;
    await daemon.restart();
    expect(daemon.pid).not.toBe(before);
    expect((await virsh(['domstate', domain.name])).trim()).toBe('running');
    await qemu.ready(domain.name);
    expect(qemu.gaps).toBeGreaterThanOrEqual(1);
    await qemu.stop();
    await domain.destroy();
  });
});
