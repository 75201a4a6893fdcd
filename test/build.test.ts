/**
 * The published shape: ESM and CommonJS builds with declarations, every subpath export loadable in both,
 * one copy of the error classes across entry points, and store SDKs not loaded by importing a provider.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { packed } from './helpers/packed.js';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => key.replace(/^\./, 'tls-secrets'));

/** The names a declaration file exports as values (what a consumer may use at run time), by the compiler. */
function declaredValues(file: string): string[] {
  const program = ts.createProgram([file], { noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file);
  const module = source && checker.getSymbolAtLocation(source);
  if (!module) throw new Error(`no module symbol for ${file}`);
  return checker
    .getExportsOfModule(module)
    .filter((symbol) => {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      return (target.flags & ts.SymbolFlags.Value) !== 0;
    })
    .map((symbol) => symbol.name)
    .sort();
}

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8', timeout: 30_000 });
}

describe('build', () => {
  // The run's one build (shared with test/consumer-types.test.ts): tsup into dist/, then npm pack.
  beforeAll(packed, 180_000);

  it('emits ESM, CommonJS and declarations for every export', () => {
    for (const entry of Object.values(pkg.exports)) {
      if (typeof entry === 'string') continue;
      const { import: esm, require: cjs } = entry as Record<string, { types: string; default: string }>;
      for (const file of [esm?.types, esm?.default, cjs?.types, cjs?.default]) {
        expect(file && existsSync(`${root}${file}`), `${file}`).toBe(true);
      }
    }
  });

  it('every subpath loads through CommonJS, without loading a store SDK', () => {
    const script = `
      const loaded = ${JSON.stringify(subpaths)}.map((name) => Object.keys(require(name)).length);
      const sdks = Object.keys(require.cache).filter((f) => /node_modules\\/(node-vault|@aws-sdk)\\//.test(f));
      const { createResolver, SecretNotFoundError } = require('tls-secrets');
      const { memory } = require('tls-secrets/providers/memory');
      createResolver({ ca: memory().ref('missing') }).resolve().catch((e) => {
        console.log(JSON.stringify({ loaded, sdks, sameClass: e instanceof SecretNotFoundError }));
      });`;
    const result = JSON.parse(node(['-e', script])) as {
      loaded: number[];
      sdks: string[];
      sameClass: boolean;
    };
    expect(result.loaded.every((count) => count > 0)).toBe(true);
    expect(result.sdks).toEqual([]);
    expect(result.sameClass).toBe(true);
  });

  it('errors keep their class across the ESM and CommonJS builds: a CommonJS provider under the ESM resolver', () => {
    // A third-party provider on the CommonJS provider kit, used by the ESM resolver (as the ESM CLI loads a
    // CommonJS adapter): its not-found must stay a not-found, not become a transient "fetch failed".
    const script = `
      import { createRequire } from 'node:module';
      import { createResolver, SecretNotFoundError, FetchError, TlsSecretsError } from 'tls-secrets';
      const require = createRequire(import.meta.url);
      const kit = require('tls-secrets/provider-kit');
      const cjs = require('tls-secrets');
      const provider = {
        name: 'cjs-store',
        fetch: (ref) => Promise.reject(new cjs.SecretNotFoundError('no such secret', { ref: kit.describeRef(ref) })),
      };
      const error = await createResolver({ ca: kit.createRef(provider, 'missing') }).resolve().catch((e) => e);
      const denied = new cjs.FetchError('denied', { transient: false });
      console.log(JSON.stringify({
        code: error.code,
        // the CommonJS build once named every error class _class2, _class3, …
        name: error.name,
        names: [new cjs.FetchError('x').name, new cjs.ClosedError('r').name, cjs.InvalidMaterialError.name],
        notFound: error instanceof SecretNotFoundError,
        base: error instanceof TlsSecretsError,
        cjsNotFound: error instanceof cjs.SecretNotFoundError,
        deniedIsFetch: denied instanceof FetchError,
        deniedIsNotFound: denied instanceof SecretNotFoundError,
        plain: new Error('x') instanceof TlsSecretsError,
      }));`;
    const result = JSON.parse(node(['--input-type=module', '-e', script])) as Record<string, unknown>;
    expect(result).toEqual({
      code: 'NOT_FOUND',
      name: 'SecretNotFoundError',
      names: ['FetchError', 'ClosedError', 'InvalidMaterialError'],
      notFound: true,
      base: true,
      cjsNotFound: true,
      deniedIsFetch: true,
      deniedIsNotFound: false,
      plain: false,
    });
  });

  it('every value the declarations export exists at run time, for ESM and CommonJS, on every entry point', () => {
    const entries = Object.values(pkg.exports).filter((entry) => typeof entry !== 'string') as Record<
      string,
      { types: string; default: string }
    >[];
    for (const { import: esm, require: cjs } of entries) {
      for (const [flavour, files] of [
        ['esm', esm],
        ['cjs', cjs],
      ] as const) {
        if (!files) continue;
        const declared = declaredValues(`${root}${files.types}`);
        const load =
          flavour === 'esm'
            ? `import(${JSON.stringify(`${root}${files.default}`)}).then((m) => console.log(JSON.stringify(Object.keys(m))))`
            : `console.log(JSON.stringify(Object.keys(require(${JSON.stringify(`${root}${files.default}`)}))))`;
        const present = new Set(JSON.parse(node(['-e', load])) as string[]);
        const missing = declared.filter((name) => !present.has(name));
        expect(missing, `${files.types} declares values that ${files.default} does not export`).toEqual([]);
      }
    }
    // Two compiler programs and two node processes per entry point: minutes on a loaded machine.
  }, 180_000);

  it('every subpath loads as ESM', () => {
    const script = `
      const names = ${JSON.stringify(subpaths)};
      const modules = await Promise.all(names.map((name) => import(name)));
      const { SecretNotFoundError, createResolver } = modules[0];
      const { memory } = await import('tls-secrets/providers/memory');
      const error = await createResolver({ ca: memory().ref('missing') }).resolve().catch((e) => e);
      console.log(JSON.stringify({ exports: modules.map((m) => Object.keys(m).length), sameClass: error instanceof SecretNotFoundError }));`;
    const result = JSON.parse(node(['--input-type=module', '-e', script])) as {
      exports: number[];
      sameClass: boolean;
    };
    expect(result.exports.every((count) => count > 0)).toBe(true);
    expect(result.sameClass).toBe(true);
  });

  it('the built tls-secrets/testing registers its cases with any describe/it and runs them on a provider', () => {
    // A framework of ten lines: what the suite needs of vitest, jest or node:test is describe, it and it.skip.
    const script = `
      import { providerConformance } from 'tls-secrets/testing';
      import { ClosedError } from 'tls-secrets/provider-kit';
      import { ClosedError as MainClosedError } from 'tls-secrets';
      import { memory } from 'tls-secrets/providers/memory';
      const cases = [];
      const it = (name, body) => cases.push({ name, body });
      it.skip = (name) => cases.push({ name, skipped: true });
      const describe = (name, body) => body();
      providerConformance({
        name: 'memory (built)',
        capabilities: { watch: true, probe: true, binary: true, batch: 'none', deny: 'none', unreachable: 'none', abort: 'none', closeEndsFetch: 'none' },
        async setup() {
          const store = memory();
          let calls = 0;
          const fetch = store.fetch.bind(store);
          store.fetch = (ref, signal) => (calls++, fetch(ref, signal));
          return { provider: store, put: async (n, v) => store.set(n, v), ref: (n, o) => store.ref(n, o), storeCalls: () => calls, close: async () => {} };
        },
      }, { describe, it });
      const failed = [];
      for (const c of cases) if (!c.skipped) await c.body().catch((e) => failed.push(c.name + ': ' + e.message));
      console.log(JSON.stringify({ ran: cases.filter((c) => !c.skipped).length, skipped: cases.filter((c) => c.skipped).map((c) => c.name), failed, sameClosed: ClosedError === MainClosedError }));`;
    const result = JSON.parse(node(['--input-type=module', '-e', script])) as {
      ran: number;
      skipped: string[];
      failed: string[];
      sameClosed: boolean;
    };
    expect(result.failed).toEqual([]);
    expect(result.ran).toBeGreaterThanOrEqual(8);
    expect(result.skipped.length).toBeGreaterThan(0);
    for (const name of result.skipped) expect(name).toMatch(/\(skipped: none\)$/);
    expect(result.sameClosed).toBe(true);
  });

  it('the built suite runs under node:test, its skips reported as skips', () => {
    // Inside the package, so that `tls-secrets/…` resolves to this package's exports (self-reference).
    const dir = mkdtempSync(join(root, '.node-test-'));
    const file = join(dir, 'memory.test.mjs');
    try {
      writeFileSync(
        file,
        `import { describe, it } from 'node:test';
        import { providerConformance } from 'tls-secrets/testing';
        import { memory } from 'tls-secrets/providers/memory';
        providerConformance({
          name: 'memory under node:test',
          capabilities: { watch: true, probe: true, binary: true, batch: 'no', deny: 'no', unreachable: 'no', abort: 'no', closeEndsFetch: 'no' },
          async setup() {
            const store = memory();
            let calls = 0;
            const fetch = store.fetch.bind(store);
            store.fetch = (ref, signal) => (calls++, fetch(ref, signal));
            return { provider: store, put: async (n, v) => store.set(n, v), ref: (n, o) => store.ref(n, o), storeCalls: () => calls, close: async () => {} };
          },
        }, { describe, it });`,
      );
      const output = execFileSync(process.execPath, ['--test', '--test-reporter=tap', file], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(output).toMatch(/^# fail 0$/m);
      expect(output).toMatch(/^# skipped [1-9]$/m);
      expect(Number(/^# pass (\d+)$/m.exec(output)?.[1])).toBeGreaterThanOrEqual(8);
      // Each skip says why, in the report.
      expect(output).toMatch(/\(skipped: no\) # SKIP/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
