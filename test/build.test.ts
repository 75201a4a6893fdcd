/**
 * The published shape: ESM and CommonJS builds with declarations, every subpath export loadable in both,
 * one copy of the error classes across entry points, and store SDKs not loaded by importing a provider.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { exports: Record<string, unknown> };
const subpaths = Object.keys(pkg.exports)
  .filter((key) => key !== './package.json')
  .map((key) => key.replace(/^\./, 'tls-secrets'));

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
