// The pure rules of the libvirt job source: libvirt's job ids, the live XML it reads, and how
// libvirt's verdicts attach to jobs (the --finish divergence included).
import { describe, expect, it } from 'vitest';
import { VerdictBook } from '../../../src/jobs/libvirt/verdicts.js';
import type { JobState } from '../../../src/jobs/types.js';
import { parseDisks } from '../../../src/libvirt/domain-xml.js';
import { isInternalJobId, libvirtJobId, parseLibvirtJobId } from '../../../src/libvirt/job-ids.js';

describe('libvirt job ids', () => {
  it('map a job to its disk and node; create-* is internal; other ids are not libvirt jobs', () => {
    expect(parseLibvirtJobId('copy-vda-libvirt-1-format')).toEqual({ kind: 'copy', disk: 'vda', node: 'libvirt-1-format' });
    expect(parseLibvirtJobId('commit-sdb-libvirt-12-format')).toEqual({ kind: 'commit', disk: 'sdb', node: 'libvirt-12-format' });
    expect(parseLibvirtJobId('create-libvirt-2-format')).toBeUndefined();
    expect(isInternalJobId('create-libvirt-2-format')).toBe(true);
    expect(parseLibvirtJobId('gw-mirror')).toBeUndefined();
    expect(libvirtJobId('active-commit', 'vda', 7)).toBe('commit-vda-libvirt-7-format');
    expect(libvirtJobId('pull', 'vda', 8)).toBe('pull-vda-libvirt-8-format');
  });
});

describe('live domain XML', () => {
  it('reads each disk target, its top source index and the mirror readiness', () => {
    const xml = `<domain><devices>
      <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/a.qcow2' index='1'/><backingStore/>
        <mirror type='file' file='/b.qcow2' format='qcow2' job='copy' ready='yes'><format type='qcow2'/><source file='/b.qcow2' index='2'/></mirror>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><source file='/c.qcow2' index='3'/><target dev='vdb' bus='virtio'/></disk>
    </devices></domain>`;
    expect(parseDisks(xml)).toEqual([
      { target: 'vda', sourceIndex: 1, mirror: true, mirrorReady: true },
      { target: 'vdb', sourceIndex: 3, mirror: false, mirrorReady: false },
    ]);
    expect(parseDisks(xml.replace(" ready='yes'", ''))[0]).toMatchObject({ mirror: true, mirrorReady: false });
  });
});

function job(partial: Partial<JobState>): JobState {
  return {
    vm: 'dom', id: 'copy-vda-libvirt-1-format', incarnation: 1, type: 'mirror', state: 'concluded', ready: false, stale: false,
    progress: { current: 1, total: 1, percent: 100, rate: null, etaSeconds: null }, updatedAt: '2026-01-01T00:00:00.000Z',
    stateSince: '2026-01-01T00:00:00.000Z', source: 'event', ...partial,
  };
}

describe('libvirt verdicts', () => {
  const uuid = '342bbc41-f5bd-45ea-a8b3-cd357d6c40a1';

  it('carry libvirt canceled beside QEMU completed after --finish, and say the copy did not pivot', () => {
    const book = new VerdictBook();
    const finished = job({ outcome: 'completed' });
    expect(book.record('dom', { disk: 'vda', type: 'copy', status: 'ready' }, [job({ state: 'ready', ready: true })])?.id).toBe(finished.id);
    expect(book.hasFinalVerdict('dom', finished)).toBe(false);
    expect(book.record('dom', { disk: 'vda', type: 'copy', status: 'canceled' }, [finished])?.id).toBe(finished.id);
    expect(book.hasFinalVerdict('dom', finished)).toBe(true);
    expect(book.decorate(finished, uuid)).toMatchObject({ outcome: 'completed', pivoted: false, libvirt: { domainUuid: uuid, disk: 'vda', verdict: 'canceled' } });
  });

  it('a pivot is libvirt completed; QEMU-side knowledge of pivoted is never overwritten', () => {
    const book = new VerdictBook();
    const pivoted = job({ outcome: 'completed' });
    book.record('dom', { disk: 'vda', type: 'copy', status: 'completed' }, [pivoted]);
    expect(book.decorate(pivoted, uuid).pivoted).toBe(true);
    expect(book.decorate({ ...pivoted, pivoted: false }, uuid).pivoted).toBe(false);
  });

  it('a verdict goes to the newest job of its kind on its disk without a final verdict, never to another disk or kind', () => {
    const book = new VerdictBook();
    const old = job({ incarnation: 1, stateSince: '2026-01-01T00:00:00.000Z', outcome: 'cancelled' });
    const newer = job({ incarnation: 2, stateSince: '2026-01-01T00:01:00.000Z', outcome: 'completed' });
    const otherDisk = job({ id: 'copy-vdb-libvirt-3-format', stateSince: '2026-01-01T00:02:00.000Z' });
    const pull = job({ id: 'pull-vda-libvirt-1-format', type: 'stream', stateSince: '2026-01-01T00:03:00.000Z' });
    expect(book.record('dom', { disk: 'vda', type: 'copy', status: 'completed' }, [old, newer, otherDisk, pull])).toBe(newer);
    expect(book.record('dom', { disk: 'vda', type: 'copy', status: 'canceled' }, [old, newer, otherDisk, pull])).toBe(old);
    expect(book.record('dom', { disk: 'vda', type: 'copy', status: 'canceled' }, [old, newer])).toBeUndefined();
    expect(book.decorate(job({ id: 'gw-mirror' }), uuid).libvirt).toEqual({ domainUuid: uuid });
  });
});
