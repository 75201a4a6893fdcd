/**
 * `tls-secrets watch` as an operator runs it: a failing first load printed once and its recovery printed,
 * SIGINT and SIGTERM ending it cleanly (exit 0, the process leaves by itself: no timer or handle left), also
 * through `npx` with the built bin from a project that depends on the package. And `--version`.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts } from '../examples/check/make-certs.js';
import { createTestCA, type Issued } from './fixtures/ca.js';
import { eventually } from './helpers/tls.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const version = (JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { version: string })
  .version;
let dir: string;

type Child = ChildProcess & { output: { stdout: string; stderr: string } };

function start(command: string, args: string[], cwd: string, detached = false): Child {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], detached }) as Child;
  child.output = { stdout: '', stderr: '' };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    child.output.stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    child.output.stderr += chunk;
  });
  return child;
}

const tsxCli = (args: string[]) =>
  start(process.execPath, ['--import', 'tsx', join(root, 'cli', 'main.ts'), ...args], root);

function exited(child: Child): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) resolve({ code: child.exitCode, signal: null });
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tls-secrets-watch-'));
  await makeCerts(join(dir, 'certs'));
  await writeFile(
    join(dir, 'good.json'),
    JSON.stringify({
      providers: { certs: { type: 'file' } },
      tls: { key: 'certs:certs/server.key', cert: 'certs:certs/server.crt', ca: 'certs:certs/ca.pem' },
    }),
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tls-secrets watch', () => {
  it('prints a failing first load once, then the recovery and ready', async () => {
    const late = join(dir, 'late');
    await mkdir(late);
    const config = join(late, 'late.json');
    // The CLI retries a cold load after retryInitialDelayMs: 4 s leaves time to put the files in place.
    await writeFile(
      config,
      JSON.stringify({
        providers: { certs: { type: 'file' } },
        tls: { key: 'certs:server.key', cert: 'certs:server.crt' },
        options: { retryInitialDelayMs: 4_000 },
      }),
    );
    const child = tsxCli(['watch', config]);
    const done = exited(child);
    try {
      await eventually(() => expect(child.output.stdout).toMatch(/error NOT_FOUND: .*field cert/), 15_000);
      await cp(join(dir, 'certs', 'server.key'), join(late, 'server.key'));
      await cp(join(dir, 'certs', 'server.crt'), join(late, 'server.crt'));
      await eventually(() => expect(child.output.stdout).toMatch(/ready generation 1/), 15_000);
      // One line per missing field, each once (the listener and the rejection of resolve() see the same error).
      expect(child.output.stdout.match(/error NOT_FOUND: .*field key,/g)).toHaveLength(1);
      expect(child.output.stdout.match(/error NOT_FOUND: .*field cert,/g)).toHaveLength(1);
      expect(child.output.stdout).toMatch(/recovered: serving generation 1 \(first load\) \(trouble since /);
    } finally {
      child.kill('SIGTERM');
    }
    expect((await done).code).toBe(0);
    expect(child.output.stderr).toContain('tls-secrets: SIGTERM, stopping');
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('stops cleanly on %s', async (signal) => {
    const child = tsxCli(['watch', join(dir, 'good.json')]);
    const done = exited(child);
    await eventually(() => expect(child.output.stdout).toMatch(/ready generation 1/), 15_000);
    child.kill(signal);
    expect(await done).toEqual({ code: 0, signal: null });
    expect(child.output.stderr).toBe(`tls-secrets: ${signal}, stopping\n`);
  });

  it('lets go of a rotated-out bundle: no line of the first key is in its heap after a rotation', async () => {
    const rotating = join(dir, 'rotating');
    const snapshots = join(rotating, 'snapshots');
    await mkdir(snapshots, { recursive: true });
    const ca = await createTestCA();
    const [first, second] = [await ca.issue(), await ca.issue()];
    const write = async (leaf: Issued) => {
      await writeFile(join(rotating, 'server.key'), leaf.keyPem);
      await writeFile(join(rotating, 'server.crt'), leaf.certPem);
    };
    await write(first);
    const config = join(rotating, 'tls.json');
    await writeFile(
      config,
      JSON.stringify({
        providers: { certs: { type: 'file' } },
        tls: { key: 'certs:server.key', cert: 'certs:server.crt' },
      }),
    );
    // A heap snapshot holds only what is reachable (V8 collects garbage first).
    const child = start(
      process.execPath,
      [
        '--heapsnapshot-signal=SIGUSR2',
        `--diagnostic-dir=${snapshots}`,
        '--import',
        'tsx',
        join(root, 'cli', 'main.ts'),
        'watch',
        config,
      ],
      root,
    );
    const done = exited(child);
    // A line from the middle of each key: text no certificate or log line carries.
    const keyLine = (leaf: Issued) => leaf.keyPem.split('\n')[2] as string;
    try {
      await eventually(() => expect(child.output.stdout).toMatch(/ready generation 1/), 15_000);
      await write(second);
      await eventually(() => expect(child.output.stdout).toMatch(/rotate generation 2/), 15_000);
      child.kill('SIGUSR2');
      const snapshot = await eventually(async () => {
        const [name] = (await readdir(snapshots)).filter((file) => file.endsWith('.heapsnapshot'));
        expect(name).toBeDefined();
        const text = await readFile(join(snapshots, name as string), 'utf8');
        // Written in pieces: complete once it parses.
        JSON.parse(text);
        return text;
      }, 30_000);
      expect(snapshot.includes(keyLine(second))).toBe(true);
      expect(snapshot.includes(keyLine(first))).toBe(false);
    } finally {
      child.kill('SIGTERM');
    }
    expect((await done).code).toBe(0);
  });

  it('--help points at docs the user can reach (the npm package ships no docs/)', async () => {
    const child = tsxCli(['--help']);
    expect((await exited(child)).code).toBe(0);
    expect(child.output.stdout).toContain('https://github.com/tls-secrets/tls-secrets/blob/main/docs/cli.md');
    expect(child.output.stdout).not.toMatch(/See docs\//);
  });

  it('--version prints the package version', async () => {
    const child = tsxCli(['--version']);
    expect((await exited(child)).code).toBe(0);
    expect(child.output.stdout).toBe(`${version}\n`);
  });
});

describe('the built bin through npx', () => {
  let project: string;

  beforeAll(async () => {
    // A project that depends on tls-secrets: the package as npm would install it (package.json and a build
    // of its own, so the repo's dist is not touched by this test), its bin linked into node_modules/.bin.
    project = join(dir, 'project');
    const installed = join(project, 'node_modules', 'tls-secrets');
    await mkdir(join(project, 'node_modules', '.bin'), { recursive: true });
    await mkdir(installed, { recursive: true });
    await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'app', private: true }));
    await cp(join(root, 'package.json'), join(installed, 'package.json'));
    execFileSync(
      'npx',
      ['tsup', '--silent', '--no-dts', '--format', 'esm', '--out-dir', join(installed, 'dist')],
      { cwd: root, stdio: 'pipe', timeout: 120_000 },
    );
    await symlink('../tls-secrets/dist/cli.js', join(project, 'node_modules', '.bin', 'tls-secrets'));
    await cp(join(dir, 'certs'), join(project, 'certs'), { recursive: true });
    await cp(join(dir, 'good.json'), join(project, 'tls.json'));
  }, 150_000);

  it('--version works from the build', async () => {
    const child = start('npx', ['--no-install', 'tls-secrets', '--version'], project);
    expect((await exited(child)).code).toBe(0);
    expect(child.output.stdout).toBe(`${version}\n`);
  });

  /** Whether any process of the group (npm, the shell it runs the bin in, the CLI) is still alive. */
  const groupAlive = (pgid: number) => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it.each([
    // Ctrl-C in a terminal: the whole foreground process group gets SIGINT.
    ['Ctrl-C (SIGINT to the process group)', 'SIGINT', 'group', 'tls-secrets: SIGINT, stopping'],
    ['SIGTERM to the process group', 'SIGTERM', 'group', 'tls-secrets: SIGTERM, stopping'],
    // docker stop / Kubernetes signal npx alone: npm passes it to its shell only, the shell dies, and the
    // CLI sees its parent go.
    ['SIGTERM to npx alone (docker stop)', 'SIGTERM', 'npx', 'tls-secrets: npm exec (npx) ended, stopping'],
  ] as const)(
    'watch stops cleanly on %s',
    async (_what, signal, target, message) => {
      const child = start('npx', ['--no-install', 'tls-secrets', 'watch', 'tls.json'], project, true);
      const pgid = child.pid as number;
      const done = exited(child);
      try {
        await eventually(
          () => expect(child.output.stdout, child.output.stderr).toMatch(/ready generation 1/),
          30_000,
        );
        if (target === 'group') process.kill(-pgid, signal);
        else child.kill(signal);
        // npm ends by re-raising the signal to itself (its own convention); what matters is the CLI: it
        // says why it stops, once, and leaves by itself (its pipes close only when it has exited).
        await done;
        await eventually(() => expect(groupAlive(pgid)).toBe(false), 10_000);
        expect(child.output.stderr).toBe(`${message}\n`);
      } finally {
        if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
      }
    },
    60_000,
  );
});
