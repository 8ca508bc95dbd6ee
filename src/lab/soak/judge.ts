/**
 * The verdict on one finished run: the states and outcome the gateway pushed against what QEMU did
 * (the oracle's own monitor). An interrupted stream (a gateway kill, a snapshot) must be a
 * subsequence of QEMU's; a killed daemon's job must end concluded with outcome unknown.
 */
import { expectedOutcome, expectedStates, isSubsequence } from './oracle.js';
import type { PushedJobs } from './pushed.js';
import { pushedSegments, pushedState, type JobRun, type Mismatch, type SoakReport } from './model.js';

export function judgeRun(run: JobRun, pushed: PushedJobs, report: SoakReport, mismatch: Mismatch): void {
  const { plan, lab } = run;
  const segments = pushedSegments(pushed, run);
  const interrupted = run.life !== pushed.life || segments.length > 1 || segments.some((s) => s.partial);
  // A restarted gateway's snapshot repeats the state the old one last pushed.
  const states = segments.flatMap((s) => s.states).filter((state, i, all) => i === 0 || state !== all[i - 1] || !interrupted);
  const last = pushedState(pushed, run);
  if (run.qemuKilled) {
    report.qemuKilledJobs++;
    const events = lab.oracle.events(plan.id, run.oracleMark);
    const oracleEnded = events.some((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'null');
    // A job QEMU ended before it died (auto-dismiss off: concluded, not yet gone) keeps QEMU's outcome.
    const endedAs = expectedOutcome(events);
    const cut = run.life !== pushed.life;
    if (oracleEnded || cut) return;
    if (endedAs !== undefined) {
      report.outcomesChecked++;
      if (last?.state !== 'concluded' || last.outcome !== endedAs) mismatch(run, `daemon killed after the job ended: pushed ${last?.state}/${last?.outcome}, QEMU says concluded/${endedAs}`);
    } else if (!(last?.state === 'concluded' && last.outcome === 'unknown')) {
      mismatch(run, `daemon killed mid-job: pushed ${last?.state}/${last?.outcome}, expected concluded/unknown`);
    }
    return;
  }
  const events = lab.oracle.events(plan.id, run.oracleMark);
  const expected = expectedStates(events, run.sent);
  report.transitionsCompared += expected.length;
  if (interrupted) {
    report.interrupted++;
    if (!isSubsequence(states, expected)) mismatch(run, `pushed ${states.join('>')} is not a subsequence of QEMU's ${expected.join('>')}`);
  } else if (states.join('>') !== expected.join('>') && (plan.pause !== undefined || plan.fault === 'stop') && sameSkeleton(states, expected)) {
    // QEMU does not say which pause is the user's when a drain blips next to it: the pause details
    // differ, everything else is equal. Counted and reported, not hidden.
    report.pauseAttributionDiffers++;
  } else if (states.join('>') !== expected.join('>')) {
    const t0 = run.startedAt;
    const qemu = events.map((e) => `${e.event === 'JOB_STATUS_CHANGE' ? e.data.status : e.event}@${e.receivedAt % 100_000}`).join(' ');
    const pauses = `pause@${run.sent.pauses.map((t) => t % 100_000).join(',')} resume@${run.sent.resumes.map((t) => t % 100_000).join(',')} cancel@${run.sent.cancels.map((t) => t % 100_000).join(',')}`;
    const trail = segments.flatMap((s) => s.trail).join(' ');
    mismatch(run, `pushed ${states.join('>')} but QEMU went ${expected.join('>')} (QEMU: ${qemu}; pauses ${pauses}; pushed: ${trail})`);
  }
  const outcome = expectedOutcome(events);
  const concluded = segments.flatMap((s) => (s.last.state === 'concluded' || s.last.state === 'dismissed' ? [s.last] : []));
  const final = concluded[concluded.length - 1];
  if (outcome && final && final.outcome !== undefined) {
    report.outcomesChecked++;
    if (final.outcome !== outcome) mismatch(run, `outcome pushed ${final.outcome}, QEMU says ${outcome}`);
    const pivotExpected = outcome === 'completed' && plan.ending.startsWith('complete') && (plan.kind === 'mirror' || plan.kind === 'active-commit');
    if ((plan.kind === 'mirror' || plan.kind === 'active-commit') && outcome === 'completed' && !interrupted && final.pivoted !== pivotExpected) {
      mismatch(run, `pivoted ${final.pivoted}, expected ${pivotExpected}`);
    }
  } else if (!interrupted && outcome) {
    mismatch(run, `no concluded state pushed (QEMU: ${outcome})`);
  }
}

/** The sequences without their pauses (and the repeats that removing them leaves). */
function sameSkeleton(a: readonly string[], b: readonly string[]): boolean {
  const skeleton = (seq: readonly string[]): string =>
    seq.filter((s) => s !== 'paused' && s !== 'standby').filter((s, i, all) => i === 0 || s !== all[i - 1]).join('>');
  return skeleton(a) === skeleton(b) && a.some((s) => s === 'paused' || s === 'standby');
}
