/**
 * What the client library throws: each a GatewayError with a stable CLIENT_ERR_* code (docs/errors.md),
 * so callers branch on `code`, never on message text.
 */
import { GatewayError, type ErrorCode } from '../errors.js';
import type { JobState } from '../generated/schema-types.js';

export class ClientError extends GatewayError {
  override name = 'ClientError';
  constructor(code: Extract<ErrorCode, `CLIENT_ERR_${string}`>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A gateway URL could not be reached, or did not answer within the connect timeout. */
export class ClientConnectError extends ClientError {
  override name = 'ClientConnectError';
  constructor(
    readonly url: string,
    readonly why: string,
    options?: { cause?: unknown; timedOut?: boolean },
  ) {
    super(options?.timedOut ? 'CLIENT_ERR_CONNECT_TIMEOUT' : 'CLIENT_ERR_CONNECT', `cannot connect to ${url}: ${why}`, options);
  }
}

/** The gateway closed with a code after which reconnecting cannot help. */
export class ClientRefusedError extends ClientError {
  override name = 'ClientRefusedError';
  constructor(
    readonly url: string,
    readonly closeCode: number,
    readonly reason: string,
  ) {
    super('CLIENT_ERR_REFUSED', `the gateway at ${url} refused the connection: ${closeCode}${reason ? ` ${reason}` : ''}`);
  }
}

/**
 * The gateway closed with 1000 (normal closure). Our gateway never does that on its own, so something
 * between (a proxy) or a foreign server ended the session; the policy says stop, which is not a refusal.
 */
export class ClientEndedError extends ClientError {
  override name = 'ClientEndedError';
  readonly closeCode = 1000;
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super('CLIENT_ERR_ENDED', `the connection to ${url} was closed normally (1000${reason ? ` ${reason}` : ''}) by the other side; the client stopped`);
  }
}

export class ClientSubscribeError extends ClientError {
  override name = 'ClientSubscribeError';
  constructor(
    readonly protocolCode: string,
    message: string,
  ) {
    super('CLIENT_ERR_SUBSCRIBE', `the gateway refused the subscription: ${protocolCode}: ${message}`);
  }
}

export class ClientTimeoutError extends ClientError {
  override name = 'ClientTimeoutError';
  constructor(
    message: string,
    readonly job?: JobState,
  ) {
    super('CLIENT_ERR_TIMEOUT', message);
  }
}

/** waitFor(..., 'ready'): the job concluded instead. */
export class ClientJobEndedError extends ClientError {
  override name = 'ClientJobEndedError';
  constructor(
    readonly job: JobState,
    readonly wasReady: boolean,
  ) {
    super(
      'CLIENT_ERR_JOB_ENDED',
      wasReady
        ? `job ${job.vm}/${job.id} was ready and has since concluded: ${describeOutcome(job)}`
        : `job ${job.vm}/${job.id} concluded before it was ready to complete: ${describeOutcome(job)}`,
    );
  }
}

export class ClientOutcomeUnknownError extends ClientError {
  override name = 'ClientOutcomeUnknownError';
  constructor(message: string) {
    super('CLIENT_ERR_OUTCOME_UNKNOWN', message);
  }
}

export class ClientBusyError extends ClientError {
  override name = 'ClientBusyError';
  constructor(message: string) {
    super('CLIENT_ERR_BUSY', message);
  }
}

/** A VM's snapshot passed `maxSnapshotJobsPerVm` while it was staged; a reconnect would bring the same one. */
export class ClientSnapshotTooLargeError extends ClientError {
  override name = 'ClientSnapshotTooLargeError';
  constructor(
    readonly vm: string,
    readonly limit: number,
  ) {
    super('CLIENT_ERR_SNAPSHOT_TOO_LARGE', `the snapshot of VM ${vm} has more than ${limit} jobs (maxSnapshotJobsPerVm); the client stopped`);
  }
}

export class ClientAbortedError extends ClientError {
  override name = 'ClientAbortedError';
  constructor(reason?: unknown) {
    super('CLIENT_ERR_ABORTED', `aborted${reason instanceof Error ? `: ${reason.message}` : typeof reason === 'string' ? `: ${reason}` : ''}`, { cause: reason });
  }
}

export class ClientClosedError extends ClientError {
  override name = 'ClientClosedError';
  constructor(message = 'the client is closed') {
    super('CLIENT_ERR_CLOSED', message);
  }
}

/** `outcome completed, pivoted` / `outcome cancelled` / `outcome failed (error text)`. */
export function describeOutcome(job: JobState): string {
  const parts = [`outcome ${job.outcome ?? 'unknown'}`];
  if (job.pivoted !== undefined) parts.push(job.pivoted ? 'pivoted' : 'not pivoted');
  let text = parts.join(', ');
  if (job.error) text += ` (${job.error})`;
  return text;
}
