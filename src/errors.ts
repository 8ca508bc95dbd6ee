/**
 * One error root, a shallow tree, evidence attached. Every error the project raises is a
 * GatewayError with a stable `code` (documented in docs/errors.md); callers branch on `code`,
 * never on message text.
 *
 *   GatewayError
 *   ├── QmpError              a QMP-level failure (code QMP_ERR_*)
 *   │   ├── QmpCommandError   QEMU answered {"error":{class,desc}}; keeps class, desc and what was sent
 *   │   ├── QmpTimeoutError   no reply within timeoutMs (the command may still run)
 *   │   ├── QmpOutcomeUnknownError  the connection dropped while a command was in flight
 *   │   ├── QmpProtocolError  the peer broke the protocol (bad JSON, oversized message, id-less error)
 *   │   ├── QmpConnectError   could not connect / negotiate (cause attached)
 *   │   ├── QmpMonitorBusyError  connected, but no greeting: another client holds this monitor
 *   │   ├── QmpClosedError    the client (or listener) is closed
 *   │   └── QmpTooManyPendingError  maxPendingCommands commands already await replies
 *   ├── StateError            an operation is not allowed in the current runstate (state, required)
 *   ├── ConfigError           bad configuration or flags (path of the failing field)
 *   ├── UsageError            bad command-line usage (exit code 2)
 *   └── LabError              the QEMU lab (src/lab: qemu-storage-daemon, qemu-img, qemu-io) failed; tool output attached
 */

export type ErrorCode =
  | 'QMP_ERR_COMMAND'
  | 'QMP_ERR_TIMEOUT'
  | 'QMP_ERR_OUTCOME_UNKNOWN'
  | 'QMP_ERR_PROTOCOL'
  | 'QMP_ERR_CONNECT'
  | 'QMP_ERR_MONITOR_BUSY'
  | 'QMP_ERR_CLOSED'
  | 'QMP_ERR_TOO_MANY_PENDING'
  | 'GW_ERR_STATE'
  | 'GW_ERR_CONFIG'
  | 'GW_ERR_USAGE'
  | 'GW_ERR_LAB'
  | 'GW_ERR_INTERNAL';

export class GatewayError extends Error {
  override name = 'GatewayError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export class QmpError extends GatewayError {
  override name = 'QmpError';
}

/** QEMU refused or failed a command. `qmpClass` is QEMU's error class (GenericError, CommandNotFound, DeviceNotActive, ...). */
export class QmpCommandError extends QmpError {
  override name = 'QmpCommandError';
  constructor(
    readonly qmpClass: string,
    readonly desc: string,
    readonly sent: { execute: string; arguments?: unknown },
  ) {
    super('QMP_ERR_COMMAND', `${sent.execute}: ${qmpClass}: ${desc}`);
  }
}

export class QmpTimeoutError extends QmpError {
  override name = 'QmpTimeoutError';
  constructor(readonly sent: { execute: string; arguments?: unknown }, readonly timeoutMs: number) {
    super('QMP_ERR_TIMEOUT', `${sent.execute}: no reply within ${timeoutMs} ms (QEMU may still run it)`);
  }
}

/** The monitor connection dropped while the command was in flight: QEMU may or may not have run it. */
export class QmpOutcomeUnknownError extends QmpError {
  override name = 'QmpOutcomeUnknownError';
  constructor(readonly sent: { execute: string; arguments?: unknown }, options?: { cause?: unknown }) {
    super('QMP_ERR_OUTCOME_UNKNOWN', `${sent.execute}: connection lost before the reply; outcome unknown (re-query to find out)`, options);
  }
}

export class QmpProtocolError extends QmpError {
  override name = 'QmpProtocolError';
  constructor(message: string, readonly received?: string, options?: { cause?: unknown }) {
    super('QMP_ERR_PROTOCOL', message, options);
  }
}

export class QmpConnectError extends QmpError {
  override name = 'QmpConnectError';
  constructor(readonly address: string, message: string, options?: { cause?: unknown }) {
    super('QMP_ERR_CONNECT', `${address}: ${message}`, options);
  }
}

export class QmpMonitorBusyError extends QmpError {
  override name = 'QmpMonitorBusyError';
  constructor(readonly address: string, readonly waitedMs: number) {
    super(
      'QMP_ERR_MONITOR_BUSY',
      `${address}: connected but no QMP greeting within ${waitedMs} ms: monitor busy ` +
        '(a QMP socket serves one client at a time; give the gateway its own monitor)',
    );
  }
}

export class QmpClosedError extends QmpError {
  override name = 'QmpClosedError';
  constructor(message = 'the QMP client is closed') {
    super('QMP_ERR_CLOSED', message);
  }
}

/** execute() refused: `limit` commands already await replies on this monitor (a bound, not a queue). */
export class QmpTooManyPendingError extends QmpError {
  override name = 'QmpTooManyPendingError';
  constructor(readonly sent: { execute: string; arguments?: unknown }, readonly limit: number) {
    super('QMP_ERR_TOO_MANY_PENDING', `${sent.execute}: refused, ${limit} commands already await a reply (maxPendingCommands)`);
  }
}

export class StateError extends GatewayError {
  override name = 'StateError';
  constructor(message: string, readonly state: string, readonly required: readonly string[]) {
    super('GW_ERR_STATE', message);
  }
}

export class ConfigError extends GatewayError {
  override name = 'ConfigError';
  constructor(message: string, readonly path?: string) {
    super('GW_ERR_CONFIG', path ? `${path}: ${message}` : message);
  }
}

export class UsageError extends GatewayError {
  override name = 'UsageError';
  constructor(message: string) {
    super('GW_ERR_USAGE', message);
  }
}

/** A QEMU tool run by src/lab failed (missing binary, qemu-img/qemu-io error, qemu-storage-daemon died at start). */
export class LabError extends GatewayError {
  override name = 'LabError';
  constructor(message: string, readonly output?: string, options?: { cause?: unknown }) {
    super('GW_ERR_LAB', output ? `${message}\n${output.trim()}` : message, options);
  }
}
