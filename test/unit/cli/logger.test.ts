import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/cli/logger.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((l: string) => l !== ''));
      done();
    },
  });
  return { lines, stream };
}

describe('createLogger', () => {
  it('writes JSON lines with level, time and message, and redacts tokens', () => {
    const { lines, stream } = capture();
    const log = createLogger({ level: 'info', format: 'json', destination: stream });
    log.child({ component: 'gateway' }).info({ token: 'secret-1', req: { headers: { authorization: 'Bearer secret-2' } } }, 'hello');
    log.debug('not at info');
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ level: 30, msg: 'hello', component: 'gateway', token: '[redacted]', name: 'blockjob-gateway' });
    expect(lines[0]).not.toContain('secret');
    expect(line.time).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('pretty-prints when asked', async () => {
    const { lines, stream } = capture();
    createLogger({ format: 'pretty', destination: stream }).warn({ vm: 'vm1' }, 'monitor down');
    await expect.poll(() => lines.length).toBeGreaterThan(0);
    const text = lines.join('\n');
    expect(text).toContain('monitor down');
    expect(text).toContain('vm1');
    expect(() => JSON.parse(lines[0]!)).toThrow();
  });
});
