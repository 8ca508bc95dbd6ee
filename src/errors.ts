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
 *   │   ├── QmpDisconnectedError  a negotiated session ended from the other side (EOF, transport error)
 *   │   ├── QmpMonitorBusyError  connected, but no greeting: another client holds this monitor
 *   │   ├── QmpClosedError    the client (or listener) is closed
 *   │   └── QmpTooManyPendingError  maxPendingCommands commands already await replies
 *   ├── LibvirtError          a libvirt RPC failure (code LIBVIRT_ERR_*)
 *   │   ├── LibvirtRemoteError  libvirtd answered a call with its virError (code, domain, message, ...)
 *   │   ├── LibvirtTimeoutError  no reply within timeoutMs (the daemon may still run the call)
 *   │   ├── LibvirtOutcomeUnknownError  the connection dropped while a call was in flight
 *   │   ├── LibvirtProtocolError  the daemon broke the RPC protocol (`fault` says how); the connection is dropped
 *   │   ├── LibvirtConnectError  could not connect or open the connection (cause attached)
 *   │   ├── LibvirtAuthError  the daemon demands SASL, or refused our polkit check
 *   │   ├── LibvirtKeepaliveError  the daemon missed `count` keepalive intervals: declared dead
 *   │   ├── LibvirtRegistrationError  an event watch could not be (re-)registered on a session
 *   │   ├── LibvirtClosedError  the client is closed
 *   │   ├── LibvirtDomainDownError  a followed domain's QEMU is out of reach (domain stopped, libvirtd gone)
 *   │   └── LibvirtTooManyPendingError  maxPendingCalls calls already await replies
 *   ├── StateError            an operation is not allowed in the current runstate (state, required)
 *   ├── ConfigError           bad configuration or flags (path of the failing field)
 *   ├── UsageError            bad command-line usage (exit code 2)
 *   ├── FleetTlsError         fleet mode: the TLS handshake with Redis failed (certificate not trusted, wrong name, not TLS)
 *   ├── FleetStartTimeoutError  fleet mode: an edge's start did not finish in time (`stage` names where it stood)
 *   ├── LabError              the QEMU lab (src/lab: qemu-storage-daemon, qemu-img, qemu-io) failed; tool output attached
 *   └── ClientError           the public client library (src/client/errors.ts, code CLIENT_ERR_*)
 */

export type ErrorCode =
  | 'QMP_ERR_COMMAND'
  | 'QMP_ERR_TIMEOUT'
  | 'QMP_ERR_OUTCOME_UNKNOWN'
  | 'QMP_ERR_PROTOCOL'
  | 'QMP_ERR_CONNECT'
  | 'QMP_ERR_DISCONNECTED'
  | 'QMP_ERR_MONITOR_BUSY'
  | 'QMP_ERR_CLOSED'
  | 'QMP_ERR_TOO_MANY_PENDING'
  | 'LIBVIRT_ERR_REMOTE'
  | 'LIBVIRT_ERR_TIMEOUT'
  | 'LIBVIRT_ERR_OUTCOME_UNKNOWN'
  | 'LIBVIRT_ERR_PROTOCOL'
  | 'LIBVIRT_ERR_CONNECT'
  | 'LIBVIRT_ERR_AUTH'
  | 'LIBVIRT_ERR_KEEPALIVE'
  | 'LIBVIRT_ERR_REGISTRATION'
  | 'LIBVIRT_ERR_CLOSED'
  | 'LIBVIRT_ERR_DOMAIN_DOWN'
  | 'LIBVIRT_ERR_TOO_MANY_PENDING'
  | 'GW_ERR_STATE'
  | 'GW_ERR_CONFIG'
  | 'GW_ERR_USAGE'
  | 'GW_ERR_LAB'
  | 'GW_ERR_FLEET_NOT_OWNER'
  | 'GW_ERR_FLEET_TLS'
  | 'GW_ERR_FLEET_START_TIMEOUT'
  | 'GW_ERR_TOO_MANY_JOBS'
  | 'GW_ERR_INTERNAL'
  | 'CLIENT_ERR_CONNECT'
  | 'CLIENT_ERR_CONNECT_TIMEOUT'
  | 'CLIENT_ERR_REFUSED'
  | 'CLIENT_ERR_ENDED'
  | 'CLIENT_ERR_SUBSCRIBE'
  | 'CLIENT_ERR_TIMEOUT'
  | 'CLIENT_ERR_JOB_ENDED'
  | 'CLIENT_ERR_OUTCOME_UNKNOWN'
  | 'CLIENT_ERR_BUSY'
  | 'CLIENT_ERR_SNAPSHOT_TOO_LARGE'
  | 'CLIENT_ERR_ABORTED'
  | 'CLIENT_ERR_CLOSED';

/**
 * Runs `make` with stack capture off, for errors about what a peer sent that are made per message
 * and do not end the connection (a malformed job event or poll row, a stray libvirt packet, a client
 * frame that is not JSON, whose SyntaxError JSON.parse builds): a hostile peer makes thousands a
 * second, their stack only ever names our parser, and capturing it was ~10 % of the CPU of a
 * malformed-event flood. The evidence the error carries says what came in.
 */
export function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

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

/** A negotiated session ended from the other side: EOF (QEMU exited, the peer hung up) or a transport error. */
export class QmpDisconnectedError extends QmpError {
  override name = 'QmpDisconnectedError';
  constructor(readonly address: string, message: string, options?: { cause?: unknown }) {
    super('QMP_ERR_DISCONNECTED', `${address}: ${message}`, options);
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

export class LibvirtError extends GatewayError {
  override name = 'LibvirtError';
}

/** A libvirt RPC call: which procedure of which program (for errors and logs). */
export interface LibvirtCallInfo {
  /** e.g. `REMOTE_PROC_DOMAIN_BLOCK_JOB_ABORT`. */
  readonly procedure: string;
  /** A short summary of the arguments (domain, disk, flags), never a whole XML. */
  readonly args?: Record<string, unknown>;
}

/**
 * libvirtd ran the call and failed it. The fields are libvirt's virError: `virCode` is its
 * virErrorNumber (42 VIR_ERR_NO_DOMAIN, 55 VIR_ERR_OPERATION_INVALID, 29 VIR_ERR_OPERATION_DENIED, ...),
 * `virDomain` its virErrorDomain, `level` 1 warning / 2 error; `virCodeName` the symbolic name when known.
 */
export class LibvirtRemoteError extends LibvirtError {
  override name = 'LibvirtRemoteError';
  constructor(
    readonly call: LibvirtCallInfo,
    readonly virCode: number,
    readonly virCodeName: string | undefined,
    readonly virDomain: number,
    readonly level: number,
    readonly remoteMessage: string | null,
    readonly extra: { str1: string | null; str2: string | null; str3: string | null; int1: number; int2: number },
  ) {
    super('LIBVIRT_ERR_REMOTE', `${call.procedure}: ${virCodeName ?? `virError ${virCode}`}: ${remoteMessage ?? '(no message)'}`);
  }
}

export class LibvirtTimeoutError extends LibvirtError {
  override name = 'LibvirtTimeoutError';
  constructor(readonly call: LibvirtCallInfo, readonly timeoutMs: number) {
    super('LIBVIRT_ERR_TIMEOUT', `${call.procedure}: no reply within ${timeoutMs} ms (libvirtd may still run it)`);
  }
}

/** The daemon connection dropped while the call was in flight: libvirtd may or may not have run it. */
export class LibvirtOutcomeUnknownError extends LibvirtError {
  override name = 'LibvirtOutcomeUnknownError';
  constructor(readonly call: LibvirtCallInfo, options?: { cause?: unknown }) {
    super('LIBVIRT_ERR_OUTCOME_UNKNOWN', `${call.procedure}: connection lost before the reply; outcome unknown (re-query to find out)`, options);
  }
}

/**
 * How the daemon broke the protocol:
 * - `frame-length`: a length word below the header size or above VIR_NET_MESSAGE_MAX (16 MiB + 4)
 * - `truncated`: the stream ended inside a message
 * - `header`: an unknown program/version/type/status, or a reply to a serial we never sent
 * - `body`: the XDR body does not decode as the procedure's type (short, bad length, bad enum/bool, over a string/array bound)
 * - `trailing-bytes`: the body decoded but bytes were left over
 * - `unexpected-message`: a well-formed message the client has no use for in this state (an event for an unknown callback, a stream packet)
 * - `event-details`: a QEMU monitor event whose details are not a JSON object
 */
export type LibvirtProtocolFault =
  | 'frame-length'
  | 'truncated'
  | 'header'
  | 'body'
  | 'trailing-bytes'
  | 'unexpected-message'
  | 'event-details';

export class LibvirtProtocolError extends LibvirtError {
  override name = 'LibvirtProtocolError';
  constructor(
    readonly fault: LibvirtProtocolFault,
    message: string,
    /** Hex of the offending message's first bytes (at most 64); for `event-details`, the start of the details text. */
    readonly received?: string,
    options?: { cause?: unknown },
  ) {
    super('LIBVIRT_ERR_PROTOCOL', `${fault}: ${message}`, options);
  }
}

export class LibvirtConnectError extends LibvirtError {
  override name = 'LibvirtConnectError';
  constructor(readonly address: string, message: string, options?: { cause?: unknown }) {
    super('LIBVIRT_ERR_CONNECT', `${address}: ${message}`, options);
  }
}

/**
 * The daemon demands an auth scheme this client does not speak (SASL), or refused the one it does:
 * `none` (root, or auth_unix_rw/ro = "none") and `polkit` (libvirtd asks polkit about our uid).
 */
export class LibvirtAuthError extends LibvirtError {
  override name = 'LibvirtAuthError';
  constructor(readonly address: string, readonly offered: readonly string[], options?: { cause?: unknown }) {
    super(
      'LIBVIRT_ERR_AUTH',
      options?.cause
        ? `${address}: libvirtd refused ${offered.join(', ')} auth: ${(options.cause as Error).message}`
        : `${address}: libvirtd requires auth [${offered.join(', ')}]; this client speaks 'none' and 'polkit' ` +
            '(run as root, allow the user by a polkit rule, or set auth_unix_rw / auth_unix_ro = "none" with socket permissions)',
      options,
    );
  }
}

export class LibvirtKeepaliveError extends LibvirtError {
  override name = 'LibvirtKeepaliveError';
  constructor(readonly address: string, readonly intervalMs: number, readonly count: number) {
    super('LIBVIRT_ERR_KEEPALIVE', `${address}: no message from libvirtd for ${count} keepalive intervals of ${intervalMs} ms: declared dead`);
  }
}

/** An event watch failed to register on a session (e.g. the QEMU monitor events on a read-only connection). */
export class LibvirtRegistrationError extends LibvirtError {
  override name = 'LibvirtRegistrationError';
  constructor(readonly watch: string, readonly session: number, options: { cause: unknown }) {
    super('LIBVIRT_ERR_REGISTRATION', `${watch}: registration failed on session ${session}: ${(options.cause as Error).message}`, options);
  }
}

export class LibvirtClosedError extends LibvirtError {
  override name = 'LibvirtClosedError';
  constructor(message = 'the libvirt client is closed') {
    super('LIBVIRT_ERR_CLOSED', message);
  }
}

/** The job source lost sight of a domain's QEMU: the domain stopped, or the libvirtd connection is down. */
export class LibvirtDomainDownError extends LibvirtError {
  override name = 'LibvirtDomainDownError';
  constructor(readonly domain: string, reason: string) {
    super('LIBVIRT_ERR_DOMAIN_DOWN', `${domain}: ${reason}`);
  }
}

export class LibvirtTooManyPendingError extends LibvirtError {
  override name = 'LibvirtTooManyPendingError';
  constructor(readonly call: LibvirtCallInfo, readonly limit: number) {
    super('LIBVIRT_ERR_TOO_MANY_PENDING', `${call.procedure}: refused, ${limit} calls already await a reply (maxPendingCalls)`);
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

/**
 * Fleet mode: the TLS handshake with a rediss:// server failed. `reason` is Node's verification code
 * (UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID, ...) or the socket error's.
 */
export class FleetTlsError extends GatewayError {
  override name = 'FleetTlsError';
  constructor(message: string, readonly reason: string, options?: { cause?: unknown }) {
    super('GW_ERR_FLEET_TLS', message, options);
  }
}

/** An edge's start did not finish within `fleet.startTimeoutMs`: `stage` is where it stood, `passed` what it had done. */
export class FleetStartTimeoutError extends GatewayError {
  override name = 'FleetStartTimeoutError';
  constructor(message: string, readonly stage: string, readonly passed: readonly string[]) {
    super('GW_ERR_FLEET_START_TIMEOUT', message);
  }
}

/** A QEMU tool run by src/lab failed (missing binary, qemu-img/qemu-io error, qemu-storage-daemon died at start). */
export class LabError extends GatewayError {
  override name = 'LabError';
  constructor(message: string, readonly output?: string, options?: { cause?: unknown }) {
    super('GW_ERR_LAB', output ? `${message}\n${output.trim()}` : message, options);
  }
}
