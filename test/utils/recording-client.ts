/** A QmpClient that records what it emits from the start, for tests of the client itself. */
import type { QmpError } from '../../src/errors.js';
import { QmpClient } from '../../src/qmp/client.js';
import type { QmpClientOptions } from '../../src/qmp/client-options.js';
import type { QmpEvent, QmpRunState, QmpSession } from '../../src/qmp/types.js';

/** Not started; no reconnect unless `options.reconnect` says so. The caller closes it. */
export function recordingClient(options: QmpClientOptions) {
  const qmp = new QmpClient({ reconnect: { enabled: false }, ...options });
  const states: QmpRunState[] = [];
  const sessions: QmpSession[] = [];
  const events: QmpEvent[] = [];
  const errors: QmpError[] = [];
  qmp.state$.subscribe((s) => states.push(s));
  qmp.sessions$.subscribe((s) => sessions.push(s));
  qmp.events$.subscribe((e) => events.push(e));
  qmp.errors$.subscribe((e) => errors.push(e));
  return { qmp, states, sessions, events, errors };
}
