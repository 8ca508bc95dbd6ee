/**
 * What the gateway pushed to the soak's main subscriber, per job id: segments, one per incarnation
 * (and per gateway life: a restarted gateway numbers incarnations afresh), each with the states in
 * the order pushed and the job's last state. Drivers wait on it for the moments they act on.
 */
type Job = Record<string, any>;

export interface Segment {
  life: number;
  incarnation: number;
  states: string[];
  last: Job;
  /** state/source@ms of each push, for mismatch reports. */
  trail: string[];
  /** Came (partly) from a snapshot after a lost stream: states may be missing in between. */
  partial: boolean;
}

type Listener = () => void;

export class PushedJobs {
  private readonly segments = new Map<string, Segment[]>();
  private readonly listeners = new Set<Listener>();
  life = 0;

  private key(vm: string, id: string): string {
    return `${vm}\u0000${id}`;
  }

  /** Index to pass to `since` for segments that start after now. */
  mark(vm: string, id: string): number {
    return this.segments.get(this.key(vm, id))?.length ?? 0;
  }

  since(vm: string, id: string, mark: number): Segment[] {
    return this.segments.get(this.key(vm, id))?.slice(mark) ?? [];
  }

  /** The newest job state pushed since `mark`. */
  latest(vm: string, id: string, mark: number): Job | undefined {
    const list = this.since(vm, id, mark);
    return list[list.length - 1]?.last;
  }

  forget(vm: string, id: string): void {
    this.segments.delete(this.key(vm, id));
  }

  /** A pushed event (`fromSnapshot`: a `state` message after a lost stream). */
  record(vm: string, job: Job, fromSnapshot: boolean): void {
    const key = this.key(vm, String(job.id));
    let list = this.segments.get(key);
    if (!list) this.segments.set(key, (list = []));
    let segment = list[list.length - 1];
    if (!segment || segment.life !== this.life || segment.incarnation !== job.incarnation) {
      segment = { life: this.life, incarnation: job.incarnation, states: [], trail: [], last: job, partial: fromSnapshot };
      list.push(segment);
    }
    if (fromSnapshot) segment.partial = true;
    if (!fromSnapshot || segment.states[segment.states.length - 1] !== job.state) segment.states.push(job.state);
    segment.last = job;
    if (segment.trail.length < 40) segment.trail.push(`${job.state}/${job.source}${fromSnapshot ? '(snapshot)' : ''}@${Date.now() % 100_000}`);
    for (const listener of [...this.listeners]) listener();
  }

  /** Marks the live segments of a VM partial (its stream was lost: a snapshot follows). */
  lost(vm: string): void {
    for (const [key, list] of this.segments) {
      if (!key.startsWith(`${vm}\u0000`)) continue;
      const segment = list[list.length - 1];
      if (segment) segment.partial = true;
    }
  }

  /** Resolves with the first value `check` returns that is not undefined, re-checked on every push. */
  waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const listener = (): void => {
        const value = check();
        if (value === undefined) return;
        this.listeners.delete(listener);
        clearTimeout(timer);
        resolve(value);
      };
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.listeners.add(listener);
    });
  }

  /** Wakes waiters whose condition depends on something else (e.g. time). */
  poke(): void {
    for (const listener of [...this.listeners]) listener();
  }
}
