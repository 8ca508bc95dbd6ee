import { describe, expect, it } from 'vitest';
import { capabilitiesFromSchema, capabilitiesFromVersion, detectCapabilities } from '../../../src/jobs/capabilities.js';
import { QmpCommandError, QmpTimeoutError } from '../../../src/errors.js';
import type { QmpMonitor } from '../../../src/qmp/types.js';
import { QEMU_7_2_SCHEMA_SUBSET } from '../../../src/sim/qmp-schema-7.2.js';

const V72 = { major: 7, minor: 2, micro: 22 };

/** A QEMU 2.x-like introspection: masked type names, BlockJobInfo with or without `status`/`ready`. */
function oldSchema(members: string[], extra: Record<string, unknown>[] = []): Record<string, unknown>[] {
  return [
    { name: 'query-block-jobs', 'meta-type': 'command', 'arg-type': '0', 'ret-type': '[41]' },
    { name: '[41]', 'meta-type': 'array', 'element-type': '41' },
    { name: '41', 'meta-type': 'object', members: members.map((name) => ({ name, type: 'str' })) },
    { name: 'block-job-complete', 'meta-type': 'command', 'arg-type': '9', 'ret-type': '0' },
    ...extra,
  ];
}

describe('capabilities', () => {
  it.each([
    [{ major: 7, minor: 2, micro: 0 }, { queryJobs: true, jobStatusChange: true, status: true, readyField: true, jobVerbs: true, completeInStandby: true }],
    [{ major: 5, minor: 2, micro: 0 }, { queryJobs: true, jobStatusChange: true, status: true, readyField: true, jobVerbs: true, completeInStandby: false }],
    [{ major: 2, minor: 12, micro: 0 }, { queryJobs: false, jobStatusChange: false, status: true, readyField: true, jobVerbs: false, completeInStandby: false }],
    [{ major: 2, minor: 5, micro: 0 }, { queryJobs: false, jobStatusChange: false, status: false, readyField: true, jobVerbs: false, completeInStandby: false }],
    [{ major: 1, minor: 7, micro: 0 }, { queryJobs: false, jobStatusChange: false, status: false, readyField: false, jobVerbs: false, completeInStandby: false }],
  ])('from version %o', (version, expected) => {
    expect(capabilitiesFromVersion(version)).toEqual({ version, ...expected });
  });

  it('reads the real QEMU 7.2 introspection (masked type names)', () => {
    expect(capabilitiesFromSchema(V72, QEMU_7_2_SCHEMA_SUBSET)).toEqual(capabilitiesFromVersion(V72));
  });

  it('trusts the schema over the version: a 7.2 that lacks query-jobs and BlockJobInfo.status says so', () => {
    const caps = capabilitiesFromSchema(V72, oldSchema(['device', 'len', 'offset', 'ready']));
    expect(caps).toMatchObject({ queryJobs: false, jobStatusChange: false, status: false, readyField: true, jobVerbs: false });
  });

  it('finds BlockJobInfo members through query-block-jobs ret-type on a 2.x-like schema', () => {
    const caps = capabilitiesFromSchema({ major: 2, minor: 12, micro: 0 }, oldSchema(['device', 'status', 'ready'], [{ name: 'BLOCK_JOB_PENDING', 'meta-type': 'event', 'arg-type': '7' }]));
    expect(caps).toMatchObject({ status: true, readyField: true, jobStatusChange: false });
  });

  it('rejects a reply that is not a SchemaInfo list', () => {
    expect(() => capabilitiesFromSchema(V72, { not: 'a list' })).toThrow(/query-qmp-schema: expected an array/);
  });

  const monitorAnswering = (answer: () => Promise<unknown>): QmpMonitor => ({ execute: answer } as unknown as QmpMonitor);

  it('falls back to the version when query-qmp-schema does not exist (QEMU < 2.5)', async () => {
    const monitor = monitorAnswering(() => Promise.reject(new QmpCommandError('CommandNotFound', 'The command query-qmp-schema has not been found', { execute: 'query-qmp-schema' })));
    const detected = await detectCapabilities(monitor, { major: 1, minor: 7, micro: 0 });
    expect(detected).toEqual({ capabilities: capabilitiesFromVersion({ major: 1, minor: 7, micro: 0 }), from: 'version' });
  });

  it('falls back to the version with the cause when introspection fails otherwise', async () => {
    const timeout = new QmpTimeoutError({ execute: 'query-qmp-schema' }, 5);
    const detected = await detectCapabilities(monitorAnswering(() => Promise.reject(timeout)), V72);
    expect(detected.from).toBe('version');
    expect(detected.fallbackCause).toBe(timeout);
  });
});
