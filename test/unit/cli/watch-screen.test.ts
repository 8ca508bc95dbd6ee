/**
 * What `watch` draws on a terminal: active jobs first in natural order, finished ones after and
 * trimmed to the terminal's height with a count of those hidden, every line within its width.
 */
import { describe, expect, it } from 'vitest';
import { etaCell, orderJobs, renderScreen, TerminalScreen, type ScreenStream } from '../../../src/cli/watch-screen.js';
import type { JobState } from '../../../src/generated/schema-types.js';

const at = '2026-11-25T00:00:00.000Z';
const job = (id: string, fields: Partial<JobState> = {}): JobState => ({
  vm: 'vm1', id, incarnation: 1, type: 'mirror', state: 'running', ready: false, stale: false,
  progress: { current: 32, total: 64, percent: 50, rate: 1048576, etaSeconds: 3 },
  updatedAt: at, stateSince: at, source: 'event', ...fields,
});
const finished = (id: string, second: number, fields: Partial<JobState> = {}): JobState =>
  job(id, { state: 'concluded', outcome: 'completed', stateSince: `2026-11-25T00:00:${String(second).padStart(2, '0')}.000Z`, ...fields });

const vms = new Map([['vm1', 'connected']]);
const facts = { url: 'ws://127.0.0.1:8080', connection: 'connected' };
const now = Date.parse('2026-11-25T00:01:00Z');

describe('watch screen', () => {
  it('orders active jobs first, by VM then id in natural order (mirror-4 before mirror-34), finished after, newest first', () => {
    const { active, finished: done } = orderJobs([
      job('mirror-34'), finished('old', 1), job('mirror-4'), job('mirror-4', { vm: 'vm10' }), job('mirror-4', { vm: 'vm2' }), finished('new', 9),
    ]);
    expect(active.map((j) => `${j.vm}/${j.id}`)).toEqual(['vm1/mirror-4', 'vm1/mirror-34', 'vm2/mirror-4', 'vm10/mirror-4']);
    expect(done.map((j) => j.id)).toEqual(['new', 'old']);
  });

  it('fits 60 jobs into a 20-line terminal: header and every active job shown, finished trimmed with a count', () => {
    const jobs = [...Array.from({ length: 10 }, (_, i) => job(`mirror-${i}`)), ...Array.from({ length: 50 }, (_, i) => finished(`done-${i}`, i % 60))];
    const lines = renderScreen(jobs, vms, facts, { rows: 20, columns: 100 }, now);
    expect(lines.length).toBe(20);
    expect(lines[0]).toBe('ws://127.0.0.1:8080  [connected]');
    expect(lines[1]).toBe('vm1: connected');
    expect(lines[3]).toMatch(/^VM\s+JOB\s+TYPE\s+STATE\s+READY\s+PROGRESS\s+RATE\s+ETA\s+OUTCOME\s+IN STATE$/);
    expect(lines.slice(4, 14).map((l) => l.split(/\s+/)[1])).toEqual(Array.from({ length: 10 }, (_, i) => `mirror-${i}`));
    expect(lines.slice(14, 19).every((l) => /concluded/.test(l))).toBe(true);
    expect(lines[19]).toMatch(/^… 45 finished jobs not shown/);
    expect(lines.every((l) => l.length <= 100)).toBe(true);
  });

  it('says how many active jobs did not fit when even those overflow, and clips wide lines', () => {
    const lines = renderScreen(Array.from({ length: 30 }, (_, i) => job(`m${i}`)), vms, facts, { rows: 10, columns: 40 }, now);
    expect(lines.length).toBe(10);
    expect(lines[9]).toMatch(/^… 25 active jobs not shown/);
    expect(lines.every((l) => l.length <= 40)).toBe(true);
    expect(lines[4]!.endsWith('…')).toBe(true);
  });

  it('shows everything when it fits, and labels a simulated gateway', () => {
    const lines = renderScreen([job('a'), finished('b', 1)], vms, { ...facts, simulated: true }, { rows: 40, columns: 200 }, now);
    expect(lines).toHaveLength(6);
    expect(lines[0]).toContain('SIMULATED');
    expect(lines.some((l) => l.startsWith('…'))).toBe(false);
  });

  it('shows a mirror at 100% that is not ready yet as converging, not ETA 0s', () => {
    const full = { current: 64, total: 64, percent: 100, rate: 1048576, etaSeconds: 0 };
    expect(etaCell(job('a', { progress: full }))).toBe('converging');
    expect(etaCell(job('a', { progress: full, state: 'ready', ready: true }))).toBe('0s');
    expect(etaCell(job('a'))).toBe('3s');
  });
});

describe('terminal screen', () => {
  function recorder(rows: number, columns: number) {
    const writes: string[] = [];
    const listeners: (() => void)[] = [];
    const out: ScreenStream & { rows: number; columns: number } = {
      rows, columns,
      write: (text: string) => writes.push(text),
      on: (_event, listener) => listeners.push(listener),
      off: (_event, listener) => listeners.splice(listeners.indexOf(listener), 1),
    };
    return { out, writes, resize: (r: number) => { out.rows = r; for (const l of [...listeners]) l(); }, listeners };
  }

  it('draws in place on the alternate screen, redraws at the new size on resize, and restores the terminal on close', () => {
    const { out, writes, resize, listeners } = recorder(5, 80);
    const screen = new TerminalScreen(out, (size) => Array.from({ length: size.rows }, (_, i) => `line ${i}`));
    screen.start();
    screen.draw();
    resize(3);
    screen.close();
    screen.draw(); // after close: nothing
    expect(writes[0]).toBe('\x1b[?1049h\x1b[?25l');
    expect(writes[1]).toBe('\x1b[Hline 0\x1b[K\r\nline 1\x1b[K\r\nline 2\x1b[K\r\nline 3\x1b[K\r\nline 4\x1b[K\x1b[J');
    expect(writes[2]).toBe('\x1b[Hline 0\x1b[K\r\nline 1\x1b[K\r\nline 2\x1b[K\x1b[J');
    expect(writes.slice(3)).toEqual(['\x1b[?25h\x1b[?1049l']);
    expect(listeners).toEqual([]);
  });
});
