/**
 * The standing event registrations of one client. libvirtd forgets callbacks with the connection,
 * so a watch outlives sessions: the registry registers every live watch on each new session (the
 * client awaits registerAll before it announces the session) and maps that session's callback ids
 * back to watches for routing.
 *
 * A registration that libvirtd refuses (LibvirtRemoteError: a read-only connection asking for the
 * QEMU passthrough, a domain-scoped watch whose domain is gone) does not fail the session: it is
 * reported and listed in `session.watches.failed`. Anything else (the connection dropped) fails
 * negotiation, and the next session tries again.
 */
import { LibvirtRegistrationError, LibvirtRemoteError, type LibvirtError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CallbackSpace } from './events.js';
import type { DomainEventId, DomainRef, LibvirtEventWatch } from './types.js';

export type WatchSpec =
  | { kind: 'domain'; eventId: DomainEventId; domain: DomainRef | undefined }
  | { kind: 'monitor'; domain: DomainRef | undefined; event: string | undefined };

export type Watch = WatchSpec & { readonly id: number; readonly description: string };

interface Entry {
  readonly watch: Watch;
  readonly handle: LibvirtEventWatch;
  callbackId: number | undefined;
  /** The session the current callbackId belongs to. */
  session: number | undefined;
  closed: boolean;
}

export interface WatchHooks {
  register(watch: Watch): Promise<number>;
  deregister(watch: Watch, callbackId: number): Promise<void>;
  isReady(): boolean;
  /** The current (ready) session's number. */
  session(): number | undefined;
  problem(error: LibvirtError): void;
  /** A callback id now routes to `watch`: events that arrived for it meanwhile can be delivered. */
  registered(space: CallbackSpace, callbackId: number, watch: Watch): void;
  /** No registration is in flight any more. */
  settled(): void;
  log: Logger;
  name: string;
}

export class WatchRegistry {
  private nextId = 1;
  private inFlight = 0;
  private readonly entries = new Map<number, Entry>();
  private readonly callbacks: Record<CallbackSpace, Map<number, Entry>> = { domain: new Map(), monitor: new Map() };

  constructor(private readonly hooks: WatchHooks) {}

  add(spec: WatchSpec): LibvirtEventWatch {
    const id = this.nextId++;
    const description = describe(spec);
    const watch = { ...spec, id, description } as Watch;
    const registry = this;
    const entry: Entry = {
      watch,
      callbackId: undefined,
      session: undefined,
      closed: false,
      handle: {
        id,
        description,
        get callbackId() {
          return entry.callbackId;
        },
        close: () => registry.remove(entry),
      },
    };
    this.entries.set(id, entry);
    // When not ready, the next session's registerAll picks it up.
    const session = this.hooks.session();
    if (this.hooks.isReady() && session !== undefined) {
      this.registerOne(entry, session).catch((err: unknown) => {
        this.hooks.log.debug({ libvirt: this.hooks.name, watch: description, err }, 'registration interrupted; the next session retries');
      });
    }
    return entry.handle;
  }

  /** Register every live watch on a new session, in creation order. */
  async registerAll(session: number): Promise<{ registered: number[]; failed: number[] }> {
    const registered: number[] = [];
    const failed: number[] = [];
    const done = new Set<number>();
    // Watches added while this runs are picked up by the next pass.
    for (;;) {
      const todo = [...this.entries.values()].filter((e) => !e.closed && !done.has(e.watch.id));
      if (todo.length === 0) break;
      for (const entry of todo) {
        done.add(entry.watch.id);
        if (await this.registerOne(entry, session)) registered.push(entry.watch.id);
        else if (!entry.closed) failed.push(entry.watch.id);
      }
    }
    return { registered, failed };
  }

  /** The connection ended: every callback id died with it. */
  sessionEnded(): void {
    for (const space of Object.values(this.callbacks)) space.clear();
    for (const entry of this.entries.values()) {
      entry.callbackId = undefined;
      entry.session = undefined;
    }
  }

  /** A registration call is in flight: an event for an unknown callback id may be for it. */
  get registering(): boolean {
    return this.inFlight > 0;
  }

  byCallback(space: CallbackSpace, callbackId: number): Watch | undefined {
    return this.callbacks[space].get(callbackId)?.watch;
  }

  closeAll(): void {
    for (const entry of this.entries.values()) entry.closed = true;
    this.entries.clear();
    this.sessionEnded();
  }

  /** true when registered; false when libvirtd refused (reported); throws when the connection failed. */
  private async registerOne(entry: Entry, session: number): Promise<boolean> {
    let callbackId: number;
    this.inFlight++;
    try {
      callbackId = await this.hooks.register(entry.watch);
      if (!entry.closed) {
        entry.callbackId = callbackId;
        entry.session = session;
        this.callbacks[space(entry.watch)].set(callbackId, entry);
        this.hooks.registered(space(entry.watch), callbackId, entry.watch);
      }
    } catch (err) {
      if (!(err instanceof LibvirtRemoteError)) throw err;
      this.hooks.problem(new LibvirtRegistrationError(entry.watch.description, session, { cause: err }));
      return false;
    } finally {
      if (--this.inFlight === 0) this.hooks.settled();
    }
    if (entry.closed) {
      await this.hooks.deregister(entry.watch, callbackId).catch(() => {});
      return false;
    }
    this.hooks.log.debug({ libvirt: this.hooks.name, watch: entry.watch.description, callbackId, session }, 'watch registered');
    return true;
  }

  private async remove(entry: Entry): Promise<void> {
    if (entry.closed) return;
    entry.closed = true;
    this.entries.delete(entry.watch.id);
    const callbackId = entry.callbackId;
    if (callbackId === undefined) return;
    this.callbacks[space(entry.watch)].delete(callbackId);
    entry.callbackId = undefined;
    // Best effort: if the connection is gone, libvirtd dropped the callback already.
    await this.hooks.deregister(entry.watch, callbackId).catch((err: unknown) => {
      this.hooks.log.debug({ libvirt: this.hooks.name, watch: entry.watch.description, err }, 'deregistration failed; ignored');
    });
  }
}

const space = (watch: Watch): CallbackSpace => (watch.kind === 'monitor' ? 'monitor' : 'domain');

function describe(spec: WatchSpec): string {
  const scope = spec.domain ? `domain ${spec.domain.name}` : 'all domains';
  if (spec.kind === 'domain') return `${spec.eventId} (${scope})`;
  return `qemu-monitor ${spec.event ?? '*'} (${scope})`;
}
