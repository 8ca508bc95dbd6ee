/** Shared by the tests: a logger that records, and the job verbs a monitor was asked to run (a spied execute). */
import type { MockInstance } from 'vitest';
import type { Logger } from '../../src/log.js';

export interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string | undefined;
}

export class LogRecorder implements Logger {
  readonly entries: LogEntry[] = [];
  debug = (fields: Record<string, unknown>, message?: string): void => void this.entries.push({ level: 'debug', fields, message });
  info = (fields: Record<string, unknown>, message?: string): void => void this.entries.push({ level: 'info', fields, message });
  warn = (fields: Record<string, unknown>, message?: string): void => void this.entries.push({ level: 'warn', fields, message });
  error = (fields: Record<string, unknown>, message?: string): void => void this.entries.push({ level: 'error', fields, message });
}

/** Job verbs (job-* / block-job-*) sent through a spied `execute` for one job id. */
export function qmpCalls(execute: MockInstance, jobId: string): { command: string; args: Record<string, unknown> }[] {
  return execute.mock.calls
    .map(([command, args]) => ({ command: command as string, args: (args ?? {}) as Record<string, unknown> }))
    .filter(({ command, args }) => /^(block-)?job-/.test(command) && (args.id === jobId || args.device === jobId));
}
