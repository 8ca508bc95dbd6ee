/**
 * How every waiting call of the client ends exactly once: by its own outcome, its timeout, or its
 * AbortSignal, whichever comes first; and the id prefix that keeps command ids apart across clients.
 */
import { ClientAbortedError, type ClientError } from './errors.js';

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * A promise that settles once: by `register`'s resolve/reject, the timeout, or the signal. The
 * function `register` returns undoes the registration, whatever settled it.
 */
export function settleOnce<T>(
  options: CallOptions,
  register: (resolve: (value: T) => void, reject: (error: ClientError) => void) => () => void,
  onTimeout: () => ClientError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const { signal, timeoutMs } = options;
    if (signal?.aborted) {
      reject(new ClientAbortedError(signal.reason));
      return;
    }
    let settled = false;
    let undo: () => void = () => {};
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      undo();
      settle();
    };
    const onAbort = () => finish(() => reject(new ClientAbortedError(signal?.reason)));
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => finish(() => reject(onTimeout())), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    undo = register(
      (value) => finish(() => resolve(value)),
      (error) => finish(() => reject(error)),
    );
    if (settled) undo();
  });
}

/** An id prefix unique enough across clients sharing a token (the gateway caches command ids per token). */
export function randomId(): string {
  const bytes = new Uint8Array(6);
  const crypto = (globalThis as { crypto?: { getRandomValues(a: Uint8Array): Uint8Array } }).crypto;
  if (crypto) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
