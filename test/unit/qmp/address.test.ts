import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/errors.js';
import { formatQmpAddress, parseQmpAddress } from '../../../src/qmp/address.js';

describe('parseQmpAddress', () => {
  it.each([
    ['unix:/run/vm1.qmp', { kind: 'unix', path: '/run/vm1.qmp' }],
    ['unix:relative/dir/qmp.sock', { kind: 'unix', path: 'relative/dir/qmp.sock' }],
    ['tcp:127.0.0.1:4444', { kind: 'tcp', host: '127.0.0.1', port: 4444 }],
    ['tcp:qemu-host.example:1', { kind: 'tcp', host: 'qemu-host.example', port: 1 }],
    ['tcp:[::1]:65535', { kind: 'tcp', host: '::1', port: 65535 }],
    ['tcp:[fe80::1%eth0]:4444', { kind: 'tcp', host: 'fe80::1%eth0', port: 4444 }],
  ])('parses %s and formats it back', (text, expected) => {
    const address = parseQmpAddress(text);
    expect(address).toEqual(expected);
    expect(formatQmpAddress(address)).toBe(text);
  });

  it.each([
    ['', /empty/],
    [' unix:/x', /whitespace/],
    ['unix:', /path is empty/],
    ['/run/vm1.qmp', /did you mean 'unix:\/run\/vm1.qmp'/],
    ['http://host:80', /expected 'unix:/],
    ['tcp:host', /missing ':port'/],
    ['tcp::4444', /host is empty/],
    ['tcp:host:', /port "" is not a number/],
    ['tcp:host:44a', /port "44a" is not a number/],
    ['tcp:host:0', /outside 1..65535/],
    ['tcp:host:70000', /outside 1..65535/],
    ['tcp:::1:4444', /IPv6 host must be bracketed, e.g. 'tcp:\[::1\]:4444'/],
    ['tcp:[::1:4444', /unterminated '\['/],
    ['tcp:[::1]4444', /expected ':port' after/],
  ])('rejects %j with a specific ConfigError', (text, why) => {
    let error: unknown;
    try {
      parseQmpAddress(text, '--qmp vm1');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('GW_ERR_CONFIG');
    expect((error as ConfigError).path).toBe('--qmp vm1');
    expect((error as Error).message).toMatch(why);
    expect((error as Error).message).toContain(JSON.stringify(text));
  });
});
