/**
 * StreamHub: turns a JobSource into numbered per-VM streams.
 *
 * Every stream event (a job transition, a monitor going up or down) gets the VM's next offset, is
 * serialized once into two string fragments, appended to the history and handed to the listener,
 * all synchronously inside the JobSource's delivery. Because `JobSource.snapshot()` already reflects
 * every delivered change, "snapshot() + head offset" read in one tick is always a consistent cut.
 *
 * A subscriber's message is `prefix + JSON(sub) + ',"prev":' + prev + body`: the per-subscriber
 * fields are spliced in front of the shared body, so fan-out costs two string concatenations.
 */
import type { Subscription as RxSubscription } from 'rxjs';
import { GatewayError } from '../errors.js';
import type { JobSource, JobState, JobTransition, ProgressUpdate, StreamInput, VmStatus, VmStatusChange } from '../jobs/types.js';
import type { HistoryEntry, StreamHistory, StreamPosition } from './history/types.js';

/** One numbered event of one VM stream, pre-serialized. */
export interface StreamEvent extends HistoryEntry {
  readonly kind: 'event' | 'vm';
  readonly vm: string;
  readonly offset: number;
  readonly at: number;
  /** Filter keys (transitions only); `from` is the state before the change, null for a new job. */
  readonly job?: { readonly id: string; readonly type: string; readonly state: string; readonly from: string | null };
  /** performance.now() when the QMP message behind it arrived, for delivery-lag metrics. */
  readonly qmpReceivedMono?: number;
  /** `{"type":"event","sub":` */
  readonly prefix: string;
  /** Everything after `"prev":N`, starting with a comma and ending with `}`. */
  readonly body: string;
}

/** One job's progress, pre-serialized; outside the offsets, never replayed. */
export interface ProgressEvent {
  readonly vm: string;
  readonly job: string;
  readonly at: number;
  /** Filter keys: the job's type and published state travel with the update (no lookup per message). */
  readonly filter: { readonly id: string; readonly type: string; readonly state: string };
  /** `{"type":"progress","sub":` */
  readonly prefix: string;
  /** Everything after the sub, starting with a comma. */
  readonly body: string;
}

export interface StreamListener {
  event(event: StreamEvent): void;
  progress(event: ProgressEvent): void;
}

const EVENT_PREFIX = '{"type":"event","sub":';
const VM_PREFIX = '{"type":"vm","sub":';
const PROGRESS_PREFIX = '{"type":"progress","sub":';

export class StreamHub {
  private readonly positions = new Map<string, StreamPosition>();
  private readonly subscriptions: RxSubscription[] = [];

  constructor(
    private readonly source: JobSource,
    private readonly history: StreamHistory<StreamEvent>,
    private readonly listener: StreamListener,
    private readonly onHistoryError: (error: unknown) => void = () => {},
  ) {}

  /** Open every known VM's stream (awaiting an asynchronous history), then follow the source. */
  async start(): Promise<void> {
    for (const vm of this.source.vms()) this.positions.set(vm, await this.history.open(vm));
    this.subscriptions.push(
      this.source.changes$.subscribe((input) => this.onInput(input)),
      this.source.progress$.subscribe((update) => this.listener.progress(serializeProgress(update))),
    );
  }

  stop(): void {
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
  }

  /** The source's VMs, in its order. */
  vms(): string[] {
    return this.source.vms();
  }

  /** The stream's current epoch and head offset (opening it if new). */
  position(vm: string): StreamPosition {
    return { ...this.positionRef(vm) };
  }

  statuses(): Map<string, VmStatus> {
    return new Map(this.source.snapshot().map((s) => [s.vm, s.status]));
  }

  private positionRef(vm: string): StreamPosition {
    let position = this.positions.get(vm);
    if (!position) {
      const opened = this.history.open(vm);
      if (opened instanceof Promise) {
        throw new GatewayError('GW_ERR_INTERNAL', `stream ${vm} appeared after start; an asynchronous history must be opened for it first`);
      }
      position = opened;
      this.positions.set(vm, position);
    }
    return position;
  }

  private onInput(input: StreamInput): void {
    const position = this.positionRef(input.vm);
    const offset = position.offset + 1;
    const event = input.kind === 'transition' ? serializeTransition(input, position.epoch, offset) : serializeVm(input, position.epoch, offset);
    position.offset = offset;
    try {
      const appended = this.history.append(input.vm, event);
      if (appended instanceof Promise) appended.catch(this.onHistoryError);
    } catch (error) {
      this.onHistoryError(error);
    }
    this.listener.event(event);
  }
}

function serializeTransition(t: JobTransition, epoch: string, offset: number): StreamEvent {
  const job: JobState = t.job;
  const body =
    `,"vm":${JSON.stringify(t.vm)},"epoch":${JSON.stringify(epoch)},"offset":${offset}` +
    `,"ts":"${new Date(t.at).toISOString()}","job":${JSON.stringify(job)}` +
    `,"transition":${JSON.stringify({ from: t.from?.state ?? null, to: t.to.state })},"source":${JSON.stringify(t.source)}}`;
  return {
    kind: 'event',
    vm: t.vm,
    offset,
    at: t.at,
    job: { id: job.id, type: job.type, state: job.state, from: t.from?.state ?? null },
    ...(t.qmpReceivedMono !== undefined ? { qmpReceivedMono: t.qmpReceivedMono } : {}),
    prefix: EVENT_PREFIX,
    body,
  };
}

function serializeVm(v: VmStatusChange, epoch: string, offset: number): StreamEvent {
  const body =
    `,"vm":${JSON.stringify(v.vm)},"epoch":${JSON.stringify(epoch)},"offset":${offset}` +
    `,"ts":"${new Date(v.at).toISOString()}","status":${JSON.stringify(v.status)}${v.reason !== undefined ? `,"reason":${JSON.stringify(v.reason)}` : ''}}`;
  return { kind: 'vm', vm: v.vm, offset, at: v.at, prefix: VM_PREFIX, body };
}

function serializeProgress(p: ProgressUpdate): ProgressEvent {
  const body = `,"vm":${JSON.stringify(p.vm)},"job":${JSON.stringify(p.job)},"incarnation":${p.incarnation},"progress":${JSON.stringify(p.progress)}}`;
  return { vm: p.vm, job: p.job, at: p.at, filter: { id: p.job, type: p.type, state: p.state }, prefix: PROGRESS_PREFIX, body };
}
