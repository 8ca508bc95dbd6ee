/**
 * `blockjob-gateway wait ws://HOST:PORT --vm NAME --job ID --for ready|concluded [--timeout 10m]`:
 * the one command that replaces a shell polling loop. It subscribes to the one job, so the snapshot
 * answers at once when the job is already ready or concluded, and it resumes across gateway restarts.
 */
import { ResumeClient, type ClientStatus } from '../client/resume-client.js';
import { createNodeSocket } from '../client/node-socket.js';
import { GatewayError, UsageError } from '../errors.js';
import type { JobState, ServerMessage } from '../generated/schema-types.js';
import { TOKEN_ENV, describeJob, gatewayUrl, parseDuration, parseRemoteArgs, requireFlag, token } from './remote.js';

export const WAIT_EXIT = { reached: 0, endedOtherwise: 1, timeout: 2, connection: 3, usage: 4 } as const;

export const usage = `Usage: blockjob-gateway wait ws://HOST:PORT --vm NAME --job ID --for ready|concluded [options]

Waits until a job is ready to complete (--for ready) or has concluded (--for concluded).

Options:
  --vm NAME              the VM (monitor name) of the job (required)
  --job ID               the QEMU job id (required)
  --for ready|concluded  what to wait for (required)
  --timeout DURATION     give up after this long, e.g. 90s, 10m (default: wait forever)
  --connect-timeout DURATION
                         give up when the gateway cannot be reached at all for this long (default 30s)
  --token TOKEN          bearer token (default: $${TOKEN_ENV})
  --json                 print the final job state as JSON instead of a line of text
  -h, --help             this text

Exit codes: 0 reached (for concluded: outcome completed), 1 the job ended otherwise (failed,
cancelled, unknown; the outcome is printed), 2 timeout, 3 connection or auth failure, 4 usage error.
`;

type Target = 'ready' | 'concluded';

interface Verdict {
  code: number;
  message: string;
}

/** Decide from one job state whether the wait is over. Pure, so it is tested on its own. */
export function judge(job: JobState, target: Target): Verdict | undefined {
  const ended = job.state === 'concluded' || job.state === 'dismissed';
  if (target === 'ready') {
    if (job.ready === true && !ended) return { code: WAIT_EXIT.reached, message: `ready: ${describeJob(job)}` };
    if (ended) {
      return {
        code: WAIT_EXIT.endedOtherwise,
        message: `job ended before it was ready to complete (outcome ${job.outcome ?? 'unknown'}): ${describeJob(job)}`,
      };
    }
    return undefined;
  }
  if (!ended) return undefined;
  return job.outcome === 'completed'
    ? { code: WAIT_EXIT.reached, message: `concluded: ${describeJob(job)}` }
    : { code: WAIT_EXIT.endedOtherwise, message: `job ended with outcome ${job.outcome ?? 'unknown'}: ${describeJob(job)}` };
}

export async function run(argv: string[]): Promise<number> {
  const parsed = parseRemoteArgs(
    argv,
    { vm: { type: 'string' }, job: { type: 'string' }, for: { type: 'string' }, timeout: { type: 'string' }, 'connect-timeout': { type: 'string' } },
    'wait',
    usage,
    WAIT_EXIT.usage,
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  let url: string, vm: string, jobId: string, timeoutMs: number | undefined, connectTimeoutMs: number;
  try {
    url = gatewayUrl(positionals, 'wait');
    vm = requireFlag(values.vm, '--vm', 'wait');
    jobId = requireFlag(values.job, '--job', 'wait');
    const target = requireFlag(values.for, '--for', 'wait');
    if (target !== 'ready' && target !== 'concluded') throw new UsageError(`wait: --for must be ready or concluded, not '${target}'`);
    timeoutMs = values.timeout === undefined ? undefined : parseDuration(values.timeout, '--timeout');
    connectTimeoutMs = parseDuration(values['connect-timeout'] ?? '30s', '--connect-timeout');
  } catch (err) {
    if (err instanceof GatewayError) {
      process.stderr.write(`${err.message}\n\n${usage}`);
      return WAIT_EXIT.usage;
    }
    throw err;
  }
  const target = values.for as Target;
  const bearer = token(values.token);

  return new Promise<number>((resolve) => {
    let everOpened = false;
    let lastJob: JobState | undefined;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = (code: number, message: string, job?: JobState) => {
      for (const t of timers) clearTimeout(t);
      client.close();
      if (values.json) {
        if (job) process.stdout.write(`${JSON.stringify(job)}\n`);
        process.stderr.write(`${message}\n`);
      } else {
        (code === WAIT_EXIT.reached ? process.stdout : process.stderr).write(`${message}\n`);
      }
      resolve(code);
    };
    const consider = (message: ServerMessage) => {
      if ((message.type === 'state' || message.type === 'event') && message.job.id === jobId && message.vm === vm) {
        lastJob = message.job;
        const verdict = judge(message.job, target);
        if (verdict) finish(verdict.code, verdict.message, message.job);
      } else if (message.type === 'synced' && message.vm === vm && !lastJob) {
        process.stderr.write(`wait: ${vm}/${jobId} is not known to the gateway yet; waiting for it to appear\n`);
      } else if (message.type === 'subscribed' && !(vm in message.streams)) {
        finish(WAIT_EXIT.endedOtherwise, `wait: the gateway has no VM named '${vm}' (or this token may not see it)`);
      } else if (message.type === 'error') {
        finish(WAIT_EXIT.connection, `wait: the gateway refused the subscription: ${message.code}: ${message.message}`);
      }
    };
    const onStatus = (status: ClientStatus, detail?: { code?: number; reason?: string }) => {
      if (status === 'open') everOpened = true;
      if (status === 'reconnecting' && everOpened) {
        process.stderr.write(`wait: connection lost (${detail?.code ?? '?'}), resuming...\n`);
      }
    };
    const client = new ResumeClient({
      url,
      createSocket: createNodeSocket,
      ...(bearer ? { token: bearer } : {}),
      filter: { vms: [vm], jobs: [jobId] },
      progressIntervalMs: 0,
      onMessage: consider,
      onStatus,
      onFatal: (close) => finish(WAIT_EXIT.connection, `wait: the gateway refused the connection: ${close.code} ${close.reason}`),
    });
    timers.push(
      setTimeout(() => {
        if (!everOpened) finish(WAIT_EXIT.connection, `wait: could not reach the gateway at ${url} within ${connectTimeoutMs} ms`);
      }, connectTimeoutMs),
    );
    if (timeoutMs !== undefined) {
      timers.push(
        setTimeout(
          () => finish(WAIT_EXIT.timeout, `wait: timed out after ${timeoutMs} ms${lastJob ? `; last state: ${describeJob(lastJob)}` : ''}`, lastJob),
          timeoutMs,
        ),
      );
    }
    client.start();
  });
}
