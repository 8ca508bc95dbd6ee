import { expect, it } from 'vitest';
import { ThrottledLog } from '../../src/log.js';
import { LogRecorder } from '../utils/log-recorder.js';

it('logs each kind at most once per interval, then says how many it left out', () => {
  const log = new LogRecorder();
  let now = 0;
  const throttled = new ThrottledLog(log, 1_000, () => now);
  for (let i = 0; i < 500; i++) throttled.warn({ i }, 'malformed');
  throttled.warn({}, 'other kind');
  now = 999;
  throttled.warn({ i: 500 }, 'malformed');
  now = 1_000;
  throttled.warn({ i: 501 }, 'malformed');
  expect(log.entries.map((e) => [e.message, e.fields])).toEqual([
    ['malformed', { i: 0 }],
    ['other kind', {}],
    ['malformed', { i: 501, unlogged: 500, unloggedSinceMs: 1_000 }],
  ]);
  expect(log.entries.every((e) => e.level === 'warn')).toBe(true);
});
