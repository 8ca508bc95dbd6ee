/**
 * The poll itself (pollMonitor): on a VM with no known job, the idle safety-net poll asks
 * query-jobs alone and stops when it is empty (issue 14: half the idle commands); a job it reveals
 * brings query-block-jobs too, and the snapshot's seq stays the earlier reply's.
 */
import { describe, expect, it } from 'vitest';
import { capabilitiesFromVersion } from '../../../src/jobs/capabilities.js';
import { pollMonitor } from '../../../src/jobs/poller.js';
import type { QmpMonitor, QmpReply } from '../../../src/qmp/types.js';

const mirror = { device: 'm1', type: 'mirror', status: 'running', offset: 4, len: 8, speed: 0, busy: false, paused: false, ready: false, 'io-status': 'ok', 'auto-finalize': true, 'auto-dismiss': true };
const asJob = { id: 'm1', type: 'mirror', status: 'running', 'current-progress': 4, 'total-progress': 8 };

/** Answers query-jobs/query-block-jobs from `jobs`; records each command and whether it was sent before the previous reply was read. */
function fakeMonitor(jobs: 'none' | 'mirror') {
  let seq = 0;
  const sent: string[] = [];
  const monitor = {
    async executeWithMeta<T>(command: string): Promise<QmpReply<T>> {
      sent.push(command);
      const mySeq = ++seq;
      await Promise.resolve();
      const value = command === 'query-jobs' ? (jobs === 'none' ? [] : [asJob]) : jobs === 'none' ? [] : [mirror];
      return { value: value as T, seq: mySeq, receivedAt: 1000 + mySeq, session: 1 };
    },
  } as unknown as QmpMonitor;
  return { monitor, sent };
}

const caps72 = capabilitiesFromVersion({ major: 7, minor: 2, micro: 0 });

describe('pollMonitor', () => {
  it('asks query-jobs alone on a VM with no known job while QEMU has none', async () => {
    const { monitor, sent } = fakeMonitor('none');
    const result = await pollMonitor(monitor, caps72, 1000, true);
    expect(sent).toEqual(['query-jobs']);
    expect(result).toEqual({ rows: [], seq: 1, receivedAt: 1001, session: 1 });
  });

  it('adds query-block-jobs when query-jobs reveals a job, and keeps the earlier seq', async () => {
    const { monitor, sent } = fakeMonitor('mirror');
    const result = await pollMonitor(monitor, caps72, 1000, true);
    expect(sent).toEqual(['query-jobs', 'query-block-jobs']);
    expect(result.seq).toBe(1);
    expect(result.rows).toHaveLength(1);
    // The block job's own fields (offset/len, ready) come from query-block-jobs.
    const full = await pollMonitor(fakeMonitor('mirror').monitor, caps72, 1000, false);
    expect(result.rows).toEqual(full.rows);
  });

  it('sends both queries pipelined once jobs are known, and only query-block-jobs before QEMU 3.0', async () => {
    const known = fakeMonitor('none');
    await pollMonitor(known.monitor, caps72, 1000, false);
    expect(known.sent).toEqual(['query-block-jobs', 'query-jobs']);
    const old = fakeMonitor('none');
    await pollMonitor(old.monitor, capabilitiesFromVersion({ major: 2, minor: 12, micro: 0 }), 1000, true);
    expect(old.sent).toEqual(['query-block-jobs']);
  });
});
