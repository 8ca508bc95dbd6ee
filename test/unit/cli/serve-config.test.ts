import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfigFile, mergeConfig, parseListen, parseQmpFlags, validateConfig } from '../../../src/cli/config.js';
import { resolveServeConfig } from '../../../src/cli/serve.js';
import { defaultProgressIntervalMs, SCHEMA_DIR } from '../../../src/protocol/index.js';

const dir = mkdtempSync(join(tmpdir(), 'bjg-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, body: unknown) => {
  const path = join(dir, name);
  writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body));
  return path;
};

describe('serve configuration', () => {
  it('names the failing path of a bad config file', async () => {
    await expect(loadConfigFile(file('a.json', { listen: '127.0.0.1:8080', history: { maxEntries: 0 } }))).rejects.toThrow(/a\.json: \/history\/maxEntries: must be >= 1/);
    await expect(loadConfigFile(file('b.json', { qmp: { vm1: 'ftp:nope' } }))).rejects.toThrow(/\/qmp\/vm1: must match pattern/);
    await expect(loadConfigFile(file('c.json', { lisen: 'x' }))).rejects.toThrow(/\/lisen: unknown setting/);
    await expect(loadConfigFile(file('d.json', '{'))).rejects.toMatchObject({ code: 'GW_ERR_CONFIG' });
    await expect(loadConfigFile(join(dir, 'missing.json'))).rejects.toThrow(/cannot read config file/);
  });

  it('resolves relative paths against the config file and lets flags override it', async () => {
    const path = file('gw.json', { listen: '127.0.0.1:9000', qmp: { vm1: 'unix:/a.sock', vm2: 'tcp:127.0.0.1:4444' }, tokens: 'tokens.json', logLevel: 'warn' });
    const config = await resolveServeConfig(['--config', path, '--qmp', 'vm1=unix:/b.sock', '--listen', '127.0.0.1:9100', '--log-level', 'debug']);
    expect(config).toEqual({
      listen: '127.0.0.1:9100',
      qmp: { vm1: 'unix:/b.sock', vm2: 'tcp:127.0.0.1:4444' },
      tokens: join(dir, 'tokens.json'),
      logLevel: 'debug',
    });
  });

  it('gives usage errors for bad flags', async () => {
    await expect(resolveServeConfig([])).rejects.toMatchObject({ code: 'GW_ERR_USAGE', message: expect.stringMatching(/no VMs/) });
    await expect(resolveServeConfig(['--qmp', 'vm1'])).rejects.toThrow(/NAME=ADDRESS/);
    await expect(resolveServeConfig(['--qmp', 'vm1=unix:/a', '--listen', 'nope'])).rejects.toThrow(/host:port/);
    await expect(resolveServeConfig(['--qmp', 'vm1=unix:/a', '--log-level', 'loud'])).rejects.toThrow(/\/logLevel/);
    await expect(resolveServeConfig(['--bogus'])).rejects.toThrow(/unknown flag --bogus/);
    expect(await resolveServeConfig(['--help'])).toBe('help');
  });

  it('parses listen addresses and qmp flags', () => {
    expect(parseListen('[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(() => parseListen('127.0.0.1:70000')).toThrow(/host:port/);
    expect(parseQmpFlags(['a=unix:/x=y'])).toEqual({ a: 'unix:/x=y' });
    expect(() => parseQmpFlags(['a=unix:/x', 'a=unix:/y'])).toThrow(/twice/);
    expect(mergeConfig({ qmp: { a: 'unix:/1' }, insecure: true }, { qmp: { b: 'unix:/2' } })).toEqual({ qmp: { a: 'unix:/1', b: 'unix:/2' }, insecure: true });
    expect(() => validateConfig({ backpressure: { softBytes: 1 } }, 'x')).toThrow(/x: \/backpressure\/softBytes/);
  });

  it('the progress interval the config documents as its default is the protocol schema\'s', () => {
    // Unset, serve passes nothing and the gateway applies msg-subscribe's default; the config
    // schema only documents it, so the two must agree.
    const config = JSON.parse(readFileSync(join(SCHEMA_DIR, 'config.schema.json'), 'utf8')) as { properties: { progressIntervalMs: { default: number } } };
    expect(config.properties.progressIntervalMs.default).toBe(defaultProgressIntervalMs());
  });
});
