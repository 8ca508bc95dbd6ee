/**
 * The safety-net poll of one libvirt domain, without taint: the live XML (disks, `<mirror
 * ready='yes'>`) and libvirt's per-disk block job info (type, cur/end, bandwidth). Never
 * `qemu-monitor-command`, which marks the domain custom-monitor.
 *
 * libvirt cannot tell QEMU's job status, so a row carries the status QEMU last announced for the
 * id through the passthrough (the events are the authority, and are never older than the poll);
 * only on a reconcile, when events may have been missed (libvirtd restarted, the gateway just
 * started), is the status libvirt's own view: ready when the XML says so, else running. libvirt
 * reports cur = end - 1 until QEMU's READY (its shim): progress, never readiness.
 */
import type { JobRow } from '../qmp-payloads.js';
import type { QemuJobStatus } from '../qemu-rules.js';
import type { PollResult } from '../poller.js';
import type { JobState } from '../types.js';
import type { DomainFeed } from './domain-feed.js';
import { parseDisks } from '../../libvirt/domain-xml.js';
import { libvirtJobId, parseLibvirtJobId, QEMU_TYPE_OF } from '../../libvirt/job-ids.js';
import type { LibvirtConnection } from '../../libvirt/types.js';

export interface DomainPollDeps {
  connection: LibvirtConnection;
  monitor: DomainFeed;
  /** The engine's current view of a job (type and progress of jobs libvirt does not list). */
  jobOf: (id: string) => JobState | undefined;
  /** True for the first answered poll of a session. */
  reconcile: boolean;
  timeoutMs: number;
}

export async function pollDomain(deps: DomainPollDeps): Promise<PollResult> {
  const { connection, monitor, reconcile, timeoutMs } = deps;
  const session = monitor.session;
  if (!session) throw new Error(`domain ${monitor.domain.name} is not running`);
  // Events after this position are newer than the snapshot and win over it.
  const seq = monitor.position;
  const domain = monitor.domain;
  const disks = parseDisks(await connection.getDomainXml(domain, {}, { timeoutMs }));
  const infos = await Promise.all(disks.map((disk) => connection.getBlockJobInfo(domain, disk.target, { timeoutMs })));
  const rows: JobRow[] = [];
  const listed = new Set<string>();
  disks.forEach((disk, index) => {
    const info = infos[index];
    if (!info) return;
    // The live id QEMU announced for this disk wins; otherwise libvirt's naming rule from the top node.
    const announced = [...monitor.seenJobs].reverse().find(([id, seen]) => seen.status !== 'null' && parseLibvirtJobId(id)?.disk === disk.target)?.[0];
    const id = announced ?? (disk.sourceIndex !== undefined ? libvirtJobId(info.type, disk.target, disk.sourceIndex) : undefined);
    if (id === undefined) return;
    const seen = monitor.seenJobs.get(id);
    if (seen?.status === 'null' && !reconcile) return; // libvirt has not caught up with the dismissal yet
    const libvirtStatus: QemuJobStatus = disk.mirrorReady ? 'ready' : 'running';
    const status = !reconcile && seen ? (seen.status as QemuJobStatus) : libvirtStatus;
    listed.add(id);
    rows.push({
      id,
      type: QEMU_TYPE_OF[info.type],
      progress: { current: info.cur, total: info.end },
      status,
      speed: info.bandwidth,
    });
  });
  // Jobs libvirt does not list per disk (its internal create-* jobs, or another client's) are known
  // only from their events: report them as the events left them, so a poll never ends them.
  for (const [id, seen] of monitor.seenJobs) {
    if (listed.has(id) || seen.status === 'null' || parseLibvirtJobId(id) !== undefined) continue;
    const job = deps.jobOf(id);
    rows.push({ id, type: job?.type ?? 'unknown', progress: { current: job?.progress.current ?? 0, total: job?.progress.total ?? 0 }, status: seen.status as QemuJobStatus });
  }
  return { rows, seq, receivedAt: Date.now(), session: session.number };
}
