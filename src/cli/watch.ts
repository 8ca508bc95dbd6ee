/**
 * `blockjob-gateway watch ws://HOST:PORT [--vm NAME] [--job ID] [--state S] [--json]`: a live table
 * redrawn in place on a terminal (like `kubectl get -w`), or one JSON line per message when piped.
 */
import type { ConnectionStatus } from '../client/session.js';
import { GatewayError } from '../errors.js';
import { CLOSE_CODES, type CloseCode } from '../protocol/codes.js';
import type { JobState, JobStatusName, SubscriptionFilter } from '../generated/schema-types.js';
import { DEFAULT_CONNECT_TIMEOUT, TOKEN_ENV, cliClient, connectTimeout, formatBytes, formatEta, gatewayUrl, parseRemoteArgs, token } from './remote.js';

export const usage = `Usage: blockjob-gateway watch ws://HOST:PORT [options]

Shows every job live: a table redrawn in place on a terminal, one JSON line per message otherwise.

Options:
  --vm NAME       only this VM (repeatable)
  --job ID        only this job id (repeatable)
  --state STATE   only jobs in this state (repeatable): created, running, paused, ready, standby,
                  waiting, pending, aborting, concluded, dismissed
  --json          one JSON line per protocol message, even on a terminal
  --connect-timeout DURATION
                  count an attempt as failed when the gateway does not answer for this long
                  (default ${DEFAULT_CONNECT_TIMEOUT}); watch keeps retrying and says why on stderr
  --token TOKEN   bearer token (default: $${TOKEN_ENV})
  -h, --help      this text
`;

const STATES: readonly JobStatusName[] = ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending', 'aborting', 'concluded', 'dismissed'];

/** The table the terminal view draws: pure, so it is tested without a terminal. */
export function renderTable(jobs: Iterable<JobState>, vmStatus: ReadonlyMap<string, string>, now = Date.now()): string {
  const header = ['VM', 'JOB', 'TYPE', 'STATE', 'READY', 'PROGRESS', 'RATE', 'ETA', 'OUTCOME', 'AGE'];
  const rows = [...jobs]
    .sort((a, b) => a.vm.localeCompare(b.vm) || a.id.localeCompare(b.id))
    .map((job) => [
      job.stale ? `${job.vm} (stale)` : job.vm,
      job.id,
      job.type,
      job.pauseReason ? `${job.state}/${job.pauseReason}` : job.state,
      job.ready === null ? '?' : job.ready ? 'yes' : 'no',
      `${job.progress.percent.toFixed(1)}% of ${formatBytes(job.progress.total)}`,
      job.progress.rate === null ? '-' : `${formatBytes(job.progress.rate)}/s`,
      formatEta(job.progress.etaSeconds),
      job.outcome ? `${job.outcome}${job.pivoted ? ' (pivoted)' : ''}${job.error ? `: ${job.error}` : ''}` : '',
      `${Math.max(0, Math.round((now - Date.parse(job.stateSince)) / 1000))}s`,
    ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const vms = [...vmStatus].map(([vm, status]) => `${vm}: ${status}`).join('   ');
  return [vms || '(no VMs)', '', line(header), ...rows.map(line)].join('\n');
}

/** Finished jobs kept per VM: the gateway forgets them after its retention and says nothing, so we bound them here. */
const MAX_FINISHED_PER_VM = 50;

/** One line for what the connection is doing and, when it is not open, why. */
export function describeStatus(status: ConnectionStatus): string {
  switch (status.state) {
    case 'connecting':
      return `connecting to ${status.url}${status.attempt > 1 ? ` (attempt ${status.attempt})` : ''}`;
    case 'open':
      return `connected to ${status.url}`;
    case 'reconnecting': {
      const retry = `retrying${status.nextUrl !== status.url ? ` ${status.nextUrl}` : ''} in ${Math.max(1, Math.round(status.retryInMs / 1000))} s`;
      if (status.error) return `${status.error.message}; ${retry} (attempt ${status.attempt})`;
      const close = status.close;
      const name = close ? (CLOSE_CODES[close.code as CloseCode]?.name ?? (close.code === 1006 ? 'connection dropped' : '')) : '';
      return `connection to ${status.url} lost (${close?.code ?? '?'}${name ? ` ${name}` : ''}${close?.reason ? `: ${close.reason}` : ''}); resuming, ${retry}`;
    }
    case 'closed':
      return status.error ? `stopped: ${status.error.message}` : 'closed';
  }
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseRemoteArgs(
    argv,
    { vm: { type: 'string', multiple: true }, job: { type: 'string', multiple: true }, state: { type: 'string', multiple: true }, 'connect-timeout': { type: 'string' } },
    'watch',
    usage,
    2,
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  let url: string;
  try {
    url = gatewayUrl(positionals, 'watch');
    for (const s of values.state ?? []) {
      if (!STATES.includes(s as JobStatusName)) throw new GatewayError('GW_ERR_USAGE', `watch: unknown state '${s}'`);
    }
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${usage}`);
    return 2;
  }
  const filter: SubscriptionFilter = {};
  const nonEmpty = <T>(list: T[] | undefined): list is [T, ...T[]] => (list?.length ?? 0) > 0;
  if (nonEmpty(values.vm)) filter.vms = values.vm;
  if (nonEmpty(values.job)) filter.jobs = values.job;
  const states = values.state as JobStatusName[] | undefined;
  if (nonEmpty(states)) filter.states = states;

  const asJson = values.json || !process.stdout.isTTY;
  const client = cliClient(url, {
    token: token(values.token),
    ...(Object.keys(filter).length ? { filter } : {}),
    connectTimeoutMs: connectTimeout(values['connect-timeout'], undefined),
    maxFinishedJobsPerVm: MAX_FINISHED_PER_VM,
  });
  let connection = 'connecting';
  let redrawPending = false;
  const redraw = () => {
    if (redrawPending) return;
    redrawPending = true;
    setTimeout(() => {
      redrawPending = false;
      process.stdout.write(`\x1b[H\x1b[2J${url}  [${connection}]\n${renderTable(client.jobs(), client.vms)}\n`);
    }, 100);
  };
  if (asJson) client.on('message', (message) => process.stdout.write(`${JSON.stringify(message)}\n`));
  else for (const event of ['snapshot', 'transition', 'vm', 'progress', 'welcome'] as const) client.on(event, redraw);

  return new Promise<number>((resolve) => {
    client.on('status', (status) => {
      connection = describeStatus(status);
      // What it retries and why goes to stderr at once, also under the table.
      if (asJson || status.state === 'reconnecting') process.stderr.write(`watch: ${connection}\n`);
      if (!asJson) redraw();
    });
    client.on('error', (error) => {
      process.stderr.write(`watch: ${error.message}\n`);
      resolve(3);
    });
    const stop = () => {
      client.close();
      resolve(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    client.start();
  });
}
