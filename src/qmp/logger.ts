/**
 * The logging seam of the QMP layer: the four methods it calls, in pino's (object, message) form,
 * so a pino logger (or a child of one) can be passed as is, and tests can pass a recorder.
 */
export interface QmpLogger {
  debug(fields: Record<string, unknown>, message?: string): void;
  info(fields: Record<string, unknown>, message?: string): void;
  warn(fields: Record<string, unknown>, message?: string): void;
  error(fields: Record<string, unknown>, message?: string): void;
}

const ignore = (): void => {};

/** The default: log nothing. */
export const silentLogger: QmpLogger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
