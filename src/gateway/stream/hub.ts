/**
 * StreamHub: the feed of a local JobSource. It numbers the source's changes into per-VM streams.
 *
 * Every stream event (a job transition, a monitor going up or down) gets the VM's next offset, is
 * serialized once, appended to the history and handed to the sink, all synchronously inside the
 * JobSource's delivery. Because `JobSource.snapshot()` already reflects every delivered change,
 * the feed contract (feed.ts) holds: "snapshot() + head offset" read in one tick is a consistent cut.
 *
 * A VM the source adds later (a libvirt domain that starts) gets its stream opened when the source
 * announces it; with an asynchronous history (a fleet host's claim in Redis) its changes wait in
 * order until then, and the VM is not listed before its stream is open.
 */
import type { Subscription as RxSubscription } from 'rxjs';
import { GatewayError } from '../../errors.js';
import type { JobSource, StreamInput, VmSnapshot } from '../../jobs/types.js';
import type { HistoryRead, MaybePromise, StreamHistory, StreamPosition } from '../history/types.js';
import { progressEvent, streamEvent } from './events.js';
import type { FeedSink, StreamEvent, StreamFeed } from './feed.js';

export class StreamHub implements StreamFeed {
  private readonly positions = new Map<string, StreamPosition>();
  /** VMs added after start whose stream an asynchronous history is opening: their changes, in order. */
  private readonly opening = new Map<string, StreamInput[]>();
  private stopped = false;
  private readonly subscriptions: RxSubscription[] = [];

  constructor(
    private readonly source: JobSource,
    private readonly history: StreamHistory<StreamEvent>,
    private readonly onHistoryError: (error: unknown) => void = () => {},
  ) {}

  /** Open every known VM's stream (awaiting an asynchronous history), then follow the source. */
  async start(sink: FeedSink): Promise<void> {
    // What the source reports while an asynchronous history opens the streams (a fleet host's claims
    // in Redis) waits here in order and is numbered once they are open: a reconcile that ran
    // meanwhile is in the stream, not only in the snapshot. Bounded by the source's own bounds on jobs.
    // A stream the history restarted at a new epoch: number from there; its followers resume (snapshot).
    this.history.onRestart?.((vm, position) => {
      this.positions.set(vm, { ...position });
      sink.reset(vm);
    });
    let held: StreamInput[] | undefined = [];
    this.subscriptions.push(this.source.changes$.subscribe((input) => (held ? held.push(input) : this.deliver(input, sink))));
    for (const vm of this.source.vms()) this.positions.set(vm, await this.history.open(vm));
    const opened = held;
    held = undefined;
    for (const input of opened) this.deliver(input, sink);
    // Announced before their first change (vmInfo$ replays the VMs followed now, all open by here).
    this.subscriptions.push(this.source.vmInfo$.subscribe((update) => update.kind === 'info' && this.openLate(update.info.vm, sink)));
    this.subscriptions.push(this.source.progress$.subscribe((update) => sink.progress(progressEvent(update))));
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
  }

  vms(): string[] {
    const vms = this.source.vms();
    return this.opening.size === 0 ? vms : vms.filter((vm) => !this.opening.has(vm));
  }

  /** The stream's current epoch and head offset (opening it if new). */
  position(vm: string): StreamPosition {
    return { ...this.positionRef(vm) };
  }

  snapshot(): VmSnapshot[] {
    const all = this.source.snapshot();
    return this.opening.size === 0 ? all : all.filter((s) => !this.opening.has(s.vm));
  }

  read(vm: string, since: StreamPosition): MaybePromise<HistoryRead<StreamEvent>> {
    return this.history.read(vm, since);
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

  private deliver(input: StreamInput, sink: FeedSink): void {
    const waiting = this.opening.get(input.vm);
    if (waiting) waiting.push(input);
    else if (!this.openLate(input.vm, sink, input)) sink.event(this.number(input));
  }

  /**
   * Open the stream of a VM added after start. With an asynchronous history its changes wait (bounded
   * by the source's own bounds on jobs) and are numbered once it is open. True when `first` waits.
   */
  private openLate(vm: string, sink: FeedSink, first?: StreamInput): boolean {
    if (this.positions.has(vm) || this.opening.has(vm)) return false;
    const opened = this.history.open(vm);
    if (!(opened instanceof Promise)) {
      this.positions.set(vm, opened);
      return false;
    }
    const queue = first ? [first] : [];
    this.opening.set(vm, queue);
    opened.then(
      (position) => {
        this.opening.delete(vm);
        if (this.stopped) return;
        this.positions.set(vm, { ...position });
        for (const input of queue) sink.event(this.number(input));
      },
      (error: unknown) => {
        // The fleet history opens locally when Redis is out of reach, so this is a defect: say what it cost.
        this.opening.delete(vm);
        this.onHistoryError(new GatewayError('GW_ERR_INTERNAL', `could not open the stream of ${vm}; ${queue.length} change(s) not published`, { cause: error }));
      },
    );
    return true;
  }

  /** Give the input the stream's next offset and record it in the history. */
  private number(input: StreamInput): StreamEvent {
    const position = this.positionRef(input.vm);
    const offset = position.offset + 1;
    const event = streamEvent(input, position.epoch, offset);
    position.offset = offset;
    try {
      const appended = this.history.append(input.vm, event);
      if (appended instanceof Promise) appended.catch(this.onHistoryError);
    } catch (error) {
      this.onHistoryError(error);
    }
    return event;
  }
}
