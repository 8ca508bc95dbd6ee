/**
 * `blockjob-gateway watch ws://HOST:PORT [--vm NAME] [--job ID] [--state S] [--json]`: a live table
 * redrawn in place on a terminal (like `kubectl get -w`), or one JSON line per message when piped.
 */
import { ResumeClient } from '../client/resume-client.js';
import { createNodeSocket } from '../client/node-socket.js';
import { GatewayError } from '../errors.js';
import type { JobState, JobStatusName, ServerMessage, SubscriptionFilter } from '../generated/schema-types.js';
import { TOKEN_ENV, formatBytes, formatEta, gatewayUrl, parseRemoteArgs, token } from './remote.js';

export const usage = `Usage: blockjob-gateway watch ws://HOST:PORT [options]

Shows every job live: a table redrawn in place on a terminal, one JSON line per message otherwise.

Options:
  --vm NAME       only this VM (repeatable)
  --job ID        only this job id (repeatable)
  --state STATE   only jobs in this state (repeatable): created, running, paused, ready, standby,
                  waiting, pending, aborting, concluded, dismissed
  --json          one JSON line per protocol message, even on a terminal
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

function forgetOldFinished(jobs: Map<string, JobState>, vm: string): void {
  const finished = [...jobs].filter(([, j]) => j.vm === vm && (j.state === 'concluded' || j.state === 'dismissed'));
  if (finished.length <= MAX_FINISHED_PER_VM) return;
  finished.sort(([, a], [, b]) => Date.parse(a.stateSince) - Date.parse(b.stateSince));
  for (const [k] of finished.slice(0, finished.length - MAX_FINISHED_PER_VM)) jobs.delete(k);
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseRemoteArgs(
    argv,
    { vm: { type: 'string', multiple: true }, job: { type: 'string', multiple: true }, state: { type: 'string', multiple: true } },
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
  const jobs = new Map<string, JobState>();
  const vmStatus = new Map<string, string>();
  let connection = 'connecting';
  let redrawPending = false;
  const redraw = () => {
    if (redrawPending) return;
    redrawPending = true;
    setTimeout(() => {
      redrawPending = false;
      process.stdout.write(`\x1b[H\x1b[2J${url}  [${connection}]\n${renderTable(jobs.values(), vmStatus)}\n`);
    }, 100);
  };
  const key = (vm: string, id: string) => `${vm}\u0000${id}`;
  const onMessage = (message: ServerMessage) => {
    if (asJson) {
      process.stdout.write(`${JSON.stringify(message)}\n`);
      return;
    }
    switch (message.type) {
      case 'welcome':
        for (const v of message.vms) vmStatus.set(v.vm, v.status);
        break;
      case 'subscribed':
        // A snapshot replaces what we knew of that VM.
        for (const vm of Object.keys(message.streams)) {
          if (message.streams[vm]?.mode === 'snapshot') for (const [k, j] of jobs) if (j.vm === vm) jobs.delete(k);
        }
        break;
      case 'event':
        // The job no longer matches our filter (say it left `--state running`): it leaves the table.
        if (message.leftFilter) {
          jobs.delete(key(message.vm, message.job.id));
          break;
        }
        jobs.set(key(message.vm, message.job.id), message.job);
        forgetOldFinished(jobs, message.vm);
        break;
      case 'state':
        jobs.set(key(message.vm, message.job.id), message.job);
        forgetOldFinished(jobs, message.vm);
        break;
      case 'vm':
        vmStatus.set(message.vm, message.status);
        break;
      case 'progress': {
        const job = jobs.get(key(message.vm, message.job));
        if (job) jobs.set(key(message.vm, message.job), { ...job, progress: message.progress });
        break;
      }
      default:
        return;
    }
    redraw();
  };

  return new Promise<number>((resolve) => {
    const bearer = token(values.token);
    const client = new ResumeClient({
      url,
      createSocket: createNodeSocket,
      ...(bearer ? { token: bearer } : {}),
      ...(Object.keys(filter).length ? { filter } : {}),
      onMessage,
      onStatus: (status, detail) => {
        connection = detail?.code ? `${status} (${detail.code})` : status;
        if (asJson) process.stderr.write(`watch: ${connection}\n`);
        else redraw();
      },
      onFatal: (close) => {
        process.stderr.write(`watch: the gateway refused the connection: ${close.code} ${close.reason}\n`);
        resolve(3);
      },
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
