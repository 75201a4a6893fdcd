/**
 * The package as a consumer gets it: the packed tarball unpacked into a bare project's node_modules, with
 * nothing else installed but typescript and @types/node (linked from ours). There, with `skipLibCheck: false`
 * (the compiler's default) and `strict`, every entry point whose declarations need no optional peer must
 * type-check for ESM and CommonJS projects under `nodenext` and `bundler` resolution, and the entries that do
 * need one type-check once it is installed. At run time every entry point loads with no optional package
 * resolvable. attw and publint judge the same tarball. Entry points are read from package.json `exports`, so
 * a new one is covered without touching this file.
 */
import { execFile, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Packed, packed, root } from './helpers/packed.js';

const run = promisify(execFile);

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  files: string[];
  license: string;
  repository: { url: string };
  homepage: string;
  bugs: { url: string };
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};
const entries = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => key.replace(/^\./, 'tls-secrets'));
const optionalPeers = Object.entries(pkg.peerDependenciesMeta)
  .filter(([, meta]) => meta.optional)
  .map(([name]) => name);

/**
 * The entry points whose declarations import an optional peer, and which: those peers are what the entry is
 * for (its types are undici's, OpenTelemetry's, the SDK's). Every other entry, new ones included, must
 * type-check with no optional package installed.
 */
const NEEDS_PEER: Record<string, string[]> = {
  'tls-secrets/undici': ['undici'],
  'tls-secrets/otel': ['@opentelemetry/api'],
  'tls-secrets/grpc': ['@grpc/grpc-js'],
  'tls-secrets/providers/aws-secrets-manager': ['@aws-sdk/client-secrets-manager'],
  'tls-secrets/providers/aws-ssm': ['@aws-sdk/client-ssm'],
};
const lean = entries.filter((entry) => !(entry in NEEDS_PEER));

let tarball: Packed;
const projects: string[] = [];
afterAll(() => {
  for (const dir of projects) rmSync(dir, { recursive: true, force: true });
});

interface ProjectOptions {
  type: 'module' | 'commonjs';
  module: 'nodenext' | 'esnext';
  moduleResolution: 'nodenext' | 'bundler';
  /** Packages linked from our node_modules besides typescript and @types/node. */
  peers?: readonly string[];
  source: string;
}

function link(dir: string, name: string): void {
  const target = join(dir, 'node_modules', name);
  mkdirSync(dirname(target), { recursive: true });
  symlinkSync(join(root, 'node_modules', name), target);
}

/** A bare project in a temporary directory: the tarball unpacked as node_modules/tls-secrets, nothing else. */
function project(options: ProjectOptions): string {
  const dir = mkdtempSync(join(tmpdir(), 'tls-secrets-consumer-'));
  projects.push(dir);
  const installed = join(dir, 'node_modules', 'tls-secrets');
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball.tarball, '-C', installed, '--strip-components=1']);
  for (const name of ['typescript', '@types/node', ...(options.peers ?? [])]) link(dir, name);
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: options.type }),
  );
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        skipLibCheck: false,
        noEmit: true,
        target: 'ES2022',
        lib: ['ES2023'],
        types: ['node'],
        module: options.module,
        moduleResolution: options.moduleResolution,
      },
      files: ['index.ts'],
    }),
  );
  writeFileSync(join(dir, 'index.ts'), options.source);
  return dir;
}

/** The compiler's diagnostics for the project, '' when it type-checks. */
async function typeCheck(dir: string): Promise<string> {
  try {
    await run(process.execPath, [join(dir, 'node_modules/typescript/bin/tsc'), '-p', dir], {
      cwd: dir,
      timeout: 120_000,
    });
    return '';
  } catch (error) {
    const failure = error as { stdout?: string; stderr?: string; message: string };
    return `${failure.stdout ?? ''}${failure.stderr ?? ''}` || failure.message;
  }
}

/** Imports every given entry point as a namespace, and uses a few real symbols of the lean ones. */
function consumerSource(imported: readonly string[]): string {
  const namespaces = imported.map((entry, i) => `import * as entry${i} from '${entry}';`).join('\n');
  return `${namespaces}
import { connect, createResolver, SecretNotFoundError, type Resolver, type TlsSecretsSpec } from 'tls-secrets';
import { memory } from 'tls-secrets/providers/memory';
import { file } from 'tls-secrets/providers/file';

export const entryPoints: object[] = [${imported.map((_, i) => `entry${i}`).join(', ')}];

export async function main(): Promise<void> {
  const store = memory({ key: 'k', cert: 'c' });
  const spec: TlsSecretsSpec = { key: store.ref('key'), cert: file().ref('/etc/tls/cert.pem') };
  const resolver: Resolver = createResolver(spec, { refreshIntervalMs: 60_000 });
  try {
    const socket = await connect(resolver, { host: 'db.internal', port: 5432, servername: 'db.internal' });
    socket.end();
  } catch (error) {
    if (!(error instanceof SecretNotFoundError)) throw error;
  } finally {
    await resolver.close();
  }
}
`;
}

beforeAll(async () => {
  tarball = await packed();
}, 180_000);

describe('the packed tarball in a bare consumer project, skipLibCheck: false', () => {
  it('knows every entry point that needs a peer, and only real entry points', () => {
    for (const [entry, peers] of Object.entries(NEEDS_PEER)) {
      expect(entries, entry).toContain(entry);
      for (const peer of peers) expect(optionalPeers, `${entry} needs ${peer}`).toContain(peer);
    }
    expect(lean).toContain('tls-secrets');
  });

  it.each([
    ['ESM', 'nodenext', 'nodenext', 'module'],
    ['CommonJS', 'nodenext', 'nodenext', 'commonjs'],
    ['ESM', 'esnext', 'bundler', 'module'],
    ['CommonJS', 'esnext', 'bundler', 'commonjs'],
  ] as const)(
    '%s project, module %s, moduleResolution %s: every lean entry point type-checks with no optional peer',
    async (_, module, moduleResolution, type) => {
      const dir = project({ type, module, moduleResolution, source: consumerSource(lean) });
      expect(await typeCheck(dir)).toBe('');
    },
  );

  it('an entry that needs a peer fails without it (so the lean projects prove something)', async () => {
    const dir = project({
      type: 'module',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      source: `${consumerSource(lean)}export type { DispatcherOptions } from 'tls-secrets/undici';\n`,
    });
    expect(await typeCheck(dir)).toMatch(/Cannot find module 'undici'/);
  });

  it('with the peers installed, every entry point type-checks, the undici and otel ones used', async () => {
    const dir = project({
      type: 'module',
      module: 'nodenext',
      moduleResolution: 'nodenext',
      peers: [...new Set(Object.values(NEEDS_PEER).flat())],
      source: `${consumerSource(entries)}
import { createDispatcher, type DispatcherOptions } from 'tls-secrets/undici';
import { instrument, METRICS, type Instrumentation, type InstrumentOptions } from 'tls-secrets/otel';
import { metrics } from '@opentelemetry/api';

export async function observed(resolver: Resolver): Promise<Instrumentation> {
  const options: DispatcherOptions = { connections: 4, connect: { timeout: 1_000 } };
  const dispatcher = await createDispatcher(resolver, options);
  await dispatcher.close();
  const settings: InstrumentOptions = { meter: metrics.getMeter('app'), attributes: { app: 'x' } };
  const expiry: string = METRICS.expiry;
  return instrument(resolver, { ...settings, attributes: { metric: expiry } });
}
`,
    });
    expect(await typeCheck(dir)).toBe('');
  });
});

describe('the packed tarball at run time, no optional package resolvable', () => {
  let dir: string;
  beforeAll(() => {
    dir = project({ type: 'module', module: 'nodenext', moduleResolution: 'nodenext', source: '' });
  });

  const node = (args: string[]) =>
    execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });

  it('no optional peer can be found from the project', () => {
    const script = `
      const found = ${JSON.stringify(optionalPeers)}.filter((name) => {
        try { require.resolve(name); return true; } catch { return false; }
      });
      console.log(JSON.stringify(found));`;
    expect(JSON.parse(node(['-e', script]))).toEqual([]);
  });

  it('every entry point loads as ESM and through require', () => {
    const esm = `
      const loaded = await Promise.all(${JSON.stringify(entries)}.map(async (name) => [name, Object.keys(await import(name)).length]));
      console.log(JSON.stringify(Object.fromEntries(loaded)));`;
    const cjs = `console.log(JSON.stringify(Object.fromEntries(${JSON.stringify(entries)}.map((name) => [name, Object.keys(require(name)).length]))));`;
    for (const output of [node(['--input-type=module', '-e', esm]), node(['-e', cjs])]) {
      const counts = JSON.parse(output) as Record<string, number>;
      expect(Object.keys(counts).sort()).toEqual([...entries].sort());
      for (const [entry, count] of Object.entries(counts)) expect(count, entry).toBeGreaterThan(0);
    }
  });

  it('importing an entry point changes nothing outside it (what `sideEffects` promises bundlers)', () => {
    // Node's own modules the build uses are loaded first: some do something when loaded (node:http2 opens
    // stderr), which is Node's doing, not the package's.
    const builtins = readdirSync(join(dir, 'node_modules/tls-secrets/dist'), {
      recursive: true,
      encoding: 'utf8',
    })
      .filter((path) => /\.c?js$/.test(path))
      .flatMap((path) => [
        ...readFileSync(join(dir, 'node_modules/tls-secrets/dist', path), 'utf8').matchAll(
          /(?:from |require\()["'](?:node:)?([\w/]+)["']/g,
        ),
      ])
      .map(([, name]) => name as string)
      .filter((name) => builtinModules.includes(name));
    expect(builtins).toContain('tls');
    const preload = `for (const name of ${JSON.stringify([...new Set(builtins)])}) await import('node:' + name);`;
    // Then globals, process listeners and live handles (timers, sockets, watchers) before and after loading all.
    const snapshot = `(() => ({
        globals: Object.getOwnPropertyNames(globalThis).sort(),
        listeners: process.eventNames().map((name) => [String(name), process.listenerCount(name)]),
        resources: process.getActiveResourcesInfo().sort(),
      }))()`;
    const esm = `
      ${preload}
      const before = ${snapshot};
      for (const name of ${JSON.stringify(entries)}) await import(name);
      console.log(JSON.stringify({ before, after: ${snapshot} }));`;
    const cjs = `(async () => {
      ${preload}
      const before = ${snapshot};
      for (const name of ${JSON.stringify(entries)}) require(name);
      console.log(JSON.stringify({ before, after: ${snapshot} }));
    })()`;
    for (const output of [node(['--input-type=module', '-e', esm]), node(['-e', cjs])]) {
      const { before, after } = JSON.parse(output) as { before: unknown; after: unknown };
      expect(after).toEqual(before);
    }
    const sideEffects = (
      JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { sideEffects: string[] }
    ).sideEffects;
    // Only the bin does something when loaded.
    expect(sideEffects).toEqual(['./dist/cli.js', './dist/cli.cjs']);
  });

  it('instrument() and createDispatcher() reject with a ConfigurationError naming the missing package', () => {
    const script = `
      const { ConfigurationError, createResolver } = await import('tls-secrets');
      const { memory } = await import('tls-secrets/providers/memory');
      const resolver = createResolver({ ca: memory().ref('ca') });
      const outcomes = [];
      for (const attempt of [
        async () => (await import('tls-secrets/otel')).instrument(resolver),
        async () => (await import('tls-secrets/undici')).createDispatcher(resolver),
      ]) {
        const error = await attempt().then(() => undefined, (e) => e);
        outcomes.push({ configuration: error instanceof ConfigurationError, message: error?.message });
      }
      await resolver.close();
      console.log(JSON.stringify(outcomes));`;
    expect(JSON.parse(node(['--input-type=module', '-e', script]))).toEqual([
      {
        configuration: true,
        message:
          'instrument() needs the optional package "@opentelemetry/api", which could not be loaded (npm install @opentelemetry/api)',
      },
      {
        configuration: true,
        message:
          'createDispatcher needs the optional package "undici", which could not be loaded (npm install undici)',
      },
    ]);
  });

  it('the bin runs, and every document its --help names is in the tarball', () => {
    const help = node([join(dir, 'node_modules/tls-secrets/dist/cli.js'), '--help']);
    expect(help).toContain('Usage: tls-secrets');
    const named = [...help.matchAll(/\b(?:docs|examples)\/[\w./-]+\.md\b/g)].map(([path]) => path);
    for (const path of named) expect(tarball.files, `--help names ${path}`).toContain(path);
  });
});

describe('attw and publint on the packed tarball', () => {
  // Their scripts run by this Node, not whichever `node` comes first on PATH.
  const cli = { attw: '@arethetypeswrong/cli/dist/index.js', publint: 'publint/src/cli.js' };
  const tool = (name: keyof typeof cli, args: string[]) =>
    run(process.execPath, [join(root, 'node_modules', cli[name]), ...args], { cwd: root, timeout: 120_000 });

  it('attw: no problem for node16 (ESM and CommonJS) or bundler resolution', async () => {
    // The node16 profile checks node16-cjs, node16-esm and bundler; it ignores node10 (no exports map).
    const result = await tool('attw', [tarball.tarball, '--profile', 'node16', '--format', 'json']).catch(
      (error: Error & { stdout: string }) => error,
    );
    const { analysis } = JSON.parse(result.stdout) as {
      analysis: { problems: { kind: string; entrypoint?: string; resolutionKind?: string }[] };
    };
    const problems = analysis.problems.filter((problem) => problem.resolutionKind !== 'node10');
    expect(problems).toEqual([]);
    expect(result).not.toBeInstanceOf(Error);
  });

  it('publint: no error, warning or suggestion', async () => {
    const { stdout } = await tool('publint', ['run', tarball.tarball, '--strict', '--level', 'suggestion']);
    expect(stdout).toContain('All good!');
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

describe('the registry page', () => {
  it("links the repository, so the README's relative links resolve there, and ships the licence", () => {
    expect(pkg.repository.url).toBe('git+https://github.com/tls-secrets/tls-secrets.git');
    expect(pkg.homepage).toBe('https://github.com/tls-secrets/tls-secrets#readme');
    expect(pkg.bugs.url).toBe('https://github.com/tls-secrets/tls-secrets/issues');
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 /);
    expect(tarball.files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json']));
  });

  it('every relative link of the README names a file of the repository, and its heading when it has an anchor', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)]
      .map(([, target]) => target as string)
      .filter((target) => !/^[a-z]+:/.test(target));
    expect(links.length).toBeGreaterThan(5);
    for (const link of links) {
      const [path = '', anchor] = link.split('#');
      const file = path === '' ? 'README.md' : path;
      expect(existsSync(join(root, file)), link).toBe(true);
      if (anchor === undefined) continue;
      const headings = [...readFileSync(join(root, file), 'utf8').matchAll(/^#{1,6} (.+)$/gm)].map(
        ([, text]) => anchorOf(text as string),
      );
      expect(headings, link).toContain(anchor);
    }
  });
});
