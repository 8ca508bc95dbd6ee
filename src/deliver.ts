/** Delivery to a client's streams from the code that reads its socket. */
import type { Subject } from 'rxjs';
import type { Logger } from './log.js';

/**
 * Delivers to subscribers without letting them break the reader. RxJS already isolates a plain
 * subscriber's exception (it is reported via config.onUnhandledError); this also covers synchronous
 * error-handling setups. `who` names the client in the log line (built once per client, not per call).
 */
export function deliver<T>(subject: Subject<T>, value: T, stream: string, log: Logger, who: Readonly<Record<string, unknown>>): void {
  try {
    subject.next(value);
  } catch (err) {
    log.error({ ...who, stream, err }, 'a subscriber threw; ignored');
  }
}
