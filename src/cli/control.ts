/**
 * `blockjob-gateway complete|cancel|pause|resume ws://HOST:PORT --vm NAME --job ID [...]`: the
 * protocol's `command` message from a shell. `complete` waits for the job to be truly ready by default.
 */
import { ResumeClient } from '../client/resume-client.js';
import { createNodeSocket } from '../client/node-socket.js';
import { GatewayError, UsageError } from '../errors.js';
import type { CommandAction, ResultMessage } from '../generated/schema-types.js';
import { TOKEN_ENV, describeJob, gatewayUrl, parseDuration, parseRemoteArgs, requireFlag, token } from './remote.js';

export const CONTROL_ACTIONS = ['complete', 'cancel', 'pause', 'resume'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

export const usage = (action: string) => `Usage: blockjob-gateway ${action} ws://HOST:PORT --vm NAME --job ID [options]

Sends '${action}' for one job through the gateway and prints the result.

Options:
  --vm NAME                   the VM (required)
  --job ID                    the job id (required)
  --when ready|now            complete only: wait until the job is ready (default) or answer not_ready now
  --await accepted|concluded  answer when QEMU accepted the verb (default) or when the job concluded
  --force                     cancel only: force (no completion, no pivot), even after ready
  --timeout DURATION          give up waiting after this long (default 10m)
  --token TOKEN               bearer token with the control scope (default: $${TOKEN_ENV})
  --json                      print the result message as JSON
  -h, --help                  this text

Exit codes: 0 ok, 1 the gateway answered with an error (its code is printed), 3 connection or auth
failure (if the connection dropped after sending, the outcome is unknown: check the job), 4 usage.
`;

export function runner(action: ControlAction) {
  return (argv: string[]) => run(action, argv);
}

export async function run(action: ControlAction, argv: string[]): Promise<number> {
  const parsed = parseRemoteArgs(
    argv,
    { vm: { type: 'string' }, job: { type: 'string' }, when: { type: 'string' }, await: { type: 'string' }, force: { type: 'boolean', default: false }, timeout: { type: 'string' } },
    action,
    usage(action),
    4,
  );
  if (parsed.exit !== undefined) return parsed.exit;
  const { values, positionals } = parsed;
  let url: string, vm: string, job: string, timeoutMs: number;
  try {
    url = gatewayUrl(positionals, action);
    vm = requireFlag(values.vm, '--vm', action);
    job = requireFlag(values.job, '--job', action);
    timeoutMs = parseDuration(values.timeout ?? '10m', '--timeout');
    if (values.when !== undefined && action !== 'complete') throw new UsageError(`${action}: --when applies to complete only`);
    if (values.when !== undefined && values.when !== 'ready' && values.when !== 'now') throw new UsageError(`${action}: --when must be ready or now`);
    if (values.await !== undefined && values.await !== 'accepted' && values.await !== 'concluded') throw new UsageError(`${action}: --await must be accepted or concluded`);
    if (values.force && action !== 'cancel') throw new UsageError(`${action}: --force applies to cancel only`);
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    process.stderr.write(`${err.message}\n\n${usage(action)}`);
    return 4;
  }
  const command = {
    vm,
    job,
    action: action as CommandAction,
    timeoutMs,
    ...(action === 'complete' ? { when: (values.when ?? 'ready') as 'ready' | 'now' } : {}),
    ...(values.await ? { await: values.await as 'accepted' | 'concluded' } : {}),
    ...(action === 'cancel' ? { force: values.force } : {}),
  };
  const bearer = token(values.token);

  return new Promise<number>((resolve) => {
    let sent = false;
    const done = (code: number, text: string) => {
      clearTimeout(connectTimer);
      client.close();
      (code === 0 ? process.stdout : process.stderr).write(`${text}\n`);
      resolve(code);
    };
    const report = (result: ResultMessage) => {
      if (values.json) return done(result.ok ? 0 : 1, JSON.stringify(result));
      if (result.ok) return done(0, `${action}: ok: ${describeJob(result.job)}`);
      const qmp = result.error.qmp ? ` (QEMU ${result.error.qmp.class}: ${result.error.qmp.desc})` : '';
      return done(1, `${action}: ${result.error.code}: ${result.error.message}${qmp}`);
    };
    const client = new ResumeClient({
      url,
      createSocket: createNodeSocket,
      ...(bearer ? { token: bearer } : {}),
      filter: { vms: [vm], jobs: [job] },
      progressIntervalMs: 0,
      onMessage: () => {},
      onStatus: (status) => {
        if (status !== 'open' || sent) return;
        sent = true;
        client.command(command).then(report, (err: Error) => done(3, `${action}: ${err.message}`));
      },
      onFatal: (close) => done(3, `${action}: the gateway refused the connection: ${close.code} ${close.reason}`),
    });
    const connectTimer = setTimeout(() => {
      if (!sent) done(3, `${action}: could not reach the gateway at ${url}`);
    }, 30_000);
    client.start();
  });
}
