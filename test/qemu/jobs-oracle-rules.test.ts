/**
 * The oracle's own rules, without QEMU: how QEMU's event log becomes the sequence the engine must emit,
 * and the lab's refusal of job ids QEMU would refuse.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { startMirror, type JobLab, type QmpExecutor } from '../../src/lab/jobs.js';
import type { RawQmpEvent } from '../../src/lab/raw-qmp.js';
import { expectedEngineStates, JobControl } from '../utils/job-scenarios.js';

/** An event log: 'paused' is a JOB_STATUS_CHANGE, 'ERROR:stop' a BLOCK_JOB_ERROR; one ms apart from t0. */
function log(jobId: string, entries: string[], t0 = 1_000): RawQmpEvent[] {
  return entries.map((entry, seq) => {
    const [kind, arg] = entry.split(':');
    const event = kind === 'ERROR' ? 'BLOCK_JOB_ERROR' : 'JOB_STATUS_CHANGE';
    const data = kind === 'ERROR' ? { device: jobId, operation: 'write', action: arg } : { id: jobId, status: entry };
    return { event, data, timestamp: { seconds: 0, microseconds: 0 }, receivedAt: t0 + seq, seq };
  });
}

describe('expectedEngineStates (the oracle)', () => {
  it('maps null to dismissed and keeps every other status in order', () => {
    const events = log('j', ['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'null']);
    expect(expectedEngineStates(events, 'j')).toEqual(['created', 'running', 'ready', 'waiting', 'pending', 'concluded', 'dismissed']);
  });

  it('drops pauses nobody asked for that QEMU undid (backup start, drains), in running and in ready', () => {
    const events = log('j', ['created', 'running', 'paused', 'running', 'ready', 'standby', 'ready', 'aborting', 'concluded', 'null']);
    expect(expectedEngineStates(events, 'j')).toEqual(['created', 'running', 'ready', 'aborting', 'concluded', 'dismissed']);
  });

  it('keeps a pause caused by an error stop', () => {
    const events = log('j', ['created', 'running', 'ERROR:stop', 'paused', 'running']);
    expect(expectedEngineStates(events, 'j')).toEqual(['created', 'running', 'paused', 'running']);
  });

  it('keeps a pause that was asked for through JobControl', async () => {
    const sent: string[] = [];
    const control = new JobControl({ execute: async (command) => void sent.push(command) }, undefined, 'vm1');
    const before = Date.now();
    await control.verb('j', 'pause');
    const after = Date.now();
    // QEMU said running before the verb went out, paused after.
    const events = [...log('j', ['created', 'running'], before - 10), ...log('j', ['paused', 'running'], after + 5)];
    expect(sent).toEqual(['job-pause']);
    expect(expectedEngineStates(events, 'j', control)).toEqual(['created', 'running', 'paused', 'running']);
    expect(expectedEngineStates(events, 'j')).toEqual(['created', 'running']);
  });

  it('keeps a pause that did not return to where it came from', () => {
    const events = log('j', ['created', 'running', 'paused', 'aborting', 'concluded']);
    expect(expectedEngineStates(events, 'j')).toEqual(['created', 'running', 'paused', 'aborting', 'concluded']);
  });

  it('ignores other jobs', () => {
    const events = [...log('a', ['created', 'running']), ...log('b', ['created', 'null'])];
    expect(expectedEngineStates(events, 'a')).toEqual(['created', 'running']);
  });
});

describe('lab job ids', () => {
  it('refuses an id QEMU would refuse before creating anything', async () => {
    const calls: string[] = [];
    const lab: JobLab = {
      createImage: async (name) => {
        calls.push(name);
        return name;
      },
      addQcow2Node: async (name) => void calls.push(name),
      removeNode: async (name) => void calls.push(name),
    };
    const qmp: QmpExecutor = { execute: async (command) => void calls.push(command) };
    await expect(startMirror(qmp, lab, { jobId: '1bad' })).rejects.toBeInstanceOf(ConfigError);
    await expect(startMirror(qmp, lab, { jobId: 'has space' })).rejects.toThrow(/must start with a letter/);
    expect(calls).toEqual([]);
  });
});
