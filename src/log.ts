/**
 * The logging seam of the whole project: the four methods its layers call, in pino's
 * (object, message) form, so a pino logger (or a child of one) can be passed as is, and tests can
 * pass a recorder. No imports: every layer, the browser client included, may depend on it.
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message?: string): void;
  info(fields: Record<string, unknown>, message?: string): void;
  warn(fields: Record<string, unknown>, message?: string): void;
  error(fields: Record<string, unknown>, message?: string): void;
}

const ignore = (): void => {};

/** The default: log nothing. */
export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore };
