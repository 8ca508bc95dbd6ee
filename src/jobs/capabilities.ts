/**
 * What a monitor can do for the job engine, learned from the monitor itself. `query-qmp-schema`
 * (QEMU 2.5+) is the authority: commands and events by name, and BlockJobInfo's members found by
 * following query-block-jobs' ret-type (object type names are masked numbers in the introspection,
 * member names are real). The greeting version is the fallback when introspection is absent, and
 * the only source for behaviour the schema cannot show (complete accepted in standby, 6.0+).
 */
import { QmpCommandError } from '../errors.js';
import type { QmpMonitor } from '../qmp/types.js';
import type { MonitorCapabilities } from './types.js';

type Version = MonitorCapabilities['version'];

const atLeast = (v: Version, major: number, minor: number): boolean => v.major > major || (v.major === major && v.minor >= minor);

/** Capabilities implied by the version alone (reference §2, §3). */
export function capabilitiesFromVersion(version: Version): MonitorCapabilities {
  return {
    version,
    queryJobs: atLeast(version, 3, 0),
    jobStatusChange: atLeast(version, 3, 0),
    status: atLeast(version, 2, 12),
    readyField: atLeast(version, 2, 2),
    jobVerbs: atLeast(version, 3, 0),
    completeInStandby: atLeast(version, 6, 0),
  };
}

/** One entry of `query-qmp-schema` (SchemaInfo); only the members this module reads. */
interface SchemaEntry {
  name: string;
  'meta-type': string;
  'ret-type'?: string;
  'element-type'?: string;
  members?: { name: string }[];
}

/** Capabilities from a `query-qmp-schema` reply; throws if the reply is not a SchemaInfo list. */
export function capabilitiesFromSchema(version: Version, schema: unknown): MonitorCapabilities {
  if (!Array.isArray(schema)) throw new TypeError(`query-qmp-schema: expected an array, got ${typeof schema}`);
  const byName = new Map<string, SchemaEntry>();
  for (const entry of schema as SchemaEntry[]) {
    if (entry && typeof entry.name === 'string') byName.set(`${entry['meta-type']}:${entry.name}`, entry);
  }
  const command = (name: string): SchemaEntry | undefined => byName.get(`command:${name}`);
  const typeNamed = (name: string | undefined): SchemaEntry | undefined => {
    if (name === undefined) return undefined;
    for (const meta of ['object', 'array']) {
      const entry = byName.get(`${meta}:${name}`);
      if (entry) return entry;
    }
    return undefined;
  };
  const returned = typeNamed(command('query-block-jobs')?.['ret-type']);
  const blockJobInfo = returned?.['meta-type'] === 'array' ? typeNamed(returned['element-type']) : undefined;
  const members = new Set((blockJobInfo?.members ?? []).map((m) => m.name));
  return {
    version,
    queryJobs: command('query-jobs') !== undefined,
    jobStatusChange: byName.has('event:JOB_STATUS_CHANGE'),
    status: members.has('status'),
    readyField: members.has('ready'),
    jobVerbs: ['job-complete', 'job-cancel', 'job-pause', 'job-resume', 'job-finalize', 'job-dismiss'].every((c) => command(c)),
    // Not visible in the schema: "job: Allow complete for jobs on standby" (QEMU 6.0).
    completeInStandby: atLeast(version, 6, 0),
  };
}

export interface DetectedCapabilities {
  capabilities: MonitorCapabilities;
  /** Where they came from; `version` with `fallbackCause` when introspection failed for another reason. */
  from: 'schema' | 'version';
  fallbackCause?: unknown;
}

/**
 * Asks the monitor. Falls back to the version when `query-qmp-schema` does not exist (QEMU < 2.5),
 * or fails otherwise (reported in `fallbackCause`, so the caller can surface it).
 */
export async function detectCapabilities(monitor: QmpMonitor, version: Version, timeoutMs?: number): Promise<DetectedCapabilities> {
  try {
    const schema = await monitor.execute('query-qmp-schema', undefined, timeoutMs === undefined ? undefined : { timeoutMs });
    return { capabilities: capabilitiesFromSchema(version, schema), from: 'schema' };
  } catch (error) {
    const absent = error instanceof QmpCommandError && error.qmpClass === 'CommandNotFound';
    return absent
      ? { capabilities: capabilitiesFromVersion(version), from: 'version' }
      : { capabilities: capabilitiesFromVersion(version), from: 'version', fallbackCause: error };
  }
}
