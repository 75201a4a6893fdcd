/**
 * `npm run bench` must keep working: its ~1 s smoke variant runs as a child process (as a user would run it)
 * and must exit 0 with a results file holding all nine sections. Figures are not asserted: absolute times
 * depend on the machine, and the smoke windows are too short for ratios to mean anything.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';

const SECTIONS = [
  'handshakes',
  'warmResolve',
  'storeRoundTrips',
  'rotationUnderLoad',
  'rotationPropagation',
  'costGrowth',
  'fleet',
  'rotationStall',
  'coldStart',
];

const root = join(import.meta.dirname, '..');
let dir = '';
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tls-secrets-bench-smoke-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function runBench(out: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      join(root, 'node_modules', '.bin', 'tsx'),
      ['bench/run.ts', '--smoke', '--out', out],
      { cwd: root, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => resolve({ code: error ? (child.exitCode ?? 1) : 0, stdout, stderr }),
    );
  });
}

it('bench --smoke exits 0 and writes every section to the file given with --out', async () => {
  const out = join(dir, 'results.json');
  const realResults = join(root, 'bench', 'results.json');
  const realBefore = await stat(realResults).then(
    (s) => s.mtimeMs,
    () => undefined,
  );
  const { code, stdout, stderr } = await runBench(out);
  expect(code, `bench failed:\n${stdout}\n${stderr}`).toBe(0);
  // --out is honoured: a test run never overwrites the figures of the last real run.
  expect(
    await stat(realResults).then(
      (s) => s.mtimeMs,
      () => undefined,
    ),
  ).toBe(realBefore);

  const report = JSON.parse(await readFile(out, 'utf8')) as {
    meta: { smoke: boolean };
    sections: Record<string, { title?: string; data?: unknown; error?: string }>;
    targets: { section: string; name: string; value: number; met: boolean }[];
  };
  expect(report.meta.smoke).toBe(true);
  expect(Object.keys(report.sections).sort()).toEqual([...SECTIONS].sort());
  for (const name of SECTIONS) {
    const section = report.sections[name];
    expect(section?.error, `${name} did not run`).toBeUndefined();
    expect(section?.data, `${name} has no figures`).toBeTruthy();
  }
  // Every section's table is printed.
  for (const heading of [
    '1. Handshakes',
    '2. Warm resolve',
    '3. Store',
    '4. Rotation under load',
    '5. Rotation propagation',
    '6. Cost growth',
    '7. Fleet',
    '8. Rotation stall',
    '9. Cold start',
  ]) {
    expect(stdout).toContain(heading);
  }
  // Failures are counted, not hidden: a smoke run makes no failed handshake anywhere.
  const failures = report.targets.filter((t) => /failed/.test(t.name));
  expect(failures.length).toBeGreaterThan(0);
  for (const failure of failures) expect(failure, failure.name).toMatchObject({ value: 0 });
}, 180_000);
