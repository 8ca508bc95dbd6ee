/**
 * One line per stream event in the terminal: job transitions and monitors going up or down, aligned
 * for reading at a glance, colored when stdout is a terminal.
 */
import type { JobTransition, StreamInput, TransitionKey } from '../jobs/types.js';

const COLORS: Record<string, string> = {
  running: '34', ready: '32', standby: '33', paused: '33', aborting: '31', completed: '32', failed: '31',
  cancelled: '35', unknown: '33', connected: '32', disconnected: '31',
};

export function transitionPrinter(write: (line: string) => void, color: boolean): (input: StreamInput) => void {
  const paint = (text: string, key: string): string => (color && COLORS[key] ? `\x1b[${COLORS[key]}m${text}\x1b[0m` : text);
  const clock = (ms: number): string => new Date(ms).toISOString().slice(11, 23);
  const describe = (key: TransitionKey, withOutcome = true): string => {
    const extras = [key.pauseReason ? `(${key.pauseReason})` : '', withOutcome && key.outcome ? paint(key.outcome, key.outcome) : ''];
    return [paint(key.state, key.state), ...extras].filter(Boolean).join(' ');
  };
  return (input) => {
    if (input.kind === 'vm') {
      write(`${clock(input.at)}  ${input.vm.padEnd(5)} monitor ${paint(input.status, input.status)}${input.reason ? ` (${input.reason})` : ''}`);
      return;
    }
    // The type is known from the first poll on; until then the column stays blank rather than "unknown".
    const type = input.job.type === 'unknown' ? '' : input.job.type;
    write(`${clock(input.at)}  ${input.vm.padEnd(5)} ${input.job.id.padEnd(12)} ${type.padEnd(7)} ${transitionText(input, describe)}`);
  };
}

function transitionText(t: JobTransition, describe: (key: TransitionKey, withOutcome?: boolean) => string): string {
  const to = describe(t.to) + (t.to.ready && !t.from?.ready ? ' · ready to complete' : '');
  const pivot = t.job.pivoted === true ? ' · pivoted' : '';
  const error = t.job.outcome === 'failed' && t.job.error ? ` · ${t.job.error}` : '';
  return `${t.from ? `${describe(t.from, false)} → ` : 'new → '}${to}${pivot}${error}`;
}
