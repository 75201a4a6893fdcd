/**
 * Section 1: full mTLS handshakes per second against the forked server, four clients side by side:
 * (a) `connect(resolver)` without resumption, (b) raw `tls.connect` on one prebuilt SecureContext (the
 * limit), (c) raw `tls.connect({key, cert, ca})` per connection, (d) `connect(resolver)` resuming sessions.
 */
import { createSecureContext } from 'node:tls';
import { memory } from '../../providers/memory.js';
import { connect, createResolver, type Resolver } from '../../src/index.js';
import { type BenchContext, type SectionResult, type Target, target } from '../lib/context.js';
import { gc } from '../lib/heap.js';
import { type Opener, perSecond, rawOpener, runWindow, type WindowResult } from '../lib/load.js';
import { type AlgorithmMaterial, largeBundle } from '../lib/material.js';
import { fmt, median, pairedRatio, round, table } from '../lib/stats.js';

const SECTION = 'handshakes';
const VARIANTS = ['ours', 'limit', 'perConnection', 'resumption'] as const;
type Variant = (typeof VARIANTS)[number];
const LABELS: Record<Variant, string> = {
  ours: '(a) connect(resolver), no resumption',
  limit: '(b) tls.connect, one prebuilt context',
  perConnection: '(c) tls.connect({key,cert,ca}) each time',
  resumption: '(d) connect(resolver), resumption on',
};

interface Cell {
  readonly algorithm: 'ec' | 'rsa';
  readonly caSize: 'small' | 'large';
  readonly caCount: number;
  readonly concurrency: number;
}

export interface VariantFigures {
  readonly ratesPerSecond: number[];
  readonly medianPerSecond: number;
  readonly clientCpuMsPerHandshake: number;
  readonly completed: number;
  readonly failed: number;
  readonly resumedFraction: number;
  readonly errors: Record<string, number>;
}

export interface CellFigures extends Cell {
  readonly variants: Record<Variant, VariantFigures>;
  readonly ratios: {
    readonly oursOverLimit: number;
    readonly oursOverPerConnection: number;
    readonly resumptionOverLimit: number;
    /** No client that makes full handshakes can beat the per-connection client by more than this. */
    readonly limitOverPerConnection: number;
    /** `connect()` with its defaults (resumption on) against the per-connection client. */
    readonly resumptionOverPerConnection: number;
  };
}

function summarise(results: WindowResult[]): VariantFigures {
  const completed = results.reduce((sum, r) => sum + r.completed, 0);
  const errors: Record<string, number> = {};
  for (const result of results) {
    for (const [code, count] of result.errorCodes) errors[code] = (errors[code] ?? 0) + count;
  }
  const rates = results.map(perSecond);
  return {
    ratesPerSecond: rates.map((rate) => round(rate, 1)),
    medianPerSecond: round(median(rates), 1),
    clientCpuMsPerHandshake: round(median(results.map((r) => r.cpuMs / Math.max(1, r.completed))), 3),
    completed,
    failed: results.reduce((sum, r) => sum + r.failed, 0),
    resumedFraction: round(results.reduce((sum, r) => sum + r.resumed, 0) / Math.max(1, completed), 3),
    errors,
  };
}

const paired = (a: VariantFigures, b: VariantFigures) =>
  round(pairedRatio(a.ratesPerSecond, b.ratesPerSecond), 3);

function openers(
  material: AlgorithmMaterial,
  caList: readonly string[],
  port: number,
): { openers: Record<Variant, Opener>; resolvers: Resolver[] } {
  const { client } = material;
  const store = memory({ client: { key: client.keyPem, cert: client.certPem }, ca: caList.join('\n') });
  const spec = {
    key: store.ref('client', { jsonKey: 'key' }),
    cert: store.ref('client', { jsonKey: 'cert' }),
    ca: store.ref('ca'),
  };
  // Separate resolvers: (d)'s session cache must not be seen by (a).
  const plain = createResolver(spec);
  const resuming = createResolver(spec);
  const target = { host: '127.0.0.1', port };
  const prebuilt = createSecureContext({ key: client.keyPem, cert: client.certPem, ca: [...caList] });
  return {
    resolvers: [plain, resuming],
    openers: {
      ours: () => connect(plain, { ...target, resumeSessions: false }),
      limit: rawOpener({ ...target, secureContext: prebuilt }),
      perConnection: rawOpener({ ...target, key: client.keyPem, cert: client.certPem, ca: [...caList] }),
      resumption: () => connect(resuming, target),
    },
  };
}

export async function runHandshakes(ctx: BenchContext): Promise<SectionResult> {
  const cells: Cell[] = [];
  for (const algorithm of ['ec', 'rsa'] as const) {
    for (const caSize of ['small', 'large'] as const) {
      for (const concurrency of [1, 8]) {
        const caCount = caSize === 'small' ? 1 : largeBundle('').length;
        cells.push({ algorithm, caSize, caCount, concurrency });
      }
    }
  }

  const figures: CellFigures[] = [];
  for (const cell of cells) {
    const material = ctx.material[cell.algorithm];
    const caList = cell.caSize === 'small' ? [material.ca.certPem] : largeBundle(material.ca.certPem);
    const port = ctx.servers.ports[cell.algorithm];
    if (port === undefined) throw new Error(`no ${cell.algorithm} server`);
    const { openers: open, resolvers } = openers(material, caList, port);
    try {
      for (const resolver of resolvers) await resolver.resolve();
      // Warm-up, not counted: JIT, first contexts, and a session for (d) to offer.
      for (const variant of VARIANTS) {
        await runWindow(open[variant], { concurrency: 1, windowMs: ctx.smoke ? 5 : 100 });
      }
      const results: Record<Variant, WindowResult[]> = {
        ours: [],
        limit: [],
        perConnection: [],
        resumption: [],
      };
      for (let round = 0; round < ctx.rounds; round++) {
        for (const variant of VARIANTS) {
          // (c) with the large bundle leaves ~1 MiB of SecureContext per connection behind: collect it here
          // rather than in whichever window follows.
          gc();
          results[variant].push(
            await runWindow(open[variant], { concurrency: cell.concurrency, windowMs: ctx.windowMs }),
          );
        }
      }
      const variants = {
        ours: summarise(results.ours),
        limit: summarise(results.limit),
        perConnection: summarise(results.perConnection),
        resumption: summarise(results.resumption),
      };
      figures.push({
        ...cell,
        variants,
        ratios: {
          oursOverLimit: paired(variants.ours, variants.limit),
          oursOverPerConnection: paired(variants.ours, variants.perConnection),
          resumptionOverLimit: paired(variants.resumption, variants.limit),
          limitOverPerConnection: paired(variants.limit, variants.perConnection),
          resumptionOverPerConnection: paired(variants.resumption, variants.perConnection),
        },
      });
      ctx.log(
        `  ${cell.algorithm} ${cell.caSize} c=${cell.concurrency}: ${VARIANTS.map((v) => `${v} ${fmt(variants[v].medianPerSecond)}/s`).join(', ')}`,
      );
    } finally {
      for (const resolver of resolvers) await resolver.close();
    }
  }

  const cellName = (cell: Cell) =>
    `${cell.algorithm === 'ec' ? 'P-256' : 'RSA-2048'} ${cell.caSize === 'small' ? 'CA x1' : `CA x${cell.caCount}`} c=${cell.concurrency}`;
  const rateRows = figures.map((cell) => [
    cellName(cell),
    ...VARIANTS.map((variant) => fmt(cell.variants[variant].medianPerSecond, 0)),
    ...VARIANTS.map((variant) => fmt(cell.variants[variant].clientCpuMsPerHandshake, 2)),
    String(VARIANTS.reduce((sum, variant) => sum + cell.variants[variant].failed, 0)),
    fmt(cell.variants.resumption.resumedFraction * 100, 0),
  ]);
  const mark = (value: number, threshold: number) => `${fmt(value, 2)}${value >= threshold ? '' : ' !'}`;
  const ratioRows = figures.map((cell) => [
    cellName(cell),
    mark(cell.ratios.oursOverLimit, 0.95),
    mark(cell.ratios.oursOverPerConnection, cell.caSize === 'small' ? 1.5 : 10),
    mark(cell.ratios.resumptionOverLimit, 1.5),
    fmt(cell.ratios.limitOverPerConnection, 2),
    fmt(cell.ratios.resumptionOverPerConnection, 2),
  ]);

  const minOf = (filter: (cell: CellFigures) => boolean, pick: (cell: CellFigures) => number) =>
    Math.min(...figures.filter(filter).map(pick));
  const all = () => true;
  const targets: Target[] = [
    target(
      SECTION,
      'ours / limit (worst cell)',
      minOf(all, (c) => c.ratios.oursOverLimit),
      '>=',
      0.95,
    ),
    target(
      SECTION,
      'ours / per-connection, small CA (worst cell)',
      minOf(
        (c) => c.caSize === 'small',
        (c) => c.ratios.oursOverPerConnection,
      ),
      '>=',
      1.5,
    ),
    target(
      SECTION,
      'ours / per-connection, large bundle (worst cell)',
      minOf(
        (c) => c.caSize === 'large',
        (c) => c.ratios.oursOverPerConnection,
      ),
      '>=',
      10,
    ),
    target(
      SECTION,
      'resumption / limit (worst cell)',
      minOf(all, (c) => c.ratios.resumptionOverLimit),
      '>=',
      1.5,
    ),
    target(
      SECTION,
      'failed handshakes',
      figures.reduce((sum, c) => sum + VARIANTS.reduce((s, v) => s + c.variants[v].failed, 0), 0),
      '==',
      0,
    ),
  ];

  return {
    title: '1. Handshakes per second (mTLS, loopback, server in a separate process)',
    tables: [
      table(
        `Handshakes/s (median of ${ctx.rounds} interleaved ${ctx.windowMs} ms windows) and client CPU ms per handshake (median)`,
        [
          'cell',
          '(a) ours',
          '(b) limit',
          '(c) per-conn',
          '(d) resume',
          'cpu a',
          'cpu b',
          'cpu c',
          'cpu d',
          'failed',
          'resumed %',
        ],
        rateRows,
      ),
      table(
        'Ratios, median of per-round ratios (targets: a/b >= 0.95; a/c >= 1.5 small CA, >= 10 large; d/b >= 1.5; "!" = missed)',
        ['cell', 'ours/limit', 'ours/per-conn', 'resume/limit', 'limit/per-conn', 'resume/per-conn'],
        ratioRows,
      ),
      `Variants: ${VARIANTS.map((v) => LABELS[v]).join('; ')}.\n` +
        'limit/per-conn bounds ours/per-conn for any client making full handshakes; resume/per-conn is connect() with\n' +
        'its defaults (resumption on).',
    ],
    targets,
    data: { windowMs: ctx.windowMs, rounds: ctx.rounds, cells: figures },
  };
}
