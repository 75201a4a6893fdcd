/**
 * Section 2: a warm `resolve()`: nanoseconds and heap bytes per call, and no SecureContext built, against a
 * plain cached-promise lookup (`cache ??= load()`), the least any cache can do.
 */
import { syncBuiltinESMExports } from 'node:module';
import tls from 'node:tls';
import { memory } from '../../providers/memory.js';
import { createResolver, type ResolvedOptions } from '../../src/index.js';
import { type BenchContext, type SectionResult, target } from '../lib/context.js';
import { allocatedBytes } from '../lib/heap.js';
import { fmt, median, pairedRatio, round, table } from '../lib/stats.js';

const SECTION = 'warmResolve';

/** Counts `tls.createSecureContext` calls, named imports included (src/validate.ts imports it by name). */
function countContexts(): { readonly count: () => number; restore(): void } {
  const original = tls.createSecureContext;
  let calls = 0;
  tls.createSecureContext = (options) => {
    calls += 1;
    return original(options);
  };
  syncBuiltinESMExports();
  return {
    count: () => calls,
    restore() {
      tls.createSecureContext = original;
      syncBuiltinESMExports();
    },
  };
}

async function nsPerCall(call: () => Promise<unknown>, calls: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) await call();
  return Number(process.hrtime.bigint() - start) / calls;
}

export async function runWarmResolve(ctx: BenchContext): Promise<SectionResult> {
  const { client, ca } = ctx.material.ec;
  const store = memory({ client: { key: client.keyPem, cert: client.certPem }, ca: ca.certPem });
  const spec = {
    key: store.ref('client', { jsonKey: 'key' }),
    cert: store.ref('client', { jsonKey: 'cert' }),
    ca: store.ref('ca'),
  };
  const resolver = createResolver(spec);
  const contexts = countContexts();
  try {
    const coldStart = contexts.count();
    const first = await resolver.resolve();
    const coldContexts = contexts.count() - coldStart;

    // The baseline caches a promise of the very same options object.
    let cache: Promise<ResolvedOptions> | undefined;
    const load = async () => first;
    const baseline = () => (cache ??= load());
    const ours = () => resolver.resolve();

    const calls = ctx.smoke ? 5_000 : 200_000;
    const allocationCalls = ctx.smoke ? 2_000 : 20_000;
    const rounds = ctx.smoke ? 1 : ctx.rounds;
    for (const call of [ours, baseline]) await nsPerCall(call, calls / 4);

    const warmStart = contexts.count();
    const seen = new Set<object>();
    const ns = { ours: [] as number[], baseline: [] as number[] };
    const bytes = { ours: [] as number[], baseline: [] as number[] };
    for (let round = 0; round < rounds; round++) {
      ns.ours.push(await nsPerCall(ours, calls));
      ns.baseline.push(await nsPerCall(baseline, calls));
      bytes.ours.push(
        (await allocatedBytes(async () => {
          for (let i = 0; i < allocationCalls; i++) seen.add(await ours());
        })) / allocationCalls,
      );
      bytes.baseline.push(
        (await allocatedBytes(async () => {
          for (let i = 0; i < allocationCalls; i++) await baseline();
        })) / allocationCalls,
      );
    }
    const warmContexts = contexts.count() - warmStart;
    const totalWarmCalls = rounds * (calls + allocationCalls) + calls / 4;

    const figures = {
      callsPerRound: calls,
      rounds,
      nsPerCall: {
        ours: ns.ours.map((v) => round(v, 1)),
        baseline: ns.baseline.map((v) => round(v, 1)),
        oursMedian: round(median(ns.ours), 1),
        baselineMedian: round(median(ns.baseline), 1),
        oursOverBaseline: round(pairedRatio(ns.ours, ns.baseline), 3),
      },
      heapBytesPerCall: {
        ours: bytes.ours.map((v) => round(v, 1)),
        baseline: bytes.baseline.map((v) => round(v, 1)),
        oursMedian: round(median(bytes.ours), 1),
        baselineMedian: round(median(bytes.baseline), 1),
      },
      secureContexts: { coldResolve: coldContexts, warmCalls: totalWarmCalls, duringWarmCalls: warmContexts },
      distinctObjectsReturned: seen.size,
    };
    return {
      title: '2. Warm resolve()',
      tables: [
        table(
          `Per call, median of ${rounds} interleaved rounds of ${calls.toLocaleString('en-US')} awaited calls`,
          ['lookup', 'ns/call', 'heap bytes/call', 'SecureContexts built'],
          [
            [
              'resolver.resolve() (warm)',
              fmt(figures.nsPerCall.oursMedian),
              fmt(figures.heapBytesPerCall.oursMedian),
              `${warmContexts} in ${totalWarmCalls.toLocaleString('en-US')} calls`,
            ],
            [
              'baseline: cache ??= load()',
              fmt(figures.nsPerCall.baselineMedian),
              fmt(figures.heapBytesPerCall.baselineMedian),
              '-',
            ],
            ['ratio ours/baseline (paired)', fmt(figures.nsPerCall.oursOverBaseline, 2), '', ''],
          ],
        ),
        `Cold resolve built ${coldContexts} SecureContext(s) (the counter works); warm calls returned ${seen.size} distinct object(s).`,
      ],
      targets: [
        target(SECTION, 'SecureContexts built by warm resolve()', warmContexts, '==', 0),
        target(SECTION, 'distinct options objects from warm resolve()', seen.size, '==', 1),
      ],
      data: figures,
    };
  } finally {
    contexts.restore();
    await resolver.close();
  }
}
