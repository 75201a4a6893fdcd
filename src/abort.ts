/**
 * The one helper that bounds a promise by an AbortSignal and, optionally, a timeout. The resolver wraps every
 * provider call in it (a provider that ignores its signal must not block later refreshes); a provider whose
 * client cannot take a signal (node-vault) bounds its requests with it too. The operation itself is not
 * cancelled: only waiting for it ends, and whichever of answer, abort and timeout comes first clears the others.
 */
import { after, systemClock, type TimerHandle } from './timers.js';

export interface AbortableOptions {
  /** Rejects after this many ms as well. Default: no timeout. */
  readonly timeoutMs?: number;
  /** The rejection on abort. Default: the signal's reason. */
  readonly onAbort?: (reason: unknown) => unknown;
  /** The rejection on timeout. Default: a `TimeoutError` DOMException, as AbortSignal.timeout gives. */
  readonly onTimeout?: () => unknown;
}

export function abortable<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  options: AbortableOptions = {},
): Promise<T> {
  const aborted = () => (options.onAbort ? options.onAbort(signal.reason) : signal.reason);
  if (signal.aborted) {
    // The operation's own rejection has nobody left to hear it.
    promise.catch(() => undefined);
    return Promise.reject(aborted());
  }
  return new Promise<T>((resolve, reject) => {
    let timer: TimerHandle | undefined;
    const done = () => {
      timer?.cancel();
      signal.removeEventListener('abort', onAbort);
    };
    const onAbort = () => {
      done();
      reject(aborted());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      timer = after(systemClock, options.timeoutMs, () => {
        done();
        reject(
          options.onTimeout
            ? options.onTimeout()
            : new DOMException('the operation timed out', 'TimeoutError'),
        );
      });
    }
    promise.then(
      (value) => {
        done();
        resolve(value);
      },
      (error: unknown) => {
        done();
        reject(error);
      },
    );
  });
}
