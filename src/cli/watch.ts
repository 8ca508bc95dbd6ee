/**
 * `blockjob-gateway watch ws://HOST:PORT [--vm NAME] [--job ID] [--state S] [--json]`: a live table
 * redrawn in place on a terminal (like `kubectl get -w`), or one JSON line per message when piped.
 */
import type { ConnectionStatus } from '../client/session.js';
import { GatewayError } from '../errors.js';
import { CLOSE_CODES, type CloseCode } from '../protocol/codes.js';
import type { JobStatusName, SubscriptionFilter } from '../generated/schema-types.js';
import { DEFAULT_CONNECT_TIMEOUT, TOKEN_ENV, cliClient, connectTimeout, fetchGatewayInfo, gatewayUrl, parseRemoteArgs, token, usageFailure } from './remote.js';
import { renderScreen, TerminalScreen, type ScreenFacts } from './watch-screen.js';

export const usage = `Usage: blockjob-gateway watch ws://HOST:PORT [options]

Shows every job live. On a terminal: a table redrawn in place on the alternate screen (like top),
active jobs first, then finished ones as far as the terminal is tall, with a count of those hidden;
a gateway running on the simulator is labelled SIMULATED. Piped: one JSON line per message.

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
    return usageFailure('watch', err);
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
  const facts: ScreenFacts = { url, connection: 'connecting' };
  const screen = new TerminalScreen(process.stdout, (size) => renderScreen(client.jobs(), client.vms, facts, size));
  let redrawPending = false;
  const redraw = () => {
    if (redrawPending) return;
    redrawPending = true;
    setTimeout(() => {
      redrawPending = false;
      screen.draw();
    }, 100);
  };
  // Ages count up between messages.
  const tick = asJson ? undefined : setInterval(redraw, 1000);
  if (asJson) client.on('message', (message) => process.stdout.write(`${JSON.stringify(message)}\n`));
  else {
    for (const event of ['snapshot', 'transition', 'vm', 'progress', 'welcome'] as const) client.on(event, redraw);
    screen.start();
    // Label a simulated gateway; an older gateway without /v1/info just goes unlabelled.
    void fetchGatewayInfo(url, token(values.token)).then((info) => {
      facts.simulated = info?.simulated === true;
      redraw();
    });
  }
  const stopDrawing = () => {
    clearInterval(tick);
    screen.close();
  };

  return new Promise<number>((resolve) => {
    client.on('status', (status) => {
      facts.connection = describeStatus(status);
      // What it retries and why goes to stderr at once (on a terminal, also in the screen's header).
      if (asJson || status.state === 'reconnecting') process.stderr.write(`watch: ${facts.connection}\n`);
      if (!asJson) redraw();
    });
    client.on('error', (error) => {
      stopDrawing();
      process.stderr.write(`watch: ${error.message}\n`);
      resolve(3);
    });
    const stop = () => {
      client.close();
      stopDrawing();
      resolve(0);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    client.start();
  });
}
