import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { combineSources } from '../../../src/jobs/combine.js';
import type { StreamInput, VmInfoUpdate } from '../../../src/jobs/types.js';
import { FakeJobSource } from '../../utils/fake-source.js';

const parts = (...sources: FakeJobSource[]) => sources.map((source) => ({ source, control: source.control }));

describe('combineSources', () => {
  it('serves several sources as one: VMs, snapshot, jobs, changes and progress of each', () => {
    const qmp = new FakeJobSource(['vm1']);
    const other = new FakeJobSource(['lv1']);
    const { source, close } = combineSources(parts(qmp, other));
    const changes: StreamInput[] = [];
    source.changes$.subscribe((change) => changes.push(change));
    const progress: string[] = [];
    source.progress$.subscribe((update) => progress.push(`${update.vm}/${update.job}`));
    qmp.set({ vm: 'vm1', id: 'a', state: 'running' });
    other.set({ vm: 'lv1', id: 'b', state: 'ready', ready: true });
    other.progress('lv1', 'b', 10);
    expect(source.vms()).toEqual(['vm1', 'lv1']);
    expect(source.snapshot().map((s) => `${s.vm}:${s.jobs.map((j) => j.id).join()}`)).toEqual(['vm1:a', 'lv1:b']);
    expect(source.job('lv1', 'b')?.state).toBe('ready');
    expect(source.job('vm1', 'b')).toBeUndefined();
    expect(changes.map((c) => c.vm)).toEqual(['vm1', 'lv1']);
    expect(progress).toEqual(['lv1/b']);
    expect(source.info('lv1')).toMatchObject({ vm: 'lv1', status: 'connected' });
    close();
  });

  it('routes control to the source that serves the VM', async () => {
    const qmp = new FakeJobSource(['vm1']);
    const other = new FakeJobSource(['lv1']);
    const { control } = combineSources(parts(qmp, other));
    const job = other.set({ vm: 'lv1', id: 'b', state: 'ready', ready: true });
    expect(control.check('lv1', job, 'complete', {})).toEqual({ ok: true });
    expect(await control.execute('lv1', job, 'complete', {}, { timeoutMs: 1000 })).toMatchObject({ kind: 'accepted' });
    expect(other.log).toEqual(['note:complete', 'qmp:job-complete']);
    expect(qmp.log).toEqual([]);
    expect(control.check('nowhere', job, 'complete', {})).toMatchObject({ ok: false, reason: 'not-supported' });
    expect(await control.execute('nowhere', job, 'complete', {}, { timeoutMs: 1000 })).toMatchObject({ kind: 'not-sent' });
  });

  it('holdChanges: what the parts did before the feed follows them is delivered at release, in order, then live', () => {
    const qmp = new FakeJobSource(['vm1']);
    const other = new FakeJobSource(['lv1']);
    const { source, release } = combineSources(parts(qmp, other), { holdChanges: true });
    // A restart's reconcile, before anyone subscribes: not lost.
    qmp.set({ vm: 'vm1', id: 'a', state: 'concluded' });
    const changes: string[] = [];
    source.changes$.subscribe((change) => changes.push(`${change.vm}:${change.kind === 'transition' ? change.job.state : change.status}`));
    other.set({ vm: 'lv1', id: 'b', state: 'running' });
    expect(changes).toEqual([]);
    release();
    expect(changes).toEqual(['vm1:concluded', 'lv1:running']);
    other.set({ vm: 'lv1', id: 'b', state: 'ready', ready: true });
    release();
    expect(changes).toEqual(['vm1:concluded', 'lv1:running', 'lv1:ready']);
  });

  it('refuses a VM name two sources serve at start', () => {
    expect(() => combineSources(parts(new FakeJobSource(['vm1']), new FakeJobSource(['vm2', 'vm1'])))).toThrow(ConfigError);
  });

  it('covers VMs added later; a name a second source adds later stays with the first, reported, never merged', () => {
    const first = new FakeJobSource(['vm1']);
    const second = new FakeJobSource(['lv1']);
    const conflicts: string[] = [];
    const { source } = combineSources(parts(first, second), { onConflict: (vm) => conflicts.push(vm) });
    const infos: VmInfoUpdate[] = [];
    source.vmInfo$.subscribe((update) => infos.push(update));
    const changes: string[] = [];
    source.changes$.subscribe((change) => changes.push(`${change.vm}:${change.kind === 'transition' ? change.job.id : change.status}`));
    second.addVm('lv2');
    second.set({ vm: 'lv2', id: 'c', state: 'running' });
    second.addVm('vm1');
    second.set({ vm: 'vm1', id: 'impostor', state: 'running' });
    first.set({ vm: 'vm1', id: 'a', state: 'running' });
    expect(infos.map((u) => (u.kind === 'info' ? u.info.vm : `-${u.vm}`))).toEqual(['vm1', 'lv1', 'lv2']);
    expect(conflicts).toEqual(['vm1']);
    expect(changes).toEqual(['lv2:c', 'vm1:a']);
    expect(source.vms()).toEqual(['vm1', 'lv1', 'lv2']);
    expect(source.job('vm1', 'impostor')).toBeUndefined();
  });
});
