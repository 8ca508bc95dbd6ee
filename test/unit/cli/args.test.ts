import { describe, expect, it } from 'vitest';
import { parseCommandLine, parseGlobal, parseNameValue } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/errors.js';

const SERVE_LIKE = {
  qmp: { type: 'string', multiple: true },
  listen: { type: 'string' },
  insecure: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function usageMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe('GW_ERR_USAGE');
    return (error as UsageError).message;
  }
  throw new Error('expected a UsageError');
}

describe('parseCommandLine', () => {
  it('collects a repeatable flag in order, with typed values', () => {
    const { values, positionals } = parseCommandLine(
      ['--qmp', 'vm1=unix:/run/vm1.qmp', '--listen=127.0.0.1:8080', '--qmp', 'vm2=tcp:127.0.0.1:4444', '--insecure'],
      SERVE_LIKE,
    );
    expect(values.qmp).toEqual(['vm1=unix:/run/vm1.qmp', 'vm2=tcp:127.0.0.1:4444']);
    expect(values.listen).toBe('127.0.0.1:8080');
    expect(values.insecure).toBe(true);
    expect(values.help).toBeUndefined();
    expect(positionals).toEqual([]);
  });

  it('names an unknown flag', () => {
    expect(usageMessage(() => parseCommandLine(['--qmp', 'a=unix:/x', '--frobnicate'], SERVE_LIKE))).toBe('unknown flag --frobnicate');
    expect(usageMessage(() => parseCommandLine(['-x'], SERVE_LIKE))).toBe('unknown flag -x');
  });

  it('says when a flag lacks its value or takes none', () => {
    expect(usageMessage(() => parseCommandLine(['--listen'], SERVE_LIKE))).toBe('flag --listen: needs a value');
    expect(usageMessage(() => parseCommandLine(['--insecure=yes'], SERVE_LIKE))).toBe('flag --insecure: takes no value');
  });

  it('refuses positionals unless allowed', () => {
    expect(usageMessage(() => parseCommandLine(['ws://x'], SERVE_LIKE))).toBe("unexpected argument ws://x");
    expect(parseCommandLine(['ws://x', '-h'], SERVE_LIKE, { allowPositionals: true })).toEqual({ values: { help: true }, positionals: ['ws://x'] });
  });
});

describe('parseGlobal', () => {
  it('splits global flags from the command and leaves the command its own arguments', () => {
    expect(parseGlobal(['serve', '--qmp', 'vm1=unix:/p', '--help'])).toEqual({ help: false, version: false, command: 'serve', rest: ['--qmp', 'vm1=unix:/p', '--help'] });
    expect(parseGlobal(['--help'])).toEqual({ help: true, version: false, command: undefined, rest: [] });
    expect(parseGlobal(['-V'])).toMatchObject({ version: true, command: undefined });
    expect(parseGlobal([])).toEqual({ help: false, version: false, command: undefined, rest: [] });
  });

  it('refuses unknown global flags', () => {
    expect(usageMessage(() => parseGlobal(['--verbose', 'serve']))).toBe('unknown flag --verbose');
  });
});

describe('parseNameValue', () => {
  it('splits at the first =', () => {
    expect(parseNameValue('--qmp', 'vm1=unix:/run/a=b.qmp')).toEqual({ name: 'vm1', value: 'unix:/run/a=b.qmp' });
  });

  it.each(['vm1', '=unix:/p', 'vm1='])('refuses %j', (text) => {
    expect(usageMessage(() => parseNameValue('--qmp', text))).toBe(`--qmp: expected NAME=VALUE, got '${text}'`);
  });
});
