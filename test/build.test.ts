/**
 * The published shape: ESM and CommonJS builds with declarations, every subpath export loadable in both,
 * one copy of the error classes across entry points, and store SDKs not loaded by importing a provider.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';

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
  beforeAll(() => {
    execFileSync('npx', ['tsup', '--silent'], { cwd: root, stdio: 'pipe', timeout: 120_000 });
  }, 150_000);

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
});
