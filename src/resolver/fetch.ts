/**
 * The fetch step of a cycle: version probes where the store offers them, then one request per reference
 * (batched per provider where it can). Each unit records what happened to it; nothing here schedules.
 */
import { abortable } from '../abort.js';
import { FetchError, TlsSecretsError } from '../errors.js';
import { describeRef, type FetchResult, type Provider, type SecretRef } from '../provider.js';
import { after, systemClock, type TimerHandle } from '../timers.js';
import type { StoreCallEvent } from '../types.js';

/** One fetch: every reference with the same provider and id shares it. */
export interface Unit {
  readonly provider: Provider;
  readonly ref: SecretRef;
  readonly paths: string[];
  result?: FetchResult;
  /** When the value in `result` was fetched (the cycle's start, epoch ms). */
  fetchedAt?: number;
  /** When the store was last asked about it, whatever the answer. */
  checkedAt?: number;
  /** The last store error; cleared by the next successful probe or fetch. */
  lastError?: TlsSecretsError;
  lastErrorAt?: number;
  /** When the store says the next change is due (epoch ms). */
  changesAt?: number;
  /** A fetch is owed whatever the version probe says (pushed change, lease ahead of its end, notAfter). */
  owed: boolean;
}

/** Runs one store call and reports it (the resolver emits `storeCall`). */
export type Timed = <T>(
  provider: Provider,
  kind: StoreCallEvent['kind'],
  refs: number,
  call: () => Promise<T>,
) => Promise<T>;

export function asTlsError(err: unknown, unit: Unit): TlsSecretsError {
  const [field] = unit.paths;
  const error =
    err instanceof TlsSecretsError
      ? err
      : new FetchError(
          err instanceof Error && err.name === 'TimeoutError'
            ? 'store did not answer in time'
            : 'fetch failed',
          { ref: describeRef(unit.ref), provider: unit.provider.name, cause: err },
        );
  return field ? error.withField(field) : error;
}

function failed(unit: Unit, err: unknown, at: number, errors: TlsSecretsError[]): void {
  unit.lastError = asTlsError(err, unit);
  unit.lastErrorAt = at;
  errors.push(unit.lastError);
}

/** Which targets need a fetch: forced, owed, never fetched, unversioned, or a probe says changed. */
async function unitsToFetch(
  targets: readonly Unit[],
  force: boolean,
  now: number,
  signal: AbortSignal,
  timed: Timed,
  errors: TlsSecretsError[],
): Promise<Unit[]> {
  const decisions = await Promise.all(
    targets.map(async (unit) => {
      const probe = unit.provider.currentVersion;
      if (force || unit.owed || !unit.result || !probe || unit.result.version === undefined) return true;
      try {
        const answer = await timed(unit.provider, 'probe', 1, () =>
          abortable(probe.call(unit.provider, unit.ref, signal), signal),
        );
        const version = typeof answer === 'object' ? answer.version : answer;
        if (typeof answer === 'object') unit.changesAt = answer.changesAt?.getTime();
        unit.checkedAt = now;
        // A clean answer ends the unit's last error: status() must not report yesterday's reset.
        unit.lastError = undefined;
        unit.lastErrorAt = undefined;
        return version === undefined || version !== unit.result.version;
      } catch (err) {
        unit.checkedAt = now;
        failed(unit, err, now, errors);
        return false;
      }
    }),
  );
  return targets.filter((_, index) => decisions[index]);
}

/**
 * How long an aborted batch may take to hand back, per reference, what it had already read. A provider that
 * honours its signal answers at once (errors for the unfinished references); one that ignores it is left
 * behind after this grace, as any call is.
 */
const BATCH_ABORT_GRACE_MS = 250;

/**
 * A batch bounded by the cycle's signal, with a grace to keep its finished reads. Without it, a cold start of
 * 25 throttled reads that outlasted fetchTimeoutMs lost every read it had made, each cycle: a fleet of 400
 * instances made 17,000 successful reads in a minute and 16 of them ever held a bundle.
 */
function batchAbortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  const grace = new AbortController();
  let timer: TimerHandle | undefined;
  const onAbort = () => {
    timer = after(systemClock, BATCH_ABORT_GRACE_MS, () => grace.abort(signal.reason));
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return abortable(promise, grace.signal).finally(() => {
    timer?.cancel();
    signal.removeEventListener('abort', onAbort);
  });
}

/** One request per unit, batched per provider where it can. */
async function fetchAll(units: readonly Unit[], signal: AbortSignal, timed: Timed) {
  const results = new Map<Unit, FetchResult | Error>();
  const byProvider = new Map<Provider, Unit[]>();
  for (const unit of units) byProvider.set(unit.provider, [...(byProvider.get(unit.provider) ?? []), unit]);
  const asError = (err: unknown) => (err instanceof Error ? err : new Error(String(err)));
  await Promise.all(
    [...byProvider].map(async ([provider, group]) => {
      const fetchMany = provider.fetchMany?.bind(provider);
      if (fetchMany && group.length > 1) {
        try {
          const refs = group.map((unit) => unit.ref);
          const batch = await timed(provider, 'batch', group.length, () =>
            batchAbortable(fetchMany(refs, signal), signal),
          );
          for (const [i, unit] of group.entries()) {
            results.set(unit, batch[i] ?? new FetchError('batch returned no result'));
          }
        } catch (err) {
          for (const unit of group) results.set(unit, asError(err));
        }
        return;
      }
      await Promise.all(
        group.map(async (unit) => {
          try {
            const call = () => abortable(provider.fetch(unit.ref, signal), signal);
            results.set(unit, await timed(provider, 'fetch', 1, call));
          } catch (err) {
            results.set(unit, asError(err));
          }
        }),
      );
    }),
  );
  return units.map((unit) => results.get(unit) ?? new FetchError('no result'));
}

/**
 * Probes and fetches `targets`, recording each outcome on its unit. Returns whether any value was fetched
 * (changed or not: the build decides) and the store errors met.
 */
export async function fetchStep(
  targets: readonly Unit[],
  force: boolean,
  now: number,
  signal: AbortSignal,
  timed: Timed,
): Promise<{ fetched: boolean; errors: TlsSecretsError[] }> {
  const errors: TlsSecretsError[] = [];
  const toFetch = await unitsToFetch(targets, force, now, signal, timed, errors);
  const outcomes = await fetchAll(toFetch, signal, timed);
  let fetched = false;
  toFetch.forEach((unit, index) => {
    const outcome = outcomes[index];
    unit.checkedAt = now;
    if (outcome instanceof Error || outcome === undefined) {
      failed(unit, outcome, now, errors);
      return;
    }
    unit.result = outcome;
    unit.fetchedAt = now;
    unit.lastError = undefined;
    unit.lastErrorAt = undefined;
    unit.owed = false;
    fetched = true;
  });
  return { fetched, errors };
}
