/**
 * Command-line parsing shared by the CLI: node:util parseArgs, strict, with its errors turned into
 * UsageError (exit code 2) that say which flag is wrong, and the split of global flags from the
 * subcommand and its own arguments.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

export type FlagsConfig = NonNullable<ParseArgsConfig['options']>;

type FlagValue<F extends FlagsConfig[string]> = F['type'] extends 'boolean' ? boolean : string;

/** What parseCommandLine returns: each flag typed from its config (absent flags are undefined). */
export interface ParsedCommandLine<T extends FlagsConfig> {
  values: { [K in keyof T]?: T[K]['multiple'] extends true ? Array<FlagValue<T[K]>> : FlagValue<T[K]> };
  positionals: string[];
}

/**
 * Parses `argv` strictly against `flags`. Unknown flags, missing values and positionals where none
 * are allowed become a UsageError naming the flag.
 */
export function parseCommandLine<const T extends FlagsConfig>(
  argv: readonly string[],
  flags: T,
  config: { allowPositionals?: boolean } = {},
): ParsedCommandLine<T> {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options: flags, strict: true, allowPositionals: config.allowPositionals ?? false });
    return { values: values as ParsedCommandLine<T>['values'], positionals };
  } catch (error) {
    throw toUsageError(error);
  }
}

/** node:util parseArgs error codes, rephrased for a human at a terminal. */
export function toUsageError(error: unknown): UsageError {
  const { code, message } = error as { code?: string; message: string };
  const flag = /'(-[^' ]+)/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new UsageError(`unknown flag ${flag ?? message}`);
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return new UsageError(flag ? `flag ${flag}: ${/argument missing/.test(message) ? 'needs a value' : 'takes no value'}` : message);
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new UsageError(`unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ''}`.trim());
    default:
      return new UsageError(message);
  }
}

export interface GlobalInvocation {
  help: boolean;
  version: boolean;
  /** The subcommand, if one was given. */
  command: string | undefined;
  /** Everything after the subcommand, untouched: the subcommand parses its own flags. */
  rest: string[];
}

const GLOBAL_OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** Splits `[global flags] [command [args...]]`; only --help and --version are global. */
export function parseGlobal(argv: readonly string[]): GlobalInvocation {
  const commandAt = argv.findIndex((arg) => !arg.startsWith('-'));
  const globals = commandAt < 0 ? argv : argv.slice(0, commandAt);
  const { values } = parseCommandLine(globals, GLOBAL_OPTIONS);
  return {
    help: values.help ?? false,
    version: values.version ?? false,
    command: commandAt < 0 ? undefined : argv[commandAt],
    rest: commandAt < 0 ? [] : argv.slice(commandAt + 1),
  };
}

/** `NAME=VALUE` (e.g. `--qmp vm1=unix:/run/vm1.qmp`) split at the first `=`; both sides non-empty. */
export function parseNameValue(flag: string, text: string): { name: string; value: string } {
  const at = text.indexOf('=');
  if (at <= 0 || at === text.length - 1) throw new UsageError(`${flag}: expected NAME=VALUE, got '${text}'`);
  return { name: text.slice(0, at), value: text.slice(at + 1) };
}
