/**
 * One domain seen through libvirt, presented as a JobFeed so the job engine (MonitorJobs,
 * reduceJob) judges it with exactly the rules it applies to a direct QMP monitor:
 *
 * - events$: QEMU's own events for this domain from libvirt's monitor-event passthrough (QEMU's
 *   timestamps, no taint), in libvirt's wire order;
 * - sessions$: a session per (libvirt session, QEMU process): it starts when the connection is
 *   ready and the domain runs, and ends when either goes away, as a QMP socket would;
 * - the poll (`pollDomain`) reads libvirt's per-disk job info and the live XML, never
 *   `qemu-monitor-command` (which taints the domain custom-monitor).
 *
 * It writes nothing to QEMU: libvirt owns the domain's monitor, and control goes through libvirt
 * (control.ts).
 */
import { BehaviorSubject, Subject, type Observable } from 'rxjs';
import { LibvirtDomainDownError } from '../../errors.js';
import type { JobFeed } from '../monitor-jobs.js';
import type { QmpEvent, QmpRunState, QmpSession } from '../../qmp/types.js';
import type { DomainRef, LibvirtMonitorEvent, LibvirtVersion } from '../../libvirt/types.js';

/** What the monitor knows of one QEMU job from its events: the last status, in wire order. */
export interface SeenJob {
  status: string;
  seq: number;
}

/** At most this many job ids remembered per domain (ids are reused, so this stays small in practice). */
const MAX_SEEN_JOBS = 1_000;

export class DomainFeed implements JobFeed {
  private readonly stateSubject = new BehaviorSubject<QmpRunState>('connecting');
  private readonly sessionsSubject = new Subject<QmpSession>();
  private readonly eventsSubject = new Subject<QmpEvent>();
  private readonly errorsSubject = new Subject<LibvirtDomainDownError>();
  private current: QmpSession | undefined;
  private sessionCount = 0;
  private lastDomainId: number | undefined;
  /** Highest inbound seq of this domain's events: the stream position a poll is compared with. */
  private lastSeq = -1;
  /** Last QEMU status of each job id (from JOB_STATUS_CHANGE), for the poll's rows. */
  readonly seenJobs = new Map<string, SeenJob>();

  readonly state$: Observable<QmpRunState> = this.stateSubject.asObservable();
  readonly sessions$: Observable<QmpSession> = this.sessionsSubject.asObservable();
  readonly events$: Observable<QmpEvent> = this.eventsSubject.asObservable();
  readonly errors$: Observable<LibvirtDomainDownError> = this.errorsSubject.asObservable();
  /** No QMP command is ever written through libvirt. */
  readonly commandsSent = 0;

  constructor(
    /** The domain as libvirt names it (the running domain's id changes per start). */
    public domain: DomainRef,
    /** For errors: `qemu:///system domain NAME`. */
    readonly address: string,
  ) {}

  get state(): QmpRunState {
    return this.stateSubject.value;
  }

  get session(): QmpSession | undefined {
    return this.current;
  }

  /** The position of the latest event of this domain (polls taken after it are newer). */
  get position(): number {
    return this.lastSeq;
  }

  /**
   * The domain runs and libvirt serves it: a new session. `libvirtSession` and the domain id tell
   * whether it is the same QEMU process as the previous session.
   */
  up(domain: DomainRef, hypervisor: LibvirtVersion, seq: number): void {
    if (this.state === 'closed') return;
    if (this.state === 'ready') this.down('superseded by a new session');
    const sameProcess: QmpSession['sameProcess'] = this.sessionCount === 0 ? 'first' : this.lastDomainId === domain.id ? 'unknown' : false;
    this.domain = domain;
    this.lastDomainId = domain.id;
    this.lastSeq = Math.max(this.lastSeq, seq);
    this.current = {
      number: ++this.sessionCount,
      greeting: { version: { qemu: { major: hypervisor.major, minor: hypervisor.minor, micro: hypervisor.micro }, package: 'via libvirt' }, capabilities: [] },
      sameProcess,
      startedAt: Date.now(),
      seq,
    };
    this.stateSubject.next('ready');
    this.sessionsSubject.next(this.current);
  }

  /** The domain stopped or libvirtd went away: the session ends (the engine marks jobs stale). */
  down(reason: string): void {
    if (this.state !== 'ready' && this.state !== 'connecting') return;
    this.errorsSubject.next(new LibvirtDomainDownError(this.address, reason));
    this.current = undefined;
    this.stateSubject.next('disconnected');
  }

  /** A passthrough event for this domain. Dropped outside a session (it cannot be ordered against one). */
  deliver(event: LibvirtMonitorEvent): void {
    const session = this.current;
    if (!session || this.state !== 'ready') return;
    this.lastSeq = Math.max(this.lastSeq, event.seq);
    if (event.event === 'JOB_STATUS_CHANGE' && typeof event.data.id === 'string' && typeof event.data.status === 'string') {
      this.seenJobs.delete(event.data.id);
      this.seenJobs.set(event.data.id, { status: event.data.status, seq: event.seq });
      if (this.seenJobs.size > MAX_SEEN_JOBS) this.seenJobs.delete(this.seenJobs.keys().next().value as string);
    }
    this.eventsSubject.next({
      event: event.event,
      data: event.data,
      qemuTimestamp: event.qemuTimestamp,
      receivedAt: event.receivedAt,
      receivedMono: event.receivedMono,
      seq: event.seq,
      session: session.number,
    });
  }

  /** Ends the monitor for good. */
  close(): Promise<void> {
    if (this.state === 'ready') this.down('stopped following the domain');
    this.stateSubject.next('closed');
    this.stateSubject.complete();
    this.sessionsSubject.complete();
    this.eventsSubject.complete();
    this.errorsSubject.complete();
    return Promise.resolve();
  }
}
