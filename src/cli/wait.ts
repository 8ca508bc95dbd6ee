/**
 * `blockjob-gateway wait ws://HOST:PORT --vm NAME --job ID --for ready|concluded [--timeout 10m]`:
 * the one command that replaces a shell polling loop. It subscribes to the one job through the client
 * library, so the snapshot answers at once when the job is already ready or concluded, and it resumes
 * across gateway restarts. It prints exactly one result.
 */
import { wasReady } from '../client/waiters.js';
import { ClientError, ClientJobEndedError, ClientSubscribeError, ClientTimeoutError } from '../client/errors.js';
import { GatewayError, UsageError } from '../errors.js';
import type { JobState } from '../generated/schema-types.js';
import { isEnded } from '../protocol/job-rules.js';
import { DEFAULT_CONNECT_TIMEOUT, TOKEN_ENV, cliClient, connectTimeout, describeJob, gatewayUrl, parseDuration, parseRemoteArgs, requireFlag, token, usageFailure, USAGE_EXIT } from './remote.js';

/** Usage errors exit 2 like every command; a timeout exits 124, as timeout(1) does. */
export const WAIT_EXIT = { reached: 0, endedOtherwise: 1, usage: USAGE_EXIT, connection: 3, timeout: 124 } as const;

export const usage = `Usage: blockjob-gateway wait ws://HOST:PORT --vm NAME --job ID --for ready|concluded [options]

Waits until a job is ready to complete (--for ready) or has concluded (--for concluded).

Options:
  --vm NAME              the VM (monitor name) of the job (required)
  --job ID               the QEMU job id (required)
  --for ready|concluded  what to wait for (required)
  --timeout DURATION     give up after this long, e.g. 90s, 10m (default: wait forever; see below)
  --connect-timeout DURATION
                         give up when the gateway does not answer for this long (default ${DEFAULT_CONNECT_TIMEOUT},
                         never more than --timeout); a refused connection fails at once
  --token TOKEN          bearer token (default: $${TOKEN_ENV})
  --json                 print the final job state as JSON instead of a line of text
  -h, --help             this text

A job that does not exist yet is waited for: start wait before the job so that nothing is missed
(it is seen from its first state). So a wrong --vm/--job, or a job that never starts, waits until
--timeout; there is no default because only you know how long a copy may take. Scripts should give
--timeout. When the gateway does not know the job yet, wait says so on stderr at once.

Exit codes: 0 reached (for concluded: outcome completed), 1 the job is not (or no longer) ready or
ended otherwise: it ended before it was ready, or it was ready and has since concluded (the message
says which, with its outcome and whether it pivoted), or it failed, was cancelled, vanished,
2 usage error, 3 connection or auth failure (reported at once, with its cause), 124 timeout.
`;

type Target = 'ready' | 'concluded';

interface Verdict {
  code: number;
  message: string;
}

/**
 * Decide from one job state whether the wait is over. Pure, so it is tested on its own. `sawReady`:
 * the job was seen ready before it ended (the client library tracks it).
 */
export function judge(job: JobState, target: Target, sawReady = false): Verdict | undefined {
  const ended = isEnded(job);
  if (target === 'ready') {
    if (job.ready === true && !ended) return { code: WAIT_EXIT.reached, message: `ready: ${describeJob(job)}` };
    if (!ended) return undefined;
    if (sawReady || wasReady(job)) {
      const pivot = job.pivoted === undefined ? '' : job.pivoted ? ', pivoted' : ', not pivoted';
      return {
        code: WAIT_EXIT.endedOtherwise,
        message: `job was ready and has since concluded: outcome ${job.outcome ?? 'unknown'}${pivot}: ${describeJob(job)}`,
      };
    }
    return {
      code: WAIT_EXIT.endedOtherwise,
      message: `job ended before it was ready to complete (outcome ${job.outcome ?? 'unknown'}): ${describeJob(job)}`,
    };
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
    connectTimeoutMs = connectTimeout(values['connect-timeout'], timeoutMs);
  } catch (err) {
    if (err instanceof GatewayError) return usageFailure('wait', err);
    throw err;
  }
  const target = values.for as Target;
  const started = Date.now();
  const client = cliClient(url, { token: token(values.token), filter: { vms: [vm], jobs: [jobId] }, connectTimeoutMs, progressIntervalMs: 0 });
  client.on('status', (status) => {
    if (status.state === 'reconnecting' && status.wasOpen) process.stderr.write(`wait: connection lost (${status.close?.code ?? '?'}), resuming...\n`);
  });
  const print = (code: number, message: string, job?: JobState): number => {
    if (values.json) {
      if (job) process.stdout.write(`${JSON.stringify(job)}\n`);
      process.stderr.write(`${message}\n`);
    } else {
      (code === WAIT_EXIT.reached ? process.stdout : process.stderr).write(`${message}\n`);
    }
    return code;
  };
  client.start();
  try {
    await client.synced({ failFast: true, timeoutMs: connectTimeoutMs });
    if (!client.job(vm, jobId)) process.stderr.write(`wait: ${vm}/${jobId} is not known to the gateway yet; waiting for it to appear\n`);
    const remaining = timeoutMs === undefined ? undefined : Math.max(0, timeoutMs - (Date.now() - started));
    const job = await client.waitFor(vm, jobId, target, remaining === undefined ? {} : { timeoutMs: remaining });
    const verdict = judge(job, target)!;
    return print(verdict.code, verdict.message, job);
  } catch (error) {
    if (error instanceof ClientJobEndedError) {
      const verdict = judge(error.job, target, error.wasReady)!;
      return print(verdict.code, verdict.message, error.job);
    }
    if (error instanceof ClientTimeoutError) {
      const offline = client.status.state === 'open' ? '' : ' (the gateway connection is down, retrying)';
      return print(WAIT_EXIT.timeout, `wait: timed out after ${timeoutMs} ms${offline}${error.job ? `; last state: ${describeJob(error.job)}` : ''}`, error.job);
    }
    if (error instanceof ClientSubscribeError && error.protocolCode === 'unknown_vm') {
      return print(WAIT_EXIT.endedOtherwise, `wait: the gateway has no VM named '${vm}'`);
    }
    if (error instanceof ClientError) return print(WAIT_EXIT.connection, `wait: ${error.message}`);
    throw error;
  } finally {
    client.close();
  }
}
