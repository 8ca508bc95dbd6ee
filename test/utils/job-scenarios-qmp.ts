/**
 * Small QMP readers for the scenario tests: one job's row from query-block-jobs / query-jobs, and waits
 * on it. They run on a lab monitor (never the engine's), so they observe QEMU independently.
 */
import type { QmpExecutor } from '../../src/lab/jobs.js';
import { waitUntil } from './job-scenarios.js';

/** The fields of BlockJobInfo the scenarios look at (QEMU 7.2 spelling). */
export interface BlockJobRow {
  device: string;
  type: string;
  status: string;
  len: number;
  offset: number;
  ready: boolean;
  paused: boolean;
  'io-status': string;
}

export interface JobInfoRow {
  id: string;
  status: string;
  'current-progress': number;
  'total-progress': number;
  error?: string;
}

export async function blockJob(qmp: QmpExecutor, jobId: string): Promise<BlockJobRow | undefined> {
  const rows = (await qmp.execute('query-block-jobs')) as BlockJobRow[];
  return rows.find((row) => row.device === jobId);
}

export async function jobInfo(qmp: QmpExecutor, jobId: string): Promise<JobInfoRow | undefined> {
  const rows = (await qmp.execute('query-jobs')) as JobInfoRow[];
  return rows.find((row) => row.id === jobId);
}

/** Polls query-block-jobs until `check` holds for the job's row; returns that row. */
export async function waitForBlockJob(
  qmp: QmpExecutor,
  jobId: string,
  what: string,
  check: (row: BlockJobRow) => boolean,
  timeoutMs = 30_000,
): Promise<BlockJobRow> {
  let last: BlockJobRow | undefined;
  return waitUntil(
    () => `${jobId}: ${what} (last row: ${JSON.stringify(last)})`,
    async () => {
      last = await blockJob(qmp, jobId);
      return last !== undefined && check(last) && last;
    },
    timeoutMs,
  );
}
