/**
 * Section 6: how cost grows with the number of references: `ca: [N refs]` over a memory store, N = 1, 10,
 * 100, 1,000 distinct CA certificates. Cold resolve, refresh with nothing changed (N version probes),
 * refresh after one of the N changed (one fetch, then the whole bundle is validated and built again), and
 * the heap a resolved resolver keeps.
 */
import { memory } from '../../providers/memory.js';
import { createResolver, type Provider, type Resolver } from '../../src/index.js';
import { createRef } from '../../src/provider-kit.js';
import type { BenchContext, SectionResult } from '../lib/context.js';
import { retainedBytes } from '../lib/heap.js';
import { distinctCaCertificates } from '../lib/material.js';
import { fmt, median, round, table } from '../lib/stats.js';

interface Point {
  readonly refs: number;
  readonly coldResolveMs: number[];
  readonly refreshUnchangedMs: number[];
  readonly refreshOneChangedMs: number[];
  readonly retainedHeapBytes: number[];
  readonly rssDeltaBytes: number[];
}

async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await run();
  return { value, ms: performance.now() - start };
}

export async function runGrowth(ctx: BenchContext): Promise<SectionResult> {
  const sizes = ctx.smoke ? [1, 10, 100] : [1, 10, 100, 1_000];
  const rounds = ctx.smoke ? 1 : 3;
  const largest = Math.max(...sizes);
  const generateStart = performance.now();
  // One spare certificate to change one reference to.
  const pems = await distinctCaCertificates(largest + 1);
  const spare = pems[largest] as string;
  const generateMs = performance.now() - generateStart;
  ctx.log(`  generated ${largest + 1} CA certificates in ${Math.round(generateMs)} ms`);

  const store = memory(Object.fromEntries(pems.slice(0, largest).map((pem, i) => [`ca/${i}`, pem])));
  // Without `watch`: a change reaches the resolver only through the refresh being timed, not a pushed one.
  const polled: Provider = {
    name: 'memory',
    fetch: (ref, signal) => store.fetch(ref, signal),
    currentVersion: (ref, signal) => store.currentVersion(ref, signal),
  };

  const points = new Map<number, Point>(
    sizes.map((refs) => [
      refs,
      {
        refs,
        coldResolveMs: [],
        refreshUnchangedMs: [],
        refreshOneChangedMs: [],
        retainedHeapBytes: [],
        rssDeltaBytes: [],
      },
    ]),
  );
  for (let round = 0; round < rounds; round++) {
    for (const refs of sizes) {
      const point = points.get(refs) as Point;
      store.set('ca/0', pems[0] as string);
      const spec = { ca: Array.from({ length: refs }, (_, i) => createRef(polled, `ca/${i}`)) };
      // Small resolvers are built several at a time so that their heap stands out from the noise.
      const copies = Math.ceil(50 / refs);
      const coldMs: number[] = [];
      const built = await retainedBytes(async () => {
        const resolvers: Resolver[] = [];
        for (let i = 0; i < copies; i++) {
          const resolver = createResolver(spec);
          coldMs.push((await timed(() => resolver.resolve())).ms);
          resolvers.push(resolver);
        }
        return resolvers;
      });
      const [resolver, ...others] = built.value as [Resolver, ...Resolver[]];
      for (const other of others) await other.close();
      try {
        point.coldResolveMs.push(median(coldMs));
        point.retainedHeapBytes.push(built.bytes / copies);
        point.rssDeltaBytes.push(built.rss / copies);
        for (let i = 0; i < 3; i++) point.refreshUnchangedMs.push((await timed(() => resolver.refresh())).ms);
        store.set('ca/0', spare);
        const changed = await timed(() => resolver.refresh());
        if (!changed.value.rotated) throw new Error(`refresh after a change did not rotate (N=${refs})`);
        point.refreshOneChangedMs.push(changed.ms);
      } finally {
        await resolver.close();
      }
    }
  }

  const figures = [...points.values()].map((p) => ({
    refs: p.refs,
    coldResolveMs: round(median(p.coldResolveMs), 2),
    refreshUnchangedMs: round(median(p.refreshUnchangedMs), 3),
    refreshOneChangedMs: round(median(p.refreshOneChangedMs), 2),
    retainedHeapKiB: round(median(p.retainedHeapBytes) / 1024, 1),
    rssDeltaKiB: round(median(p.rssDeltaBytes) / 1024, 0),
    raw: p,
  }));
  const perRef = (f: (typeof figures)[number], field: 'coldResolveMs' | 'refreshOneChangedMs') =>
    (f[field] * 1000) / f.refs;
  return {
    title: '6. Cost growth with the number of references (ca: [N refs] over memory)',
    tables: [
      table(
        `Median of ${rounds} interleaved rounds`,
        [
          'refs',
          'cold resolve ms',
          'µs/ref',
          'refresh, none changed ms',
          'refresh, 1 changed ms',
          'µs/ref',
          'heap kept KiB',
          'rss KiB',
        ],
        figures.map((f) => [
          f.refs.toLocaleString('en-US'),
          fmt(f.coldResolveMs, 2),
          fmt(perRef(f, 'coldResolveMs'), 0),
          fmt(f.refreshUnchangedMs, 3),
          fmt(f.refreshOneChangedMs, 2),
          fmt(perRef(f, 'refreshOneChangedMs'), 0),
          fmt(f.retainedHeapKiB, 1),
          fmt(f.rssDeltaKiB, 0),
        ]),
      ),
      'A change to any one of N references validates and builds the whole bundle again (one SecureContext with N CAs);\n' +
        '"heap kept" and "rss" are per resolver (small N: averaged over ceil(50/N) resolvers); rss includes OpenSSL\n' +
        'memory outside the JS heap and moves in coarse steps.',
    ],
    // No target: the brief asks for the curve; it is linear in N (see µs/ref).
    targets: [],
    data: { sizes, rounds, certificateGenerationMs: round(generateMs, 0), points: figures },
  };
}
