/**
 * Two sources served as one (combineSources), each a JobRegistry on its own real
 * qemu-storage-daemon: one snapshot and one change stream cover both, and each command reaches the
 * daemon of its VM only. QEMU's own JOB_STATUS_CHANGE sequence (oracle monitor) is the judge.
 */
import { afterEach, expect, it } from 'vitest';
import { makeJobController, type CommandContext, type JobController } from '../../src/gateway/control/index.js';
import { combineSources, type CombinedSources } from '../../src/jobs/combine.js';
import type { StreamInput } from '../../src/jobs/types.js';
import { startMirror } from '../../src/lab/jobs.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { openScenario, type Scenario } from '../utils/job-scenarios.js';
import { LogRecorder } from '../utils/log-recorder.js';

const context = (): CommandContext => ({ principal: undefined, connectionId: 'conn-1', signal: new AbortController().signal });

describeQemu('job control over combined sources (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  const scenarios: Scenario[] = [];
  let combined: CombinedSources | undefined;
  let controller: JobController | undefined;
  afterEach(async () => {
    controller?.close();
    combined?.close();
    await Promise.all(scenarios.splice(0).map((sc) => sc.dispose()));
  });

  it('routes each verb to the daemon of its VM; one stream and snapshot cover both sources', async () => {
    const a = await openScenario({ vm: 'alpha' });
    scenarios.push(a);
    const b = await openScenario({ vm: 'beta' });
    scenarios.push(b);
    combined = combineSources([
      { source: a.engine, control: a.engine.control },
      { source: b.engine, control: b.engine.control },
    ]);
    const changes: StreamInput[] = [];
    combined.source.changes$.subscribe((change) => changes.push(change));
    controller = makeJobController({ source: combined.source, control: combined.control, logger: new LogRecorder() });

    // The same job id on both VMs: only the VM decides where a verb goes.
    await startMirror(a.qsd, a.qsd, { jobId: 'm', dataMiB: 4, speed: 0 });
    await startMirror(b.qsd, b.qsd, { jobId: 'm', dataMiB: 4, speed: 0 });
    await a.recorder.waitForState('m', 'ready');
    await b.recorder.waitForState('m', 'ready');
    expect(combined.source.snapshot().map((s) => `${s.vm}:${s.jobs.map((j) => `${j.id}=${j.state}`).join()}`)).toEqual(['alpha:m=ready', 'beta:m=ready']);

    const pivot = await controller.handle({ type: 'command', id: 'c1', vm: 'beta', job: 'm', action: 'complete', await: 'concluded' }, context());
    expect(pivot).toMatchObject({ ok: true, job: { vm: 'beta', state: 'concluded', outcome: 'completed', pivoted: true } });
    await b.oracle.waitForStatus('m', 'null');
    expect(b.oracle.statusSequence('m')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    // alpha's job heard nothing.
    expect(a.oracle.statusSequence('m')).toEqual(['created', 'running', 'ready']);
    expect(combined.source.job('alpha', 'm')).toMatchObject({ state: 'ready' });

    const cancel = await controller.handle({ type: 'command', id: 'c2', vm: 'alpha', job: 'm', action: 'cancel', force: true, await: 'concluded' }, context());
    expect(cancel).toMatchObject({ ok: true, job: { vm: 'alpha', outcome: 'cancelled' } });
    expect(changes.some((c) => c.vm === 'alpha' && c.kind === 'transition' && c.to.state === 'concluded')).toBe(true);
    expect(changes.some((c) => c.vm === 'beta' && c.kind === 'transition' && c.to.state === 'concluded')).toBe(true);
    expect(combined.source.info('alpha')).toMatchObject({ backend: 'qmp', status: 'connected', qemu: { major: 7 } });
  });
});
