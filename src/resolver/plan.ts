/**
 * The resolver's schedule as pure functions: they take the facts and `now` and return decisions (what is
 * due, when, what to fetch), so they are tested without timers. docs/resolver.md states the same rules.
 *
 * - Every lifetime in the served bundle or the store's answers is a `Deadline` (certificates, leases; more
 *   kinds join in `deadlinesOf`, the one place that lists them).
 * - A deadline's refresh point is `start + fraction x (notAfter - start)`, where `start` is
 *   `max(notBefore, fetchedAt)`: Vault and OpenBao backdate notBefore by 30 s, and a lifetime counted from
 *   then would put the point of a 20 s certificate 0-3 s after it was issued.
 * - Past a refresh point without fresh material, checks continue on a step that halves the time left (at
 *   least `retryInitialDelayMs`), and reaching notAfter forces a fetch. Past notAfter the step grows again.
 * - While the store fails, ONE backoff gates every path to it (cold resolve, refresh(), connect()'s retry,
 *   timers, pushes): equal-jitter exponential steps, tightened by the step above when a deadline is near.
 */

import { fieldOf } from '../field-path.js';
import { TIMER_SLACK } from '../timers.js';
import type { CertificateInfo, ResolverState } from '../types.js';

export interface StateFacts {
  readonly closed: boolean;
  readonly serving: boolean;
  readonly loading: boolean;
  /** The last cycle failed, or a refused bundle is pending. */
  readonly failing: boolean;
  /** The served bundle's earliest notAfter (epoch ms). */
  readonly notAfter: number | undefined;
}

/** The documented states, from the facts; the class keeps the facts, this is the one place they are named. */
export function stateOf(facts: StateFacts, now: number): ResolverState {
  if (facts.closed) return 'closed';
  if (!facts.serving) return facts.loading ? 'loading' : 'cold';
  if (facts.notAfter !== undefined && now > facts.notAfter) return 'expired';
  return facts.failing ? 'stale' : 'serving';
}

/** Something in use that ends at `notAfter`: refreshed ahead of it, announced, and fetched at it. */
export interface Deadline {
  readonly what: 'certificate' | 'lease';
  /** The field it belongs to (`cert`, `pfx[1]`, or the first field a lease fills). */
  readonly field: string;
  readonly ref: string;
  /** When the material was obtained or became valid, whichever is later (epoch ms). */
  readonly start: number;
  readonly notAfter: number;
  /** Identity of this lifetime: its jitter draw and its sent events are kept under it. */
  readonly key: string;
  /** Indices of the fetch units that renew it (none for a literal). */
  readonly units: readonly number[];
  /** Fetched again at the refresh point even when the store's version is unchanged (leases). */
  readonly refetch: boolean;
  /** What `expiring`/`expired` events carry; deadlines without it are not announced. */
  readonly certificate?: CertificateInfo;
}

/** What `deadlinesOf` needs to know of one fetch unit. */
export interface UnitFacts {
  readonly ref: string;
  readonly paths: readonly string[];
  readonly fetchedAt: number | undefined;
  readonly checkedAt: number | undefined;
  /** The store's own end of this answer (lease, PKI expiration). */
  readonly expiresAt: number | undefined;
  /** A fetch is owed regardless of version (pushed change, missed refetch). */
  readonly owed: boolean;
}

/** The served bundle, as far as the schedule cares. */
export interface ServedFacts {
  /**
   * Everything dated the bundle holds (the validated bundle's `deadlines`): leaves and the intermediates they
   * present, CRLs (nextUpdate as notAfter) and CA entries.
   */
  readonly certificates: readonly CertificateInfo[];
  /** When each field's value in the served generation was fetched (undefined for literals). */
  readonly fetchedAt: Readonly<Record<string, number | undefined>>;
}

/** CA entries are announced over their last 90 days only (`expiring` 30 days before at the default 2/3). */
export const AUTHORITY_WARNING_SPAN_MS = 90 * 86_400_000;

/**
 * Every deadline, in ONE place: leaves, the intermediates of their chains and CRLs (nextUpdate) get
 * refresh-ahead, late checks, the fetch at their end and `expiring`/`expired` events; CA entries get events.
 */
export function deadlinesOf(served: ServedFacts | undefined, units: readonly UnitFacts[]): Deadline[] {
  const deadlines: Deadline[] = [];
  const unitsOf = (field: string) =>
    units.flatMap((unit, index) => (unit.paths.includes(fieldOf(field)) ? [index] : []));
  for (const certificate of served?.certificates ?? []) {
    if (certificate.kind === 'authority') {
      // A CA entry is announced, not renewed by this bundle: no units, so no refresh point or fetch of its
      // own; and only over its last 90 days, so a bundle of long-lived roots does not warn at every rotation.
      const notAfter = certificate.notAfter.getTime();
      deadlines.push({
        what: 'certificate',
        field: certificate.field,
        ref: certificate.ref,
        start: Math.max(certificate.notBefore.getTime(), notAfter - AUTHORITY_WARNING_SPAN_MS),
        notAfter,
        key: `ca:${certificate.fingerprint256}`,
        units: [],
        refetch: false,
        certificate,
      });
      continue;
    }
    const fetchedAt = served?.fetchedAt[fieldOf(certificate.field)];
    deadlines.push({
      what: 'certificate',
      field: certificate.field,
      ref: certificate.ref,
      start: Math.max(certificate.notBefore.getTime(), fetchedAt ?? Number.NEGATIVE_INFINITY),
      notAfter: certificate.notAfter.getTime(),
      key: `${certificate.kind === 'crl' ? 'crl' : 'cert'}:${certificate.fingerprint256}`,
      units: unitsOf(certificate.field),
      refetch: false,
      certificate,
    });
  }
  units.forEach((unit, index) => {
    if (unit.expiresAt === undefined || unit.fetchedAt === undefined) return;
    deadlines.push({
      what: 'lease',
      field: unit.paths[0] ?? '',
      ref: unit.ref,
      start: unit.fetchedAt,
      notAfter: unit.expiresAt,
      key: `lease:${unit.ref}:${unit.fetchedAt}`,
      units: [index],
      refetch: true,
    });
  });
  return deadlines;
}

/** A deadline with its refresh point (the jittered fraction of its lifetime is drawn by the caller). */
export interface TimedDeadline extends Deadline {
  readonly aheadAt: number;
}

export function aheadPoint(deadline: Deadline, fraction: number): number {
  return deadline.start + fraction * (deadline.notAfter - deadline.start);
}

export interface RetryOptions {
  readonly retryInitialDelayMs: number;
  readonly retryMaxDelayMs: number;
}

/** The backoff's step after `streak` failed cycles: equal jitter, never less than half the step. */
export function backoffDelay(streak: number, options: RetryOptions, random: number): number {
  const base = Math.min(options.retryMaxDelayMs, options.retryInitialDelayMs * 2 ** Math.min(streak - 1, 30));
  return base / 2 + (random * base) / 2;
}

/**
 * Past a refresh point: the wait before looking again, `remaining` ms before notAfter. Halves the time left
 * (a store that renews late is seen with half its margin to spare), at least `retryInitialDelayMs`; past
 * notAfter it grows with the time since, up to `retryMaxDelayMs`.
 */
export function lateStep(remaining: number, options: RetryOptions): number {
  if (remaining > 0) return Math.max(options.retryInitialDelayMs, remaining / 2);
  return Math.min(options.retryMaxDelayMs, Math.max(options.retryInitialDelayMs, -remaining));
}

/**
 * When a failing store may be asked again: the backoff's step, tightened by any deadline already due, and
 * never before the store's own `Retry-After` (`retryAfterMs`). That one is capped at `retryMaxDelayMs`: a
 * server (or whatever echoes in front of it) cannot hold refreshes off for longer than the backoff would.
 */
export function nextRetryAt(
  failedAt: number,
  streak: number,
  deadlines: readonly TimedDeadline[],
  options: RetryOptions,
  random: number,
  retryAfterMs?: number,
): number {
  let step = backoffDelay(streak, options, random);
  for (const deadline of deadlines) {
    if (deadline.units.length > 0 && failedAt >= deadline.aheadAt - TIMER_SLACK) {
      step = Math.min(step, lateStep(deadline.notAfter - failedAt, options));
    }
  }
  if (retryAfterMs !== undefined && retryAfterMs > 0) {
    step = Math.max(step, Math.min(retryAfterMs, options.retryMaxDelayMs));
  }
  return failedAt + step;
}

/** After a store's scheduled change (an AWS rotation date), probes at these offsets until it lands. */
export const SCHEDULED_CHANGE_PROBES = [1_000, 10_000, 60_000, 300_000] as const;
/**
 * Each instance shifts all its probes by its own draw from [0, this): a fleet told the same rotation date
 * spreads its probes over 30 s instead of asking the store in the same second, and every instance still
 * probes within 31 s of the date (the first offset plus the window).
 */
export const SCHEDULED_CHANGE_SPREAD_MS = 30_000;

/** The probes after a scheduled change at `changesAt`, for an instance whose draw is `random` (0..1). */
export function scheduledProbes(changesAt: number, random: number): number[] {
  const shift = Math.min(Math.max(random, 0), 1) * SCHEDULED_CHANGE_SPREAD_MS;
  return SCHEDULED_CHANGE_PROBES.map((offset) => changesAt + shift + offset);
}

export interface CheckFacts extends RetryOptions {
  readonly deadlines: readonly TimedDeadline[];
  readonly units: readonly UnitFacts[];
  /** The next regular poll (a jittered refreshIntervalMs after the last cycle); undefined with no units. */
  readonly pollAt: number | undefined;
  /** Probes just after store-announced changes (rotation dates). */
  readonly probes: readonly { readonly at: number; readonly unit: number }[];
  /** While the store fails: the earliest next attempt. Undefined when it does not. */
  readonly retryAt: number | undefined;
}

export type CheckReason = 'poll' | 'probe' | 'ahead' | 'late' | 'notAfter' | 'owed' | 'retry';

export interface CheckDecision {
  /** When the next cycle is due (at or before now: due now). Infinity when nothing is ever due. */
  readonly at: number;
  readonly reason: CheckReason | undefined;
  /** Units to fetch even if their version probe says unchanged. */
  readonly refetch: readonly number[];
}

/** `at` counts as done by a check at `checkedAt` (timers fire a little early). */
const doneBy = (checkedAt: number | undefined, at: number) =>
  checkedAt !== undefined && checkedAt >= at - TIMER_SLACK;

/** The next check cycle: when, why and what it must fetch. */
export function planCheck(facts: CheckFacts): CheckDecision {
  const candidates: { at: number; reason: CheckReason; refetch: readonly number[] }[] = [];
  if (facts.pollAt !== undefined) candidates.push({ at: facts.pollAt, reason: 'poll', refetch: [] });
  if (facts.retryAt !== undefined) candidates.push({ at: facts.retryAt, reason: 'retry', refetch: [] });
  facts.units.forEach((unit, index) => {
    if (unit.owed) candidates.push({ at: Number.NEGATIVE_INFINITY, reason: 'owed', refetch: [index] });
  });
  for (const probe of facts.probes) {
    if (!doneBy(facts.units[probe.unit]?.checkedAt, probe.at))
      candidates.push({ at: probe.at, reason: 'probe', refetch: [] });
  }
  for (const deadline of facts.deadlines) {
    if (deadline.units.length === 0) continue;
    const of = (pick: (unit: UnitFacts) => number | undefined) =>
      Math.min(...deadline.units.map((index) => pick(facts.units[index] as UnitFacts) ?? -Infinity));
    const checkedAt = of((unit) => unit.checkedAt);
    const fetchedAt = of((unit) => unit.fetchedAt);
    if (!doneBy(fetchedAt, deadline.notAfter)) {
      candidates.push({ at: deadline.notAfter, reason: 'notAfter', refetch: deadline.units });
    }
    const refetch = deadline.refetch ? deadline.units : [];
    if (!doneBy(checkedAt, deadline.aheadAt)) {
      candidates.push({ at: deadline.aheadAt, reason: 'ahead', refetch });
    } else {
      const step = lateStep(deadline.notAfter - checkedAt, facts);
      candidates.push({ at: checkedAt + step, reason: 'late', refetch });
    }
  }
  // The backoff gates everything while the store fails.
  const gated = candidates.map((candidate) =>
    facts.retryAt === undefined ? candidate : { ...candidate, at: Math.max(candidate.at, facts.retryAt) },
  );
  let at = Number.POSITIVE_INFINITY;
  let reason: CheckReason | undefined;
  for (const candidate of gated) {
    if (candidate.at < at) [at, reason] = [candidate.at, candidate.reason];
  }
  const refetch = new Set<number>();
  for (const candidate of gated) {
    if (candidate.at <= at + TIMER_SLACK) for (const index of candidate.refetch) refetch.add(index);
  }
  return { at, reason, refetch: [...refetch].sort((a, b) => a - b) };
}

export interface DueEvent {
  readonly kind: 'expiring' | 'expired';
  readonly deadline: Deadline;
  /** The key under which it is recorded as sent. */
  readonly sentKey: string;
}

/**
 * `expiring` at each announced deadline's refresh point (the unjittered `refreshAhead` fraction) and
 * `expired` at its notAfter, each once. These never wait for the backoff: they report, they do not fetch.
 */
export function planEvents(
  deadlines: readonly Deadline[],
  sent: ReadonlySet<string>,
  refreshAhead: number,
  now: number,
): { due: DueEvent[]; nextAt: number } {
  const due: DueEvent[] = [];
  let nextAt = Number.POSITIVE_INFINITY;
  for (const deadline of deadlines) {
    if (!deadline.certificate) continue;
    const points = [
      { kind: 'expiring' as const, at: aheadPoint(deadline, refreshAhead) },
      { kind: 'expired' as const, at: deadline.notAfter },
    ];
    for (const point of points) {
      const sentKey = `${point.kind}:${deadline.key}`;
      if (sent.has(sentKey)) continue;
      if (point.at <= now + TIMER_SLACK) due.push({ kind: point.kind, deadline, sentKey });
      else nextAt = Math.min(nextAt, point.at);
    }
  }
  return { due, nextAt };
}
