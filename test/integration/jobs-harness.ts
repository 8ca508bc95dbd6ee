/**
 * A JobRegistry following one scripted QMP peer that plays an older (or newer) QEMU: the peer
 * answers query-qmp-schema, query-block-jobs and query-jobs from mutable rows, so a test sets the
 * rows, emits events, and waits for the engine's transitions.
 */
import { QmpClient } from '../../src/qmp/client.js';
import { JobRegistry } from '../../src/jobs/registry.js';
import type { JobTransition, StreamInput } from '../../src/jobs/types.js';
import type { MonitorJobsOptions } from '../../src/jobs/monitor-jobs.js';
import { startScriptedPeer, type QmpPeerReply, type ScriptedPeer } from '../utils/scripted-peer.js';
import { QEMU_7_2_SCHEMA_SUBSET } from '../../src/sim/qmp-schema-7.2.js';
import { label } from '../unit/jobs/reducer-harness.js';

export type Version = { major: number; minor: number; micro: number };
const atLeast = (v: Version, major: number, minor: number): boolean => v.major > major || (v.major === major && v.minor >= minor);

/** query-qmp-schema as this version would answer it (masked type names), or undefined before 2.5. */
function schemaFor(version: Version): unknown[] | undefined {
  if (!atLeast(version, 2, 5)) return undefined;
  if (atLeast(version, 3, 0)) return [...QEMU_7_2_SCHEMA_SUBSET];
  const members = ['type', 'device', 'len', 'offset', 'busy', 'paused', 'speed', 'io-status', 'ready', ...(atLeast(version, 2, 12) ? ['status'] : [])];
  return [
    { name: 'query-block-jobs', 'meta-type': 'command', 'arg-type': '0', 'ret-type': '[57]' },
    { name: '[57]', 'meta-type': 'array', 'element-type': '57' },
    { name: '57', 'meta-type': 'object', members: members.map((name) => ({ name, type: 'str' })) },
    { name: 'BLOCK_JOB_READY', 'meta-type': 'event', 'arg-type': '12' },
  ];
}

export interface EngineRig {
  peer: ScriptedPeer;
  registry: JobRegistry;
  changes: StreamInput[];
  /** query-block-jobs rows (QMP wire shape). */
  blockJobs: Record<string, unknown>[];
  /** query-jobs rows (QMP wire shape; 3.0+ only). */
  jobs: Record<string, unknown>[];
  /** Labels of the transitions of one job (see reducer-harness `label`). */
  labels(job: string): string[];
  waitFor(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** Resolves once `count` more query-block-jobs polls were answered. */
  polls(count?: number): Promise<void>;
  emit(event: string, data: Record<string, unknown>): void;
  close(): Promise<void>;
}

export async function startEngineRig(version: Version, options: MonitorJobsOptions = {}): Promise<EngineRig> {
  const blockJobs: Record<string, unknown>[] = [];
  const jobs: Record<string, unknown>[] = [];
  const schema = schemaFor(version);
  const notFound = (name: string): QmpPeerReply => ({ error: { class: 'CommandNotFound', desc: `The command ${name} has not been found` } });
  const peer = await startScriptedPeer({
    version,
    handler: (execute) => {
      switch (execute) {
        case 'query-qmp-schema':
          return schema ? { return: schema } : notFound(execute);
        case 'query-block-jobs':
          return { return: structuredClone(blockJobs) };
        case 'query-jobs':
          return atLeast(version, 3, 0) ? { return: structuredClone(jobs) } : notFound(execute);
        default:
          return { return: {} };
      }
    },
  });
  const registry = new JobRegistry({
    activePollMs: 25,
    idlePollMs: 50,
    internalPauseMs: 150,
    createMonitor: (vm, address) => {
      const client = new QmpClient({ address, name: vm, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
      client.start();
      return client;
    },
    ...options,
  });
  const changes: StreamInput[] = [];
  const wakers = new Set<() => void>();
  registry.changes$.subscribe((change) => {
    changes.push(change);
    for (const wake of wakers) wake();
  });
  registry.add('vm1', peer.address);

  const waitFor = (what: string, predicate: () => boolean, timeoutMs = 20_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (!predicate()) return;
        cleanup();
        resolve();
      };
      const interval = setInterval(check, 10);
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; changes: ${JSON.stringify(changes.map(describe))}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearInterval(interval);
        clearTimeout(timer);
        wakers.delete(check);
      };
      wakers.add(check);
      check();
    });

  return {
    peer,
    registry,
    changes,
    blockJobs,
    jobs,
    labels: (job) => changes.filter((c): c is JobTransition => c.kind === 'transition' && c.job.id === job).map((c) => label(c.to)),
    waitFor,
    async polls(count = 2) {
      for (let i = 0; i < count; i += 1) {
        const from = peer.nextCommandIndex;
        await peer.waitForCommand('query-block-jobs', 20_000, from);
      }
      // The reply of the last one must have been applied too: one more command round trip.
      await peer.waitForCommand('query-block-jobs', 20_000, peer.nextCommandIndex);
    },
    emit: (event, data) => {
      if (!peer.emitEvent(event, data)) throw new Error(`peer has no negotiated client to send ${event} to`);
    },
    async close() {
      await registry.close();
      await peer.close();
    },
  };
}

function describe(change: StreamInput): string {
  return change.kind === 'vm' ? `vm:${change.status}` : `${change.job.id}:${label(change.to)}`;
}

/** A query-block-jobs row in QMP wire shape, with the fields an old QEMU has. */
export function blockJobRow(device: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'mirror', device, len: 100, offset: 0, busy: true, paused: false, speed: 0, 'io-status': 'ok', ...fields };
}
