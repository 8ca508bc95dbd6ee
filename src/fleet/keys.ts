/**
 * Where the fleet keeps things in Redis. Every key of one VM carries the same hash tag, so in a
 * Redis Cluster they share a slot and one Lua script may touch them all (append + state + fence).
 *
 *   <p>:{<vm>}:s   stream of the VM's events, IDs 0-<offset>, fields b (body), k (kind), q (QMP receive ms)
 *   <p>:{<vm>}:m   hash: epoch, head, status, reason, host, fence
 *   <p>:{<vm>}:j   hash: job id -> job state JSON (the snapshot, no replay needed)
 *   <p>:{<vm>}:o   lease "<host>|<token>" with a TTL: the one host gateway allowed to write the VM
 *   <p>:vms        set of every VM name (discovery)
 *   <p>:h:{<host>}:c  stream of commands for one host gateway
 *   <p>:c:{<rid>}  a forwarded command's acknowledgement ("a") or result JSON, with a TTL
 *   channels <p>:n:<0..P-1> (events, partitioned by VM) and <p>:r:<edge> (command replies)
 */

/** Notify channels; an edge subscribes to all of them once, whatever the number of VMs. */
export const NOTIFY_PARTITIONS = 16;

/** `{` and `}` would end the hash tag early; escape them so every key of a VM hashes alike. */
function tag(name: string): string {
  return `{${name.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`)}}`;
}

export interface VmKeys {
  stream: string;
  meta: string;
  jobs: string;
  lease: string;
}

export class FleetKeys {
  /** `prefix`: `fleet.keyPrefix`, or its default (fleetDefaults() in fleet-config.ts). */
  constructor(readonly prefix: string) {}

  vm(vm: string): VmKeys {
    const base = `${this.prefix}:${tag(vm)}`;
    return { stream: `${base}:s`, meta: `${base}:m`, jobs: `${base}:j`, lease: `${base}:o` };
  }

  get registry(): string {
    return `${this.prefix}:vms`;
  }

  commands(host: string): string {
    return `${this.prefix}:h:${tag(host)}:c`;
  }

  notifyChannel(vm: string): string {
    return `${this.prefix}:n:${partition(vm)}`;
  }

  notifyChannels(): string[] {
    return Array.from({ length: NOTIFY_PARTITIONS }, (_, i) => `${this.prefix}:n:${i}`);
  }

  replyChannel(edge: string): string {
    return `${this.prefix}:r:${edge}`;
  }

  /** A forwarded command's acknowledgement, then its result, kept briefly: the reply channel may lose them. */
  reply(rid: string): string {
    return `${this.prefix}:c:${tag(rid)}`;
  }
}

/** FNV-1a over the name: stable across processes and languages. */
export function partition(vm: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < vm.length; i++) {
    h ^= vm.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % NOTIFY_PARTITIONS;
}
