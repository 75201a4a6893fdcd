/**
 * Section 9: cold start, from the first `resolve()` of a new resolver to its first completed mTLS handshake
 * (`connect(resolver)` against the forked server), minus the store's round trip, for 1 CA and a 146-CA
 * bundle. The store is a memory store whose round trip (all references fetched once, directly) is measured
 * in the same run and subtracted. Baseline, interleaved: the same material by hand, `tls.createSecureContext`
 * then `tls.connect` with that context.
 */
import tls, { type TLSSocket } from 'node:tls';
import { memory } from '../../providers/memory.js';
import { connect, createResolver } from '../../src/index.js';
import type { BenchContext, SectionResult } from '../lib/context.js';
import { gc } from '../lib/heap.js';
import { finish, rawOpener } from '../lib/load.js';
import { bundleOf } from '../lib/material.js';
import { fmt, median, pairedRatio, table } from '../lib/stats.js';

/** Node 22's roots and the test CA: the bundle of a service that appends its CA to the public roots. */
const LARGE_BUNDLE = 146;

interface Variant {
  readonly cas: number;
  readonly libraryMs: number[];
  readonly storeMs: number[];
  readonly byHandMs: number[];
}

export async function runColdStart(ctx: BenchContext): Promise<SectionResult> {
  const { client, ca } = ctx.material.ec;
  const port = ctx.servers.ports.ec;
  if (port === undefined) throw new Error('no ec server');
  const bundles = [[ca.certPem], await bundleOf(LARGE_BUNDLE, ca.certPem)];
  const variants: Variant[] = bundles.map((bundle) => ({
    cas: bundle.length,
    libraryMs: [],
    storeMs: [],
    byHandMs: [],
  }));
  const rounds = ctx.smoke ? 1 : 9;
  const target = { host: '127.0.0.1', port, servername: 'localhost' };
  for (let round = 0; round < rounds; round++) {
    for (const [index, bundle] of bundles.entries()) {
      const variant = variants[index] as Variant;
      const store = memory({
        client: { key: client.keyPem, cert: client.certPem },
        ...Object.fromEntries(bundle.map((pem, i) => [`ca/${i}`, pem])),
      });
      const refs = {
        key: store.ref('client', { jsonKey: 'key' }),
        cert: store.ref('client', { jsonKey: 'cert' }),
        ca: bundle.map((_, i) => store.ref(`ca/${i}`)),
      };
      gc();
      // The store's round trip: every distinct reference fetched once, as a cold resolve does.
      const storeStart = performance.now();
      const signal = new AbortController().signal;
      await Promise.all([refs.key, ...refs.ca].map((ref) => store.fetch(ref, signal)));
      variant.storeMs.push(performance.now() - storeStart);

      gc();
      const resolver = createResolver(refs);
      const start = performance.now();
      await resolver.resolve();
      const socket: TLSSocket = await connect(resolver, { ...target, resumeSessions: false });
      variant.libraryMs.push(performance.now() - start);
      await finish(socket);
      await resolver.close();

      gc();
      const handStart = performance.now();
      const secureContext = tls.createSecureContext({ key: client.keyPem, cert: client.certPem, ca: bundle });
      const raw = await rawOpener({ ...target, secureContext })();
      variant.byHandMs.push(performance.now() - handStart);
      await finish(raw);
    }
  }
  const rows = variants.map((v) => {
    const net = v.libraryMs.map((ms, i) => ms - (v.storeMs[i] ?? 0));
    return {
      cas: v.cas,
      libraryMs: median(v.libraryMs),
      storeMs: median(v.storeMs),
      netMs: median(net),
      byHandMs: median(v.byHandMs),
      ratio: pairedRatio(net, v.byHandMs),
    };
  });
  return {
    title: '9. Cold start: first resolve() to first mTLS handshake, minus the store round trip',
    tables: [
      table(
        `${rounds} interleaved rounds (median); memory store; by hand = tls.createSecureContext + tls.connect with the same material`,
        ['CAs', 'library ms', 'store round trip ms', 'library - store ms', 'by hand ms', 'ratio'],
        rows.map((r) => [
          String(r.cas),
          fmt(r.libraryMs, 2),
          fmt(r.storeMs, 3),
          fmt(r.netMs, 2),
          fmt(r.byHandMs, 2),
          fmt(r.ratio, 2),
        ]),
      ),
      'ratio: (library - store round trip) / by hand, median of per-round ratios. The library also validates the\n' +
        'material (parses every certificate, checks the chain and key usage) before the handshake.',
    ],
    targets: [],
    data: { rounds, rows, variants },
  };
}
