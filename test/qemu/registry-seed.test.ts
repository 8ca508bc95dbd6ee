/**
 * JobRegistry's seedOf, the seam every source's VMs are seeded through (QMP monitors given at start,
 * libvirt domains found at any time): on a real qemu-storage-daemon with a running mirror, a VM added
 * while its seed is still on the way does not reconcile before it arrives, so the mirror an earlier
 * process told subscribers of goes on as the same incarnation, with no "new job" transition.
 */
import { afterEach, expect, it } from 'vitest';
import { JobRegistry } from '../../src/jobs/registry.js';
import type { JobState, StreamInput } from '../../src/jobs/types.js';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll, startQsd } from '../utils/qsd.js';
import { waitUntil } from '../utils/job-scenarios.js';

describeQemu('JobRegistry seedOf (real qemu-storage-daemon)', () => {
  cleanupLeftoversAfterAll();
  const disposers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const dispose of disposers.splice(0).reverse()) await dispose().catch(() => {});
  });

  it('a VM whose seed is still on the way starts its engine once it arrives: the seeded mirror goes on, no new transition', async () => {
    const qsd = await startQsd({ monitors: ['gw', 'gw2', 'gw3'] });
    disposers.push(() => qsd.dispose());
    await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 64 });
    // What an earlier process told its subscribers (another monitor of the same daemon).
    const earlier = new JobRegistry({ activePollMs: 200 });
    disposers.push(() => earlier.close());
    earlier.add('vm1', `unix:${qsd.path('gw')}`);
    const told: JobState = await waitUntil('the earlier process to see the mirror running', () => {
      const job = earlier.job('vm1', 'm');
      return job?.state === 'running' ? job : undefined;
    }, 30_000);
    await earlier.close();

    let release!: () => void;
    const arrived = new Promise<void>((resolve) => (release = resolve));
    // vm2, another monitor of the same daemon, has no seed: it is what an engine that did not wait would do.
    const registry = new JobRegistry({ activePollMs: 200, seedOf: async (vm) => (vm === 'vm1' ? (await arrived, { jobs: [told], status: 'connected' }) : undefined) });
    disposers.push(() => registry.close());
    const changes: StreamInput[] = [];
    const subscription = registry.changes$.subscribe((change) => changes.push(change));
    disposers.push(async () => subscription.unsubscribe());
    registry.add('vm1', `unix:${qsd.path('gw2')}`);
    registry.add('vm2', `unix:${qsd.path('gw3')}`);
    // The seed is late (Redis far away): vm1's engine waits while vm2's, added at the same moment, connects and reconciles.
    await waitUntil('the unseeded vm2 to reconcile', () => (registry.info('vm2')!.status === 'connected' && registry.job('vm2', 'm')?.state === 'running') || undefined, 30_000);
    expect(registry.info('vm1')!.status).toBe('connecting');
    release();
    await waitUntil('the engine to reconcile', () => (registry.info('vm1')!.status === 'connected' && registry.job('vm1', 'm')?.stale === false) || undefined, 30_000);
    expect(registry.job('vm1', 'm')).toMatchObject({ state: 'running', incarnation: told.incarnation });
    expect(changes.filter((c) => c.kind === 'transition' && c.vm === 'vm1' && c.job.id === 'm' && c.from === null)).toEqual([]);
  });
});
