/**
 * A monitor that stays down must not fill the log: serve used to log a multi-line warning on every
 * retry. The QMP client logs the first failure, then a summary each time the streak of failed
 * attempts doubles (2, 4, 8, ...), and each failure in between only at debug.
 */
import { afterEach, expect, it } from 'vitest';
import { QmpClient } from '../../../src/qmp/client.js';
import { LogRecorder } from '../../utils/log-recorder.js';
import { waitFor } from '../../utils/wait-for.js';

let client: QmpClient | undefined;
afterEach(() => client?.close());

it('logs a monitor that stays down once, then summaries with backoff', async () => {
  const log = new LogRecorder();
  client = new QmpClient({ address: 'unix:/nonexistent/blockjob-gateway-down.sock', logger: log, reconnect: { initialDelayMs: 2, maxDelayMs: 2, jitter: 0 } });
  client.start();
  const failures = () => log.entries.filter((e) => e.message === 'reconnect scheduled').length;
  await waitFor(() => failures() >= 40, 'forty failed attempts', 30_000);
  client.close();

  const warnings = log.entries.filter((e) => e.level === 'warn');
  // 40+ failed attempts: the first, then at 2, 4, 8, 16, 32: at most 7 lines, not 40.
  expect(warnings.length).toBeGreaterThanOrEqual(5);
  expect(warnings.length).toBeLessThanOrEqual(7);
  expect(warnings[0]).toMatchObject({ message: 'connection lost', fields: { reason: expect.stringContaining('ENOENT') } });
  expect(warnings.slice(1).map((w) => w.fields['failedAttempts'])).toEqual([2, 4, 8, 16, 32].slice(0, warnings.length - 1));
  expect(warnings.slice(1).every((w) => w.message === 'monitor still down; retrying (logged again when the failures double)')).toBe(true);
});
