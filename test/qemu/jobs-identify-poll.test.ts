/**
 * A job created while a poll is in flight is still identified by a poll, on a real
 * qemu-storage-daemon. JOB_STATUS_CHANGE carries no job type, so the engine holds a new job's first
 * changes (identifyHoldMs) and asks for a poll at once (pollNow). When the poll in flight was sent
 * before the job existed, its answer does not list the job, and the ask used to be dropped (a tick
 * during a poll is skipped): the job then waited for the next active tick (activePollMs) and its
 * first changes went out typed `unknown` when the hold ran out.
 *
 * The window is a few microseconds in the wild: the poll's reply and the job's first event in one
 * read. A link in front of the engine's monitor makes it on cue: it holds QEMU's bytes from the
 * moment the engine sends its next `query-jobs` until the job's first event follows the reply, then
 * hands both over in one chunk. Everything else is the real daemon.
 */
import { Duplex } from 'node:stream';
import { expect, it, afterEach } from 'vitest';
import { startBackup } from '../../src/lab/jobs.js';
import type { QmpAddress } from '../../src/qmp/types.js';
import { describeQemu } from '../utils/qemu-gate.js';
import { cleanupLeftoversAfterAll } from '../utils/qsd.js';
import { openScenario, waitUntil, type Scenario } from '../utils/job-scenarios.js';

/** Holds QEMU -> engine bytes from the next `query-jobs` until a reply and a JOB_STATUS_CHANGE are held, then passes them as one chunk. */
class HoldNextPoll {
  private armed = false;
  private holding = false;
  private held: Buffer[] = [];
  /** The engine has sent the poll whose reply is held. */
  pollSent = false;
  /** What was handed over in one chunk. */
  released: string | undefined;

  arm(): void {
    this.armed = true;
  }

  wrap = (connect: (address: QmpAddress) => Duplex) => (address: QmpAddress): Duplex => {
    const upstream = connect(address);
    const link = new Duplex({
      read: () => undefined,
      write: (chunk: Buffer, _encoding, done) => {
        if (this.armed && !this.holding && chunk.includes('"query-jobs"')) {
          this.armed = false;
          this.holding = true;
          this.pollSent = true;
        }
        upstream.write(chunk, done);
      },
      final: (done) => upstream.end(done),
      destroy: (error, done) => {
        upstream.destroy();
        done(error);
      },
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!this.holding) return link.push(chunk);
      this.held.push(chunk);
      const text = Buffer.concat(this.held).toString();
      if (!text.includes('"return"') || !text.includes('"JOB_STATUS_CHANGE"')) return;
      this.holding = false;
      this.held = [];
      this.released = text;
      link.push(Buffer.from(text));
    });
    upstream.on('end', () => link.push(null));
    upstream.on('error', (error) => link.destroy(error));
    upstream.on('close', () => link.destroy());
    return link;
  };
}

describeQemu('a job created during a poll (real QEMU)', () => {
  cleanupLeftoversAfterAll();
  let sc: Scenario | undefined;
  afterEach(async () => sc?.dispose());

  it('is identified by a poll right after the one in flight, not published as type unknown', async () => {
    const hold = new HoldNextPoll();
    // Wide margins so the load cannot decide: the hold (10 s) ends long after a follow-up poll would,
    // and long before the next active tick (60 s); nothing times out while QEMU's bytes are held.
    sc = await openScenario({
      wrapConnect: hold.wrap,
      engine: { idlePollMs: 200, activePollMs: 60_000, identifyHoldMs: 10_000, pollTimeoutMs: 60_000 },
    });
    hold.arm();
    await waitUntil('the engine sends its next idle poll', () => hold.pollSent);
    // sync=none runs until cancelled: no READY or COMPLETED event would name the type meanwhile.
    await startBackup(sc.qsd, sc.qsd, { jobId: 'late', sync: 'none' });
    const released = await waitUntil('the held reply and the job event', () => hold.released);
    // The precondition of the case: the poll's answer was made before the job existed.
    expect(released.indexOf('"return"')).toBeLessThan(released.indexOf('"JOB_STATUS_CHANGE"'));
    expect(released).toMatch(/"return": \[\]/);

    const first = await sc.recorder.waitForState('late', 'created', 30_000);
    expect(first.job.type).toBe('backup');
    expect(sc.recorder.transitions('late').every((transition) => transition.job.type === 'backup')).toBe(true);
    await sc.control.verb('late', 'force-cancel');
    await sc.oracle.waitForStatus('late', 'null');
  });
});
