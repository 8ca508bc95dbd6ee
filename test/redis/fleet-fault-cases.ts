/**
 * The fault suite's core cases, one body each, run against every Redis topology: fleet-faults.test.ts
 * on one server, fleet-cluster-faults.test.ts on a 3-master Redis Cluster. Each takes the Redis URL
 * (`--redis`, comma-separated seeds for a cluster) and the test's Stops, and asserts everything
 * itself: nothing lost, nothing twice, nothing invented.
 */
import { expect } from 'vitest';
import { startMirror, MiB } from '../../src/lab/jobs.js';
import { startQsd } from '../utils/qsd.js';
import { edgeArgs, eventually, hostArgs, lastSeen, metricsOf, sample, serveInProcess, serveProcess, streamMessages, type Stops } from './fleet-support.js';

/** Edge A killed with -9 mid-stream: the client resumes on edge B, recovered, offsets contiguous, nothing twice. */
export async function edgeKilledClientResumesElsewhere(redisUrl: string, stops: Stops): Promise<void> {
  const qsd = await startQsd({ monitors: ['gw'] });
  stops.add(() => qsd.dispose());
  const host = await serveInProcess(hostArgs(redisUrl, 'h1', { vm1: qsd.path('gw') }));
  stops.add(() => host.stop());
  const edgeA = await serveProcess(edgeArgs(redisUrl));
  const edgeB = await serveProcess(edgeArgs(redisUrl));
  const a = await stops.client(edgeA.wsUrl);
  a.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
  const synced = await a.next((m) => m.type === 'synced');
  await startMirror(qsd, qsd, { jobId: 'm', speed: 2 * MiB, dataMiB: 8 });
  // Ready first: then the pause below is the only thing that can move the stream on (standby).
  await a.next((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'ready', 60_000);
  edgeA.run.child.kill('SIGKILL');
  await a.closed;
  const since = lastSeen(a, 'vm1');
  // The job goes on meanwhile: pause and resume it through the host, so there is something to miss.
  // The resume waits for the pause to show (a pause undone before the job yields changes nothing).
  await qsd.execute('job-pause', { id: 'm' });
  await eventually(() => host.gateway.core.streamPositions().get('vm1')!.offset > since.offset, 20_000, 'host to move on');
  await qsd.execute('job-resume', { id: 'm' });

  const b = await stops.client(edgeB.wsUrl);
  b.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] }, since: { vm1: since } });
  const subscribed = await b.next((m) => m.type === 'subscribed');
  expect(subscribed.streams.vm1).toMatchObject({ mode: 'recovered', epoch: since.epoch });
  await b.next((m) => m.type === 'event' && m.transition.from === 'ready' && m.transition.to === 'standby', 30_000);
  await b.next((m) => m.type === 'event' && m.transition.from === 'standby' && m.transition.to === 'ready', 30_000);
  const seen = [...streamMessages(a, 'vm1'), ...streamMessages(b, 'vm1')].map((m) => m.offset as number);
  expect(seen).toEqual(seen.map((_, i) => synced.offset + i + 1));
  expect(b.invalid).toEqual([]);
}

/**
 * A host gateway killed with -9 mid-job and restarted: same epoch, recovered, and the job's true end
 * through an edge; then the owner gone for good: outcome_unknown within the ack timeout, counted.
 */
export async function hostKilledRestartedThenOwnerGone(redisUrl: string, stops: Stops): Promise<void> {
  const qsd = await startQsd({ monitors: ['gw'] });
  stops.add(() => qsd.dispose());
  const args = hostArgs(redisUrl, 'h1', { vm1: qsd.path('gw') });
  const host = await serveProcess(args);
  const edge = await serveInProcess(edgeArgs(redisUrl));
  stops.add(() => edge.stop());
  const h = await stops.client(host.wsUrl);
  h.send({ type: 'subscribe', id: 's', sub: 'a' });
  await h.next((m) => m.type === 'synced');
  const e = await stops.client(edge.gateway.wsUrl);
  e.send({ type: 'subscribe', id: 's', sub: 'a', filter: { vms: ['vm1'] } });
  await e.next((m) => m.type === 'synced');
  await startMirror(qsd, qsd, { jobId: 'm', speed: 1 * MiB, dataMiB: 8 });
  await h.next((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'running', 60_000);
  // Let the host's copy reach Redis (the edge has it), then kill -9.
  const before = lastSeen(h, 'vm1');
  await e.until((all) => all.some((m) => m.type === 'event' && m.offset === before.offset), 20_000);
  host.run.child.kill('SIGKILL');
  await h.closed;

  const again = await serveProcess(args);
  // The restart is done when the host says ready. (Commands queued once it has started are its own:
  // it takes its command stream's top before claiming a lease; fleet-host-commands.test.ts.)
  await eventually(async () => (await fetch(`${again.url}/readyz`)).status === 200, 30_000, 'the restarted host ready');
  const h2 = await stops.client(again.wsUrl);
  h2.send({ type: 'subscribe', id: 's', sub: 'a', since: { vm1: before } });
  const resumed = await h2.next((m) => m.type === 'subscribed');
  expect(resumed.streams.vm1).toMatchObject({ mode: 'recovered', epoch: before.epoch });
  // The job's true end, through the edge: pivot it and see it complete, on the host and on the edge.
  e.send({ type: 'command', id: 'c', vm: 'vm1', job: 'm', action: 'complete', when: 'ready', await: 'concluded', timeoutMs: 60_000 });
  const pivot = await e.next((m) => m.type === 'result' && m.id === 'c', 70_000);
  expect(pivot, JSON.stringify(pivot)).toMatchObject({ ok: true, job: { outcome: 'completed', pivoted: true } });
  await h2.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'concluded'), 30_000);
  await e.until((all) => all.some((m) => m.type === 'event' && m.job.id === 'm' && m.job.state === 'concluded'), 30_000);
  // One epoch throughout, offsets contiguous on the edge across the restart.
  const onEdge = streamMessages(e, 'vm1');
  expect(new Set(onEdge.map((m) => m.epoch))).toEqual(new Set([before.epoch]));
  const offsets = onEdge.map((m) => m.offset as number);
  expect(offsets).toEqual(offsets.map((_, i) => offsets[0]! + i));

  // The owner gone for good (kill -9: its lease lives on): a command gets outcome_unknown within the ack timeout.
  again.run.child.kill('SIGKILL');
  await again.run.exited;
  const sent = Date.now();
  e.send({ type: 'command', id: 'c2', vm: 'vm1', job: 'm', action: 'dismiss', timeoutMs: 30_000 });
  const unknown = await e.next((m) => m.type === 'result' && m.id === 'c2', 20_000);
  expect(unknown).toMatchObject({ ok: false, error: { code: 'outcome_unknown' } });
  expect(Date.now() - sent).toBeLessThan(10_000);
  const metrics = await metricsOf(edge.gateway.url);
  expect(sample(metrics, 'blockjob_gateway_fleet_commands_outcome_unknown_total', 'cause="no_ack"')).toBe(1);
  expect(sample(metrics, 'blockjob_gateway_fleet_commands_forwarded_total', 'result="outcome_unknown"')).toBe(1);
}
