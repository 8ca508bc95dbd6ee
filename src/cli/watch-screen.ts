/**
 * What `watch` shows on a terminal: the screen drawn from the client's live job map within the
 * terminal's size (renderScreen, pure), and the alternate screen it is drawn on in place
 * (TerminalScreen), as `top` does. watch.ts only wires these to the client.
 */
import type { JobState } from '../generated/schema-types.js';
import { isTerminalState } from '../jobs/qemu-rules.js';
import { formatBytes, formatEta } from './remote.js';

const isFinished = (job: JobState): boolean => isTerminalState(job.state);

/** `mirror-4` before `mirror-34`. */
const natural = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

/** Active jobs by VM then id (natural order); finished ones after them, most recently finished first. */
export function orderJobs(jobs: Iterable<JobState>): { active: JobState[]; finished: JobState[] } {
  const byName = (a: JobState, b: JobState) => natural.compare(a.vm, b.vm) || natural.compare(a.id, b.id);
  const all = [...jobs];
  return {
    active: all.filter((j) => !isFinished(j)).sort(byName),
    finished: all.filter(isFinished).sort((a, b) => Date.parse(b.stateSince) - Date.parse(a.stateSince) || byName(a, b)),
  };
}

export const COLUMNS = ['VM', 'JOB', 'TYPE', 'STATE', 'READY', 'PROGRESS', 'RATE', 'ETA', 'OUTCOME', 'IN STATE'] as const;

/**
 * The ETA cell. A mirror at 100% that QEMU has not declared ready is converging (the last dirty
 * blocks, or the job's own settle window): no ETA applies, and a pivot sent now would fail.
 */
export function etaCell(job: JobState): string {
  const p = job.progress;
  if (job.state === 'running' && job.ready === false && p.total > 0 && p.current >= p.total) return 'converging';
  return formatEta(p.etaSeconds);
}

export function jobCells(job: JobState, now: number): string[] {
  return [
    job.stale ? `${job.vm} (stale)` : job.vm,
    job.id,
    job.type,
    job.pauseReason ? `${job.state}/${job.pauseReason}` : job.state,
    job.ready === null ? '?' : job.ready ? 'yes' : 'no',
    `${job.progress.percent.toFixed(1)}% of ${formatBytes(job.progress.total)}`,
    job.progress.rate === null ? '-' : `${formatBytes(job.progress.rate)}/s`,
    etaCell(job),
    job.outcome ? `${job.outcome}${job.pivoted ? ' (pivoted)' : ''}${job.error ? `: ${job.error}` : ''}` : '',
    `${Math.max(0, Math.round((now - Date.parse(job.stateSince)) / 1000))}s`,
  ];
}

export interface ScreenFacts {
  url: string;
  /** The connection's state, e.g. `connected` or `reconnecting in 2s (connection refused)`. */
  connection: string;
  /** The gateway said its jobs come from the simulator. */
  simulated?: boolean;
}

export interface ScreenSize {
  rows: number;
  columns: number;
}

/**
 * The whole screen, at most `size.rows` lines of at most `size.columns` characters: a header
 * (gateway, connection, VMs), the table's header, active jobs, then finished jobs as far as they
 * fit, and a last line counting what did not fit.
 */
export function renderScreen(
  jobs: Iterable<JobState>,
  vmStatus: ReadonlyMap<string, string>,
  facts: ScreenFacts,
  size: ScreenSize,
  now = Date.now(),
): string[] {
  const rows = Math.max(size.rows, 5);
  const clip = (line: string) => (line.length > size.columns ? `${line.slice(0, Math.max(0, size.columns - 1))}…` : line);
  const vms = [...vmStatus].sort(([a], [b]) => natural.compare(a, b)).map(([vm, status]) => `${vm}: ${status}`).join('   ');
  const head = [`${facts.url}  [${facts.connection}]${facts.simulated ? '  SIMULATED (not real QEMU)' : ''}`, vms || '(no VMs)', ''];

  const { active, finished } = orderJobs(jobs);
  const room = rows - head.length - 1; // the table's header
  const total = active.length + finished.length;
  // Everything fits, or one line is kept for the count of hidden jobs.
  const shown = total <= room ? [...active, ...finished] : [...active, ...finished].slice(0, Math.max(0, room - 1));
  const hiddenActive = Math.max(0, active.length - shown.length);
  const hiddenFinished = total - shown.length - hiddenActive;

  const cells = shown.map((job) => jobCells(job, now));
  const widths = COLUMNS.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (c: readonly string[]) => c.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd();
  const lines = [...head, line(COLUMNS), ...cells.map(line)];
  if (total === 0) lines.push('(no jobs yet)');
  if (hiddenActive + hiddenFinished > 0) {
    const parts = [hiddenActive > 0 ? `${hiddenActive} active` : '', hiddenFinished > 0 ? `${hiddenFinished} finished` : ''].filter(Boolean);
    lines.push(`… ${parts.join(' and ')} job${hiddenActive + hiddenFinished === 1 ? '' : 's'} not shown (terminal too small; filter with --vm, --state)`);
  }
  return lines.slice(0, rows).map(clip);
}

/** A terminal-like output stream (process.stdout). */
export interface ScreenStream {
  write(text: string): unknown;
  readonly rows?: number;
  readonly columns?: number;
  on?(event: 'resize', listener: () => void): unknown;
  off?(event: 'resize', listener: () => void): unknown;
}

const ENTER = '\x1b[?1049h\x1b[?25l'; // alternate screen, cursor hidden
const LEAVE = '\x1b[?25h\x1b[?1049l';
const HOME = '\x1b[H';
const CLEAR_LINE_END = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';

/** Draws whole screens in place on the alternate screen; redraws on resize; leaves it on close. */
export class TerminalScreen {
  private open = false;
  private readonly onResize = () => this.draw();

  constructor(
    private readonly out: ScreenStream,
    private readonly render: (size: ScreenSize) => string[],
  ) {}

  size(): ScreenSize {
    return { rows: this.out.rows ?? 24, columns: this.out.columns ?? 80 };
  }

  start(): void {
    if (this.open) return;
    this.open = true;
    this.out.write(ENTER);
    this.out.on?.('resize', this.onResize);
  }

  draw(): void {
    if (this.open) this.paint(this.render(this.size()));
  }

  close(): void {
    if (!this.open) return;
    this.open = false;
    this.out.off?.('resize', this.onResize);
    this.out.write(LEAVE);
  }

  private paint(lines: string[]): void {
    // Overwrite each line and clear its rest, then everything below: no flicker, no scrolling.
    this.out.write(`${HOME}${lines.map((l) => `${l}${CLEAR_LINE_END}`).join('\r\n')}${CLEAR_BELOW}`);
  }
}
