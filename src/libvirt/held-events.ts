/**
 * Events that arrived for a callback id no watch holds yet. libvirtd registers a callback before
 * it writes the reply that names it, so an event can come first, or later in the same read, before
 * the reply's continuation maps the id. The client holds such events while a registration is in
 * flight and hands them to the watch that claims the id; the rest are dropped when registrations
 * settle (they belonged to a callback we deregistered; libvirt's own client drops those too).
 */
import type { CallbackSpace, DecodedEvent } from './events.js';
import type { DomainRef } from './types.js';

/** What the client stamps on every event, minus the watch it goes to. */
export interface EventStamp {
  domain: DomainRef;
  receivedAt: number;
  receivedMono: number;
  seq: number;
  session: number;
}

export interface HeldEvent {
  readonly decoded: DecodedEvent;
  readonly stamp: EventStamp;
}

/** Held events per connection; beyond the bound, more are refused (and dropped by the caller). */
export class HeldEvents {
  private events: HeldEvent[] = [];

  constructor(readonly limit = 256) {}

  get size(): number {
    return this.events.length;
  }

  hold(decoded: DecodedEvent, stamp: EventStamp): boolean {
    if (this.events.length >= this.limit) return false;
    this.events.push({ decoded, stamp });
    return true;
  }

  /** Remove and return, in arrival order, the events for this callback id. */
  claim(space: CallbackSpace, callbackId: number): HeldEvent[] {
    const mine = (h: HeldEvent): boolean => h.decoded.space === space && h.decoded.callbackId === callbackId;
    const claimed = this.events.filter(mine);
    if (claimed.length > 0) this.events = this.events.filter((h) => !mine(h));
    return claimed;
  }

  /** Drop everything; returns how many were dropped. */
  clear(): number {
    const dropped = this.events.length;
    this.events = [];
    return dropped;
  }
}
