/**
 * A clock for the resolver's test seam (`new Resolver(spec, options, { clock })`): real time plus an offset
 * that a test moves forward, e.g. past a backoff step of an hour. Timers run on real time; whatever they
 * and the resolver decide reads the skewed `now`.
 */
import { type Clock, systemClock } from '../../src/timers.js';

export function skewedClock(): Clock & { advance(ms: number): void } {
  let offset = 0;
  return {
    now: () => systemClock.now() + offset,
    schedule: (fn, delay) => systemClock.schedule(fn, delay),
    advance(ms) {
      offset += ms;
    },
  };
}
