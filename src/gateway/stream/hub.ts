/**
 * StreamHub: the feed of a local JobSource. It numbers the source's changes into per-VM streams.
 *
 * Every stream event (a job transition, a monitor going up or down) gets the VM's next offset, is
 * serialized once, appended to the history and handed to the sink, all synchronously inside the
 * JobSource's delivery. Because `JobSource.snapshot()` already reflects every delivered change,
 * the feed contract (feed.ts) holds: "snapshot() + head offset" read in one tick is a consistent cut.
 */
import type { Subscription as RxSubscription } from 'rxjs';
import { GatewayError } from '../../errors.js';
import type { JobSource, StreamInput, VmSnapshot } from '../../jobs/types.js';
import type { HistoryRead, MaybePromise, StreamHistory, StreamPosition } from '../history/types.js';
import { progressEvent, streamEvent } from './events.js';
import type { FeedSink, StreamEvent, StreamFeed } from './feed.js';

export class StreamHub implements StreamFeed {
  private readonly positions = new Map<string, StreamPosition>();
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
    this.subscriptions.push(this.source.changes$.subscribe((input) => (held ? held.push(input) : sink.event(this.number(input)))));
    for (const vm of this.source.vms()) this.positions.set(vm, await this.history.open(vm));
    const opened = held;
    held = undefined;
    for (const input of opened) sink.event(this.number(input));
    this.subscriptions.push(this.source.progress$.subscribe((update) => sink.progress(progressEvent(update))));
  }

  stop(): void {
    for (const s of this.subscriptions.splice(0)) s.unsubscribe();
  }

  vms(): string[] {
    return this.source.vms();
  }

  /** The stream's current epoch and head offset (opening it if new). */
  position(vm: string): StreamPosition {
    return { ...this.positionRef(vm) };
  }

  snapshot(): VmSnapshot[] {
    return this.source.snapshot();
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
