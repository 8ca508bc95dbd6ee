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
  /**
   * Whether a level is logged (pino has it). Hot paths ask before building a debug line's fields,
   * so an idle gateway makes no garbage for lines nobody reads; without it, debug counts as on.
   */
  isLevelEnabled?(level: string): boolean;
}

/** Whether `logger` writes debug lines: build their fields only then. */
export function debugEnabled(logger: Logger): boolean {
  return logger.isLevelEnabled?.('debug') ?? true;
}

const ignore = (): void => {};

/** The default: log nothing. */
export const silentLogger: Logger = { debug: ignore, info: ignore, warn: ignore, error: ignore, isLevelEnabled: () => false };

/**
 * Warnings a peer can cause at will (a malformed message, a reply to an id never sent): each kind
 * (its message) is logged at most once per `everyMs`, with how many were left out since. A monitor
 * that sends garbage without end must cost a counter, not a log line per message: the lines are
 * written synchronously, so a flood of them stalls the event loop.
 */
export class ThrottledLog {
  private readonly logged = new Map<string, { at: number; unlogged: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const at = this.now();
    const last = this.logged.get(message);
    if (last && at - last.at < this.everyMs) {
      last.unlogged++;
      return;
    }
    this.logger.warn(last?.unlogged ? { ...fields, unlogged: last.unlogged, unloggedSinceMs: at - last.at } : fields, message);
    this.logged.set(message, { at, unlogged: 0 });
  }
}
