/**
 * `npm run bench`: the performance claims of tls-secrets, measured side by side in one run.
 *
 *   tsx bench/run.ts [--smoke] [--out <file>] [--only <section,...>] [--window <ms>] [--rounds <n>]
 *
 * Every ratio is taken within this run from interleaved rounds (A B C D A B C D …) and medians; absolute
 * figures are printed and kept in the results file but never asserted. `--smoke` runs a ~1 s variant of
 * every section (what test/bench-smoke.test.ts runs). Exit code 0 unless a section could not run at all;
 * missed targets are reported, not failed.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchContext, SectionResult, Target } from './lib/context.js';
import { createMaterial } from './lib/material.js';
import { startServerProcess } from './lib/server-process.js';
import { fmt, table } from './lib/stats.js';
import { runColdStart } from './sections/cold-start.js';
import { runFleetSection } from './sections/fleet.js';
import { runGrowth } from './sections/growth.js';
import { runHandshakes } from './sections/handshakes.js';
import { runPropagation } from './sections/propagation.js';
import { runRotationUnderLoad } from './sections/rotation-load.js';
import { runStall } from './sections/stall.js';
import { runStore } from './sections/store.js';
import { runWarmResolve } from './sections/warm-resolve.js';

const SECTIONS = {
  handshakes: runHandshakes,
  warmResolve: runWarmResolve,
  storeRoundTrips: runStore,
  rotationUnderLoad: runRotationUnderLoad,
  rotationPropagation: runPropagation,
  costGrowth: runGrowth,
  fleet: runFleetSection,
  rotationStall: runStall,
  coldStart: runColdStart,
} satisfies Record<string, (ctx: BenchContext) => Promise<SectionResult>>;
type SectionName = keyof typeof SECTIONS;

const { values } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    only: { type: 'string' },
    window: { type: 'string' },
    rounds: { type: 'string' },
    // Section 7 (fleet): see bench/sections/fleet.ts.
    'fleet-processes': { type: 'string' },
    'fleet-instances': { type: 'string' },
    'fleet-secrets': { type: 'string' },
    'fleet-quota': { type: 'string' },
    'fleet-vault-rate': { type: 'string' },
    'fleet-refresh-ms': { type: 'string' },
    'fleet-timeout-ms': { type: 'string' },
    'fleet-stores': { type: 'string' },
  },
});

const smoke = values.smoke ?? false;
const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(values.out ?? join(here, 'results.json'));
const windowMs = Number(values.window ?? (smoke ? 25 : 300));
const rounds = Number(values.rounds ?? (smoke ? 1 : 7));
if (!(windowMs > 0 && Number.isInteger(rounds) && rounds > 0)) {
  throw new Error('--window must be a positive number of milliseconds and --rounds a positive integer');
}
const only = values.only ? new Set(values.only.split(',')) : undefined;
for (const name of only ?? []) {
  if (!(name in SECTIONS))
    throw new Error(`unknown section ${name}; sections: ${Object.keys(SECTIONS).join(', ')}`);
}

const log = (text: string) => process.stderr.write(`${text}\n`);

/**
 * Warnings are counted and printed once each at the end, not once per occurrence: the resolver adds one
 * abort listener per reference to a cycle's signal, so N > 10 references warn on every refresh.
 */
const warnings = new Map<string, number>();
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  const key = `${warning.name}: ${warning.message.split('\n')[0]}`;
  warnings.set(key, (warnings.get(key) ?? 0) + 1);
});

async function main(): Promise<number> {
  const started = Date.now();
  log(`tls-secrets bench${smoke ? ' (smoke)' : ''}: window ${windowMs} ms x ${rounds} rounds`);
  const material = await createMaterial();
  const servers = await startServerProcess(
    (['ec', 'rsa'] as const).map((name) => {
      const m = material[name];
      return {
        name,
        caPem: m.ca.certPem,
        keyPem: m.server.keyPem,
        certPem: m.server.certPem,
        rotation: m.rotation.map(({ keyPem, certPem }) => ({ keyPem, certPem })),
      };
    }),
  );
  const ctx: BenchContext = { smoke, windowMs, rounds, material, servers, log, flags: values };

  const results: Record<string, SectionResult | { title: string; error: string }> = {};
  let broken = 0;
  try {
    for (const [name, run] of Object.entries(SECTIONS) as [
      SectionName,
      (c: BenchContext) => Promise<SectionResult>,
    ][]) {
      if (only && !only.has(name)) continue;
      const sectionStart = Date.now();
      log(`[${name}] ...`);
      try {
        const result = await run(ctx);
        results[name] = result;
        process.stdout.write(`\n== ${result.title} ==\n${result.tables.join('\n')}\n`);
      } catch (error) {
        broken += 1;
        const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
        results[name] = { title: name, error: message };
        process.stdout.write(`\n== ${name}: FAILED TO RUN ==\n${message}\n`);
      }
      log(`[${name}] ${((Date.now() - sectionStart) / 1000).toFixed(1)} s`);
    }
  } finally {
    await servers.close();
  }

  const targets: Target[] = Object.values(results).flatMap((r) => ('targets' in r ? r.targets : []));
  process.stdout.write(
    `${table(
      'Targets',
      ['section', 'target', 'value', 'goal', 'met'],
      targets.map((t) => [
        t.section,
        t.name,
        fmt(t.value, 2),
        `${t.comparison} ${t.threshold}`,
        t.met ? 'yes' : 'NO',
      ]),
    )}\n`,
  );
  for (const [warning, count] of warnings) process.stdout.write(`\nWarning (x${count}): ${warning}`);
  const durationMs = Date.now() - started;
  process.stdout.write(`\nTotal ${(durationMs / 1000).toFixed(1)} s\n`);

  const report = {
    meta: {
      startedAt: new Date(started).toISOString(),
      durationMs,
      smoke,
      windowMs,
      rounds,
      node: process.version,
      openssl: process.versions.openssl,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      serverPid: servers.pid,
      serverErrors: servers.errors,
      warnings: Object.fromEntries(warnings),
    },
    targets,
    sections: Object.fromEntries(
      Object.entries(results).map(([name, r]) => [
        name,
        'error' in r ? r : { title: r.title, targets: r.targets, data: r.data },
      ]),
    ),
  };
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  log(`results written to ${out}`);
  return broken === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exitCode = 1;
  },
);
