// The recorded transcripts are evidence: each must parse, name the QEMU it came from, and show only
// the job status transitions QEMU's own state machine allows (JobSTT in qemu/job.c).
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JOB_STT as MODEL_JOB_STT } from '../unit/jobs/qemu-job-model.js';
import { fixturePath, loadTranscript, transcriptEvents, transcriptGreeting } from '../utils/transcript.js';

/**
 * Allowed JOB_STATUS_CHANGE transitions: the tests' own JobSTT (independent of the engine's), from
 * 'undefined' (before 'created'), and from 'null' to a new job that reuses the id.
 */
const JOB_STT: Record<string, readonly string[]> = { undefined: ['created'], ...MODEL_JOB_STT, null: ['created'] };

const fixtures = readdirSync(new URL('../fixtures/', import.meta.url))
  .filter((file) => file.endsWith('.jsonl'))
  .map((file) => file.replace(/\.jsonl$/, ''));

describe('recorded QMP transcripts', () => {
  it('exist', () => {
    expect(fixtures).toEqual(expect.arrayContaining(['mirror-complete', 'mirror-ready-window', 'mirror-cancel', 'backup-blip', 'command-errors']));
  });

  it.each(fixtures)('%s: names its QEMU, greets first, pairs every command with one reply', (name) => {
    const transcript = loadTranscript(fixturePath(name));
    expect(transcript.meta.scenario).toBe(name);
    expect(transcript.meta.qemu).toMatch(/^\d+\.\d+\.\d+$/);
    expect(transcript.messages[0]?.msg).toEqual(transcriptGreeting(transcript));
    const sent = transcript.messages.filter((entry) => entry.dir === 'out').map((entry) => entry.msg.id);
    const answered = transcript.messages.filter((entry) => entry.dir === 'in' && ('return' in entry.msg || 'error' in entry.msg)).map((entry) => entry.msg.id);
    expect(answered.sort()).toEqual(sent.sort());
  });

  it.each(fixtures)('%s: every job status change is one QEMU allows', (name) => {
    const current = new Map<string, string>();
    for (const { event, data } of transcriptEvents(loadTranscript(fixturePath(name)))) {
      if (event !== 'JOB_STATUS_CHANGE') continue;
      const id = String(data.id);
      const from = current.get(id) ?? 'undefined';
      expect(JOB_STT[from], `${id}: ${from} -> ${String(data.status)}`).toContain(data.status);
      current.set(id, String(data.status));
    }
    expect([...current.values()].every((status) => status === 'null')).toBe(true);
  });

  it('mirror-ready-window shows offset == len with ready=false before the job turned ready', () => {
    const transcript = loadTranscript(fixturePath('mirror-ready-window'));
    const readyAt = transcript.messages.findIndex((entry) => entry.msg.event === 'JOB_STATUS_CHANGE' && (entry.msg.data as { status: string }).status === 'ready');
    const windowPolls = transcript.messages.slice(0, readyAt).filter((entry) => {
      const jobs = entry.msg.return;
      if (!Array.isArray(jobs) || jobs.length !== 1) return false;
      const job = jobs[0] as { len: number; offset: number; ready: boolean };
      return job.offset === job.len && job.ready === false;
    });
    expect(readyAt).toBeGreaterThan(0);
    expect(windowPolls.length).toBeGreaterThan(0);
  });
});
