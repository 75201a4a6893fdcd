/**
 * The one module for timers. Every timer of the resolver (the plan's wake-up, the push debounce, a cycle's
 * fetch timeout), of the agents and of the providers (token renewal, request bounds) goes through a `Clock`,
 * so that a test can drive time and the 2^31-1 ms cap of setTimeout is handled once. Timers never hold the
 * process open (`unref`).
 */
import { ConfigurationError } from './errors.js';

/** setTimeout fires at once for delays above 2^31-1 ms: longer waits are cut and re-planned or re-armed. */
export const MAX_TIMER = 2 ** 31 - 1;

/** Timers may fire a millisecond or two before the clock reaches their point: this much early counts as due. */
export const TIMER_SLACK = 5;

export interface TimerHandle {
  cancel(): void;
}

/** Time for the resolver. Tests inject one (see `ResolverInternals`); the default is the system clock. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Runs `fn` once after `delay` ms (already capped to MAX_TIMER by `after`); must not keep the process alive. */
  schedule(fn: () => void, delay: number): TimerHandle;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  schedule(fn, delay) {
    const timer = setTimeout(fn, delay);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

/** Runs `fn` after `delay` ms, capped to MAX_TIMER: callers that wait longer plan again when it fires. */
export function after(clock: Clock, delay: number, fn: () => void): TimerHandle {
  return clock.schedule(fn, Math.max(0, Math.min(delay, MAX_TIMER)));
}

/** Runs `fn` at `at` (epoch ms), however far away: re-armed until the clock reaches it. */
export function runAt(at: number, fn: () => void, clock: Clock = systemClock): TimerHandle {
  let timer: TimerHandle;
  const arm = () => {
    timer = after(clock, at - clock.now(), () => (clock.now() >= at ? fn() : arm()));
  };
  arm();
  return { cancel: () => timer.cancel() };
}

/**
 * A duration option in milliseconds, checked where the options are given: a finite number from `min` to
 * MAX_TIMER (a larger one would fire at once). `what` names the option in the error, e.g. `file option
 * debounceMs`.
 */
export function checkDurationMs(
  what: string,
  value: unknown,
  fallback: number,
  { min = 0, provider }: { min?: number; provider?: string } = {},
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > MAX_TIMER) {
    throw new ConfigurationError(
      `${what} must be milliseconds from ${min} to ${MAX_TIMER}, got ${typeof value === 'number' ? value : typeof value}`,
      provider === undefined ? {} : { provider },
    );
  }
  return value;
}

/**
 * Resolves in the event loop's next turn (after pending I/O and timers): work split at these points never
 * runs as one block. Not a timer (no delay, nothing to cancel), so not on the Clock.
 */
export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
