/**
 * One stream event's frames, encoded once per group of subscriptions that get identical bytes.
 * A subscriber's frame differs from another's only by its `sub`, its `prev` and the `leftFilter`
 * flag; most subscriptions of one dashboard share all three, so a fan-out to N of them builds and
 * UTF-8-encodes one Buffer instead of N strings (the socket sends that Buffer as a text frame).
 * Lives as long as the event's fan-out; at most one Buffer per subscription, so it is bounded by the
 * audience.
 */
import type { StreamEvent } from './feed.js';

export class EncodedFrames {
  /** prev -> subJson -> frame; `leftFilter` frames keyed by -(prev + 1), prev is never negative. */
  private readonly byPrev = new Map<number, Map<string, Buffer>>();

  constructor(private readonly event: StreamEvent) {}

  frame(subJson: string, prev: number, leftFilter: boolean): Buffer {
    const key = leftFilter ? -(prev + 1) : prev;
    let bySub = this.byPrev.get(key);
    if (!bySub) this.byPrev.set(key, (bySub = new Map()));
    let frame = bySub.get(subJson);
    if (!frame) bySub.set(subJson, (frame = Buffer.from(frameText(this.event, subJson, prev, leftFilter))));
    return frame;
  }
}

/** The frame of `event` for one subscription: the one place its bytes are put together. */
export function frameText(event: StreamEvent, subJson: string, prev: number, leftFilter: boolean): string {
  const body = leftFilter ? `${event.body.slice(0, -1)},"leftFilter":true}` : event.body;
  return `${event.prefix}${subJson},"prev":${prev}${body}`;
}
