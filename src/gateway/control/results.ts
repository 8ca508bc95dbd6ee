/** The `result` answers of job commands (schemas/msg-result.schema.json): one builder per shape. */
import type { BackendRefusal } from '../../jobs/control-port.js';
import type { CommandErrorCode, ErrorDetail, JobState, ResultFailure, ResultSuccess } from '../../generated/schema-types.js';

export type CommandResult = ResultSuccess | ResultFailure;

/** Schema bounds of error texts (protocol-common errorText / qmpErrorInfo). */
const MAX_TEXT = 2048;

const clip = (text: string): string => (text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT - 1)}…`);

export function succeeded(id: string, job: JobState): ResultSuccess {
  return { type: 'result', id, ok: true, job };
}

export interface FailureEvidence {
  /** The job's last known state. */
  job?: JobState | undefined;
  /** The backend's own refusal (QEMU's class and desc), verbatim. */
  qmp?: BackendRefusal | undefined;
  details?: ErrorDetail[] | undefined;
}

export function failed(id: string, code: CommandErrorCode, message: string, evidence: FailureEvidence = {}): ResultFailure {
  const { job, qmp, details } = evidence;
  return {
    type: 'result',
    id,
    ok: false,
    error: {
      code,
      message: clip(message),
      ...(qmp ? { qmp: { class: qmp.class.slice(0, 128), desc: clip(qmp.desc) } } : {}),
      ...(details && details.length > 0 ? { details: details.slice(0, 20) } : {}),
    },
    ...(job ? { job } : {}),
  };
}
