/**
 * `blockjob-gateway complete|cancel|pause|resume|set-speed|finalize|dismiss ws://HOST:PORT --vm NAME
 * --job ID [...]`: the protocol's `command` message from a shell, through the client library, one
 * subcommand per action the protocol has. `complete` waits for the job to be truly ready by default.
 * When another client got there first (two completes of one job), the loser reports what happened to
 * the job, not QEMU's "Job not found".
 */
import type { GatewayClient } from '../client/gateway-client.js';
import { ClientError, ClientSubscribeError } from '../client/errors.js';
import { isEnded } from '../protocol/job-rules.js';
import { GatewayError, UsageError } from '../errors.js';
import type { CommandAction, JobState, ResultFailure, ResultMessage } from '../generated/schema-types.js';
import { commandDefaults } from '../protocol/messages.js';
import { DEFAULT_CONNECT_TIMEOUT, TOKEN_ENV, cliClient, connectTimeout, describeJob, gatewayUrl, parseDuration, parseRemoteArgs, requireFlag, token, usageFailure } from './remote.js';

export const CONTROL_ACTIONS = ['complete', 'cancel', 'pause', 'resume', 'set-speed', 'finalize', 'dismiss'] as const satisfies readonly CommandAction[];
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

const SPEED_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `--speed`: bytes/s as a whole number, or with a binary unit (`8M`, `8MiB`, `512k`); 0 = unlimited. */
export function parseSpeed(text: string): number {
  const m = /^(\d+)\s*(?:([kmgt])(?:i?b)?)?(?:\/s)?$/i.exec(text.trim());
  const bytes = m ? Number(m[1]) * SPEED_UNITS[(m[2] ?? '').toLowerCase()]! : NaN;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`set-speed: --speed: '${text}' is not a speed in bytes/s (e.g. 0, 1048576, 8M, 512KiB)`);
  return bytes;
}

export const usage = (action: string) => `Usage: blockjob-gateway ${action} ws://HOST:PORT --vm NAME --job ID [options]

Sends '${action}' for one job through the gateway and prints the result.

Options:
  --vm NAME                   the VM (required)
  --job ID                    the job id (required)
${action === 'complete' ? '  --when ready|now            wait until the job is ready (default) or answer not_ready now\n' : ''}\
  --await accepted|concluded  answer when QEMU accepted the verb (default) or when the job concluded
${action === 'cancel' ? '  --force                     force (no completion, no pivot), even after ready\n' : ''}\
${action === 'set-speed' ? '  --speed BYTES/S             the new limit (required): bytes/s, or 8M, 512KiB (binary units); 0 = unlimited\n' : ''}\
  --timeout DURATION          give up waiting after this long (default ${commandDefaults().timeoutMs / 60_000}m)
  --connect-timeout DURATION  give up when the gateway does not answer for this long (default ${DEFAULT_CONNECT_TIMEOUT},
                              never more than --timeout); a refused connection fails at once
  --token TOKEN               bearer token with the control scope (default: $${TOKEN_ENV})
  --json                      print the result message as JSON
  -h, --help                  this text

Exit codes: 0 ok; also 0 when another client completed (cancelled) the job first and it ended as
this command asks: complete -> outcome completed and, for a mirror or active commit, pivoted; cancel
-> outcome cancelled (or completed without pivot). The output then says "completed by another client"
with the job's final state (--json: the result with the final job and "completedBy"/"cancelledBy"),
so a script asking "is it pivoted?" gets the truth. 1 the gateway answered with an error (its code is
printed) and the job did not end as asked, 3 connection or auth failure (reported at once, with its
cause; if the connection dropped after sending, the outcome is unknown: check the job), 2 usage.
`;

export function runner(action: ControlAction) {
  return (argv: string[]) => run(action, argv);
}

export async function run(action: ControlAction, argv: string[]): Promise<number> {
  const parsed = parseRemoteArgs(
    argv,
    {
      vm: { type: 'string' },
      job: { type: 'string' },
      // Only the verbs that take them: anything else is an unknown flag.
      ...(action === 'complete' ? { when: { type: 'string' } } : {}),
      await: { type: 'string' },
      ...(action === 'cancel' ? { force: { type: 'boolean', default: false } } : {}),
      ...(action === 'set-speed' ? { speed: { type: 'string' } } : {}),
      timeout: { type: 'string' },
      'connect-timeout': { type: 'string' },
    },
    action,
    usage(action),
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  let url: string, vm: string, job: string, timeoutMs: number, connectTimeoutMs: number, speed: number | undefined;
  try {
    url = gatewayUrl(positionals, action);
    vm = requireFlag(values.vm, '--vm', action);
    job = requireFlag(values.job, '--job', action);
    timeoutMs = values.timeout !== undefined ? parseDuration(values.timeout, '--timeout') : commandDefaults().timeoutMs;
    connectTimeoutMs = connectTimeout(values['connect-timeout'], timeoutMs);
    speed = action === 'set-speed' ? parseSpeed(requireFlag(values.speed as string | undefined, '--speed', action)) : undefined;
    if (values.when !== undefined && values.when !== 'ready' && values.when !== 'now') throw new UsageError(`${action}: --when must be ready or now`);
    if (values.await !== undefined && values.await !== 'accepted' && values.await !== 'concluded') throw new UsageError(`${action}: --await must be accepted or concluded`);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    return usageFailure(action, err);
  }
  const command = {
    vm,
    job,
    action,
    timeoutMs, // always: it is also the client's own deadline for the answer
    // Other unset fields are left to the gateway, which applies the schema's defaults.
    ...(action === 'complete' && values.when !== undefined ? { when: values.when as 'ready' | 'now' } : {}),
    ...(values.await ? { await: values.await as 'accepted' | 'concluded' } : {}),
    ...(action === 'cancel' && values.force === true ? { force: true } : {}),
    ...(speed !== undefined ? { speed } : {}),
  };
  const started = Date.now();
  const client = cliClient(url, { token: token(values.token), filter: { vms: [vm], jobs: [job] }, connectTimeoutMs, progressIntervalMs: 0 });
  const print = (code: number, text: string): number => {
    (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
    return code;
  };
  client.start();
  try {
    await client.synced({ failFast: true, timeoutMs: connectTimeoutMs });
    const result = await client.command(command);
    if (result.ok) return print(0, values.json ? JSON.stringify(result) : `${action}: ok: ${describeJob(result.job)}`);
    const final = await endedByOther(client, action, vm, job, result, Math.max(0, timeoutMs - (Date.now() - started)));
    if (final) {
      const by = action === 'complete' ? 'completedBy' : 'cancelledBy';
      const verb = action === 'complete' ? 'completed' : 'cancelled';
      return print(0, values.json ? JSON.stringify({ ...result, job: final, [by]: 'another client' }) : `${action}: already ${verb} by another client: ${describeJob(final)}`);
    }
    if (values.json) return print(1, JSON.stringify(result));
    const qmp = result.error.qmp ? ` (QEMU ${result.error.qmp.class}: ${result.error.qmp.desc})` : '';
    return print(1, `${action}: ${result.error.code}: ${result.error.message}${qmp}`);
  } catch (error) {
    if (error instanceof ClientSubscribeError && error.protocolCode === 'unknown_vm') return print(1, `${action}: unknown_vm: ${error.message}`);
    if (error instanceof ClientError) return print(3, `${action}: ${error.message}`);
    throw error;
  } finally {
    client.close();
  }
}

/** Refusals that can mean "someone else's verb got there first": the job is ending or gone. */
const RACE_CODES: ReadonlySet<string> = new Set(['qmp_error', 'job_ended', 'unknown_job', 'verb_not_allowed']);
/** How long a loser waits for the job it lost to conclude (it is normally a matter of milliseconds). */
const SETTLE_MS = 30_000;

/** Whether a job's end is what `action` asks for. */
export function endedAsAsked(action: ControlAction, job: JobState): boolean {
  if (!isEnded(job)) return false;
  if (action === 'complete') return job.outcome === 'completed' && job.pivoted !== false;
  if (action === 'cancel') return job.outcome === 'cancelled' || (job.outcome === 'completed' && job.pivoted === false);
  return false;
}

/**
 * After a refused complete or cancel: the job's final state when another client's verb ended it as
 * this one asked, else undefined. A job on its way out (waiting, pending, aborting, or gone from QEMU)
 * is followed until it concludes.
 */
async function endedByOther(client: GatewayClient, action: ControlAction, vm: string, id: string, result: ResultFailure, budgetMs: number): Promise<JobState | undefined> {
  if ((action !== 'complete' && action !== 'cancel') || !RACE_CODES.has(result.error.code)) return undefined;
  const known = client.job(vm, id) ?? result.job;
  let final: JobState | undefined = known && isEnded(known) ? known : undefined;
  const leaving = (known && ['waiting', 'pending', 'aborting'].includes(known.state)) || /not found/i.test(result.error.qmp?.desc ?? '');
  if (!final && leaving) {
    final = await client.waitFor(vm, id, 'concluded', { timeoutMs: Math.min(SETTLE_MS, budgetMs) }).catch(() => undefined);
  }
  return final && endedAsAsked(action, final) ? final : undefined;
}
