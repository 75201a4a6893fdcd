/**
 * One build and one `npm pack` per test run, shared by the test files that check the published shape
 * (test/build.test.ts, test/consumer-types.test.ts). Test files run in parallel processes: the first to ask
 * takes a lock (an exclusive mkdir) and packs (npm pack builds into `dist/` first, see package.json's
 * prepack); the others wait for its result file.
 * Building twice at once would have one build's `clean` delete the other's output.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { inject } from 'vitest';

export const root = new URL('..', new URL('..', import.meta.url)).pathname;

export interface Packed {
  /** The tarball `npm pack` wrote, as a registry would serve it. */
  tarball: string;
  /** The paths it holds, as `npm pack --json` lists them. */
  files: string[];
}

/**
 * What the build and the tarball are made of, hashed: in watch mode the run lasts across edits, and an edit
 * must get a new build rather than the first one.
 */
function inputsHash(): string {
  const hash = createHash('sha256');
  const paths = [
    'src',
    'providers',
    'config',
    'cli',
    'package.json',
    'tsup.config.ts',
    'README.md',
    'LICENSE',
    'docs/cli.md',
  ];
  for (const path of paths) {
    const full = join(root, path);
    if (!existsSync(full)) continue;
    const files = statSync(full).isDirectory()
      ? readdirSync(full, { recursive: true, encoding: 'utf8' })
          .map((name) => join(full, name))
          .filter((file) => statSync(file).isFile())
          .sort()
      : [full];
    for (const file of files) hash.update(file).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

function build(dir: string): Packed {
  // `npm pack` builds first (the prepack script, tsup into dist/): a tarball is never packed from a stale
  // dist/. Its banner goes to stderr; stdout is the JSON report.
  const [report] = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--pack-destination', dir], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 180_000,
    }),
  ) as [{ filename: string; files: { path: string }[] }];
  return { tarball: join(dir, report.filename), files: report.files.map((file) => file.path) };
}

/** The result file, as soon as the build that owns the lock writes it. */
function waitFor(file: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const watcher = watch(join(file, '..'));
    const timer = setTimeout(() => finish(new Error(`no ${file} after ${timeoutMs} ms`)), timeoutMs);
    const finish = (error?: Error) => {
      watcher.close();
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(readFileSync(file, 'utf8'));
    };
    watcher.on('change', () => existsSync(file) && finish());
    // Written before the watcher started: no event will come.
    if (existsSync(file)) finish();
  });
}

/** Builds and packs the package once per run; every caller gets the same tarball. */
export async function packed(): Promise<Packed> {
  const dir = join(inject('packDir'), inputsHash());
  mkdirSync(dir, { recursive: true });
  const result = join(dir, 'packed.json');
  try {
    mkdirSync(join(dir, 'lock'));
  } catch {
    const outcome = JSON.parse(await waitFor(result, 170_000)) as Packed | { error: string };
    if ('error' in outcome) throw new Error(`the shared build failed: ${outcome.error}`);
    return outcome;
  }
  let outcome: Packed | { error: string };
  try {
    outcome = build(dir);
  } catch (error) {
    const failure = error as Error & { stderr?: Buffer | string };
    outcome = { error: `${failure.message}\n${failure.stderr?.toString() ?? ''}` };
  }
  // Written whole under another name first, so a waiter never reads half a file.
  writeFileSync(`${result}.part`, JSON.stringify(outcome));
  renameSync(`${result}.part`, result);
  if ('error' in outcome) throw new Error(outcome.error);
  return outcome;
}
