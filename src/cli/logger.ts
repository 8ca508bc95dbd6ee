/**
 * The process logger: pino, one JSON object per line; human-readable (pino-pretty) on a terminal or
 * with format `pretty`. Secrets are redacted by path, so a stray token never reaches the log.
 */
import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type LogFormat = 'json' | 'pretty' | 'auto';
export type LogLevel = LevelWithSilent;
export type { Logger };

export interface LoggerOptions {
  /** @default 'info' */
  level?: LogLevel;
  /** auto: pretty when stdout is a TTY. @default 'auto' */
  format?: LogFormat;
  /** @default 'blockjob-gateway' */
  name?: string;
  /** Where lines go (tests). @default stdout */
  destination?: DestinationStream;
}

const REDACT = ['token', '*.token', 'authorization', '*.authorization', 'headers.authorization', '*.headers.authorization'];

export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    name: options.name ?? 'blockjob-gateway',
    level: options.level ?? 'info',
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const format = options.format ?? 'auto';
  const pretty = format === 'pretty' || (format === 'auto' && options.destination === undefined && process.stdout.isTTY === true);
  if (pretty) {
    const stream = prettyStream(options.destination);
    if (stream) return pino(base, stream);
    const logger = pino(base, options.destination ?? pino.destination(1));
    logger.warn('pino-pretty is not installed; logging JSON lines instead');
    return logger;
  }
  return pino(base, options.destination ?? pino.destination(1));
}

/** pino-pretty is a development dependency: load it only when asked for, and live without it. */
function prettyStream(destination: DestinationStream | undefined): DestinationStream | undefined {
  try {
    const require = createRequire(import.meta.url);
    const pretty = require('pino-pretty') as (options: Record<string, unknown>) => DestinationStream;
    return pretty({ colorize: destination === undefined && process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', ...(destination ? { destination } : {}) });
  } catch {
    return undefined;
  }
}
