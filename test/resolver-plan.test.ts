/**
 * The resolver's schedule without timers: facts + now → decision, one table per planning function
 * (src/resolver/plan.ts). The end-to-end behaviour is in resolver-schedule.test.ts.
 */
import { describe, expect, it } from 'vitest';
import {
  aheadPoint,
  backoffDelay,
  type CheckFacts,
  type Deadline,
  deadlinesOf,
  lateStep,
  nextRetryAt,
  planCheck,
  planEvents,
  SCHEDULED_CHANGE_SPREAD_MS,
  scheduledProbes,
  stateOf,
  type TimedDeadline,
  type UnitFacts,
} from '../src/resolver/plan.js';
import type { CertificateInfo } from '../src/types.js';

const S = 1_000;
const RETRY = { retryInitialDelayMs: 1 * S, retryMaxDelayMs: 60 * S };

function certificate(notBefore: number, notAfter: number, field = 'cert'): CertificateInfo {
  return {
    field,
    ref: 'memory:cert',
    subject: 'CN=svc',
    serialNumber: '01',
    fingerprint256: `FP-${notBefore}-${notAfter}`,
    notBefore: new Date(notBefore),
    notAfter: new Date(notAfter),
  };
}

const unit = (facts: Partial<UnitFacts> = {}): UnitFacts => ({
  ref: 'memory:cert',
  paths: ['key', 'cert'],
  fetchedAt: 0,
  checkedAt: 0,
  expiresAt: undefined,
  owed: false,
  ...facts,
});

/** A certificate deadline from 0 to 30 s renewed by unit 0, its refresh point at 20 s. */
const cert30: TimedDeadline = {
  what: 'certificate',
  field: 'cert',
  ref: 'memory:cert',
  start: 0,
  notAfter: 30 * S,
  key: 'cert:A',
  units: [0],
  refetch: false,
  aheadAt: 20 * S,
};

const facts = (over: Partial<CheckFacts>): CheckFacts => ({
  deadlines: [cert30],
  units: [unit()],
  pollAt: 300 * S,
  probes: [],
  retryAt: undefined,
  ...RETRY,
  ...over,
});

describe('deadlinesOf: the one list of deadlines', () => {
  it.each([
    // [case, notBefore, fetchedAt, expected start]
    ['a backdated PKI notBefore (30 s) counts from the fetch', -30 * S, 0, 0],
    ['a certificate fetched before it is valid counts from notBefore', 5 * S, 0, 5 * S],
    ['a literal (never fetched) counts from notBefore', -30 * S, undefined, -30 * S],
  ])('%s', (_case, notBefore, fetchedAt, start) => {
    const served = { certificates: [certificate(notBefore, 20 * S)], fetchedAt: { cert: fetchedAt } };
    const [deadline] = deadlinesOf(served, fetchedAt === undefined ? [] : [unit({ fetchedAt })]);
    expect(deadline).toMatchObject({ what: 'certificate', start, notAfter: 20 * S });
  });

  it('a 20 s PKI certificate backdated 30 s is refreshed 2/3 into its 20 s, not 0-3 s after issue', () => {
    const served = { certificates: [certificate(-30 * S, 20 * S)], fetchedAt: { cert: 0 } };
    const [deadline] = deadlinesOf(served, [unit()]);
    expect(aheadPoint(deadline as Deadline, 2 / 3)).toBeCloseTo((20 * S * 2) / 3);
  });

  it('lists leases (store expiry) per unit, to be fetched again, and names the units of a certificate', () => {
    const served = { certificates: [certificate(0, 90 * S, 'cert')], fetchedAt: { cert: 0 } };
    const units = [unit({ paths: ['ca'], expiresAt: 60 * S, fetchedAt: 10 * S }), unit({ paths: ['cert'] })];
    const deadlines = deadlinesOf(served, units);
    expect(deadlines.map((d) => [d.what, d.units, d.refetch, d.start, d.notAfter])).toEqual([
      ['certificate', [1], false, 0, 90 * S],
      ['lease', [0], true, 10 * S, 60 * S],
    ]);
  });
});

describe('planCheck: when the next cycle is due and what it fetches', () => {
  const cases: [string, Partial<CheckFacts>, { at: number; reason: string; refetch: number[] }][] = [
    ['before the refresh point: at the point', {}, { at: 20 * S, reason: 'ahead', refetch: [] }],
    [
      'a poll earlier than the point comes first',
      { pollAt: 5 * S },
      { at: 5 * S, reason: 'poll', refetch: [] },
    ],
    [
      'checked at the point, nothing new: again after half the time left (5 s of 10 s)',
      { units: [unit({ checkedAt: 20 * S })] },
      { at: 25 * S, reason: 'late', refetch: [] },
    ],
    [
      'the step tightens: checked with 2 s left, again 1 s later',
      { units: [unit({ checkedAt: 28 * S })] },
      { at: 29 * S, reason: 'late', refetch: [] },
    ],
    [
      'never below retryInitialDelayMs, and notAfter forces a fetch when it comes first',
      { units: [unit({ checkedAt: 29.5 * S })] },
      { at: 30 * S, reason: 'notAfter', refetch: [0] },
    ],
    [
      'fetched at notAfter, still old: the step grows with the time since notAfter',
      { units: [unit({ checkedAt: 40 * S, fetchedAt: 30 * S })] },
      { at: 50 * S, reason: 'late', refetch: [] },
    ],
    [
      'a failing store: every candidate waits for the backoff',
      { retryAt: 22 * S, units: [unit({ checkedAt: 20 * S })] },
      { at: 22 * S, reason: 'retry', refetch: [] },
    ],
    [
      'a pushed change is owed at once',
      { units: [unit({ owed: true })] },
      { at: Number.NEGATIVE_INFINITY, reason: 'owed', refetch: [0] },
    ],
    [
      'a pushed change waits for the backoff while the store fails',
      { units: [unit({ owed: true })], retryAt: 3 * S },
      { at: 3 * S, reason: 'retry', refetch: [0] },
    ],
    [
      'a store-announced change is probed at its offset, once',
      { probes: [{ at: 7 * S, unit: 0 }] },
      { at: 7 * S, reason: 'probe', refetch: [] },
    ],
    [
      'a probe already done (within the timer slack) is not due again',
      { probes: [{ at: 7 * S, unit: 0 }], units: [unit({ checkedAt: 7 * S - 3 })] },
      { at: 20 * S, reason: 'ahead', refetch: [] },
    ],
    [
      'a lease is fetched again at its point even if the version is unchanged',
      { deadlines: [{ ...cert30, what: 'lease', refetch: true }] },
      { at: 20 * S, reason: 'ahead', refetch: [0] },
    ],
    [
      'a literal certificate (no unit) is never due: only the poll',
      { deadlines: [{ ...cert30, units: [] }], pollAt: 300 * S },
      { at: 300 * S, reason: 'poll', refetch: [] },
    ],
  ];
  it.each(cases)('%s', (_case, over, expected) => {
    expect(planCheck(facts(over))).toEqual(expected);
  });
});

describe('the one backoff', () => {
  it.each([
    // [streak, random, delay]
    [1, 0, 500],
    [1, 1, 1_000],
    [3, 1, 4_000],
    [10, 1, 60_000],
    [10, 0, 30_000],
  ])('step %i (random %d): %i ms', (streak, random, delay) => {
    expect(backoffDelay(streak, RETRY, random)).toBe(delay);
  });

  it.each([
    // [remaining, step]
    [60 * S, 30 * S],
    [4 * S, 2 * S],
    [1.5 * S, 1 * S],
    [0, 1 * S],
    [-5 * S, 5 * S],
    [-600 * S, 60 * S],
  ])('late step with %i ms left: %i ms', (remaining, step) => {
    expect(lateStep(remaining, RETRY)).toBe(step);
  });

  it('is tightened by a deadline past its refresh point, not by one before it', () => {
    // Streak 6: a 32 s step; 4 s before notAfter the late step (2 s) wins.
    expect(nextRetryAt(26 * S, 6, [cert30], RETRY, 1)).toBe(28 * S);
    expect(nextRetryAt(10 * S, 6, [cert30], RETRY, 1)).toBe(42 * S);
  });

  it.each([
    // [case, streak, Retry-After ms, expected step]
    ['no Retry-After: the backoff step', 1, undefined, 1 * S],
    ['a Retry-After longer than the step holds the next attempt until it', 1, 9 * S, 9 * S],
    ['a Retry-After shorter than the step changes nothing', 6, 2 * S, 32 * S],
    ['a hostile Retry-After (a day) is capped at retryMaxDelayMs', 1, 86_400 * S, 60 * S],
    ['Retry-After 0 changes nothing', 1, 0, 1 * S],
  ])('Retry-After: %s', (_case, streak, retryAfterMs, step) => {
    expect(nextRetryAt(100 * S, streak, [], RETRY, 1, retryAfterMs) - 100 * S).toBe(step);
  });

  it('Retry-After wins over the tightening of a deadline near its end (asking earlier only meets another 429)', () => {
    expect(nextRetryAt(26 * S, 6, [cert30], RETRY, 1, 5 * S)).toBe(31 * S);
  });
});

/** A seeded PRNG (mulberry32): the same fleet every run. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe('scheduledProbes: a fleet spreads its probes after a rotation date', () => {
  const changesAt = 1_000 * S;

  it('keeps the offsets (1 s, 10 s, 1 min, 5 min), shifted by the instance draw over at most 30 s', () => {
    expect(SCHEDULED_CHANGE_SPREAD_MS).toBe(30 * S);
    expect(scheduledProbes(changesAt, 0)).toEqual([1, 10, 60, 300].map((s) => changesAt + s * S));
    expect(scheduledProbes(changesAt, 0.5)).toEqual([16, 25, 75, 315].map((s) => changesAt + s * S));
    expect(scheduledProbes(changesAt, 1)).toEqual([31, 40, 90, 330].map((s) => changesAt + s * S));
  });

  it('1000 instances told the same date: every first probe within 1-31 s of it, at most 6% in any one second', () => {
    const random = seeded(16);
    const firsts = Array.from({ length: 1_000 }, () => {
      const probes = scheduledProbes(changesAt, random()).map((at) => ({ at, unit: 0 }));
      // What the plan does with them: the first probe is the next check (poll an hour away, unit checked before).
      const decision = planCheck(
        facts({
          deadlines: [],
          units: [unit({ checkedAt: changesAt - S })],
          pollAt: changesAt + 3_600 * S,
          probes,
        }),
      );
      expect(decision.reason).toBe('probe');
      return decision.at - changesAt;
    });
    expect(Math.min(...firsts)).toBeGreaterThanOrEqual(1 * S);
    expect(Math.max(...firsts)).toBeLessThanOrEqual(31 * S);
    const perSecond = new Map<number, number>();
    for (const offset of firsts)
      perSecond.set(Math.floor(offset / S), (perSecond.get(Math.floor(offset / S)) ?? 0) + 1);
    // Without the spread all 1000 would probe in the same millisecond; with it, about 33 per second.
    expect(perSecond.size).toBe(30);
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(60);
    expect(Math.min(...perSecond.values())).toBeGreaterThanOrEqual(15);
  });
});

describe('planEvents and stateOf', () => {
  it('announces expiring at the unjittered point and expired at notAfter, each once', () => {
    const deadline = { ...cert30, certificate: certificate(0, 30 * S) };
    expect(planEvents([deadline], new Set(), 2 / 3, 10 * S)).toEqual({ due: [], nextAt: 20 * S });
    const at20 = planEvents([deadline], new Set(), 2 / 3, 20 * S);
    expect(at20.due.map((event) => event.kind)).toEqual(['expiring']);
    expect(at20.nextAt).toBe(30 * S);
    const sent = new Set(at20.due.map((event) => event.sentKey));
    expect(planEvents([deadline], sent, 2 / 3, 31 * S).due.map((event) => event.kind)).toEqual(['expired']);
    expect(planEvents([cert30], new Set(), 2 / 3, 31 * S).due).toEqual([]); // a lease is not announced
  });

  it.each([
    [{ closed: true, serving: true, loading: false, failing: false, notAfter: undefined }, 'closed'],
    [{ closed: false, serving: false, loading: false, failing: true, notAfter: undefined }, 'cold'],
    [{ closed: false, serving: false, loading: true, failing: false, notAfter: undefined }, 'loading'],
    [{ closed: false, serving: true, loading: true, failing: false, notAfter: 20 * S }, 'serving'],
    [{ closed: false, serving: true, loading: false, failing: true, notAfter: 20 * S }, 'stale'],
    [{ closed: false, serving: true, loading: false, failing: false, notAfter: 5 * S }, 'expired'],
  ] as const)('%o at 10 s: %s', (state, expected) => {
    expect(stateOf(state, 10 * S)).toBe(expected);
  });
});
