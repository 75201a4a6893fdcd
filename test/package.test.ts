/** Every provider is exported as a subpath, built, and runs the conformance suite. */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const root = new URL('..', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
// `_`-prefixed files are code the providers share (providers/_aws.ts), not providers; `*.config.ts` files
// are their config adapters.
const providers = readdirSync(new URL('providers/', root), { withFileTypes: true })
  .filter((entry) => !entry.name.startsWith('_') && !entry.name.endsWith('.config.ts'))
  .map((entry) => (entry.isDirectory() ? entry.name : entry.name.replace(/\.ts$/, '')))
  .sort();

describe('package layout', () => {
  const pkg = JSON.parse(read('package.json')) as {
    exports: Record<string, unknown>;
    peerDependenciesMeta: Record<string, { optional: boolean }>;
  };

  it.each(providers)('provider %s has a subpath export, a build entry and a conformance run', (name) => {
    expect(pkg.exports[`./providers/${name}`]).toBeDefined();
    expect(read('tsup.config.ts')).toContain(`'providers/${name}'`);
    const test = read(`test/providers/${name}.test.ts`);
    expect(test).toContain("from 'tls-secrets/testing'");
    expect(test).toContain('providerConformance(');
  });

  it.each(providers)(
    'provider %s has a config adapter, loaded lazily by the built-in registry',
    async (name) => {
      const { BUILT_IN_TYPES } = await import('../config/registry.js');
      expect(BUILT_IN_TYPES).toContain(name);
      const adapterFile = name === 'vault' ? 'providers/vault/config.ts' : `providers/${name}.config.ts`;
      expect(read('config/registry.ts')).toContain(`import('../${adapterFile.replace(/\.ts$/, '.js')}')`);
    },
  );

  it('store SDKs are optional peers, never imported at the top of a provider', () => {
    for (const sdk of [
      'node-vault',
      '@aws-sdk/client-secrets-manager',
      '@aws-sdk/client-ssm',
      '@grpc/grpc-js',
    ])
      expect(pkg.peerDependenciesMeta[sdk]?.optional).toBe(true);
    const sources = providers.map((name) => {
      try {
        return read(`providers/${name}.ts`);
      } catch {
        return read(`providers/${name}/index.ts`);
      }
    });
    for (const source of sources) {
      expect(source).not.toMatch(/^import (?!type)[^;]*from '(node-vault|@aws-sdk\/[^']+)'/m);
    }
  });

  it('the provider kit and the conformance suite are entries of their own', () => {
    for (const [subpath, source] of [
      ['provider-kit', 'src/provider-kit.ts'],
      ['testing', 'src/testing/index.ts'],
    ]) {
      expect(pkg.exports[`./${subpath}`]).toBeDefined();
      expect(read('tsup.config.ts')).toContain(`'${source}'`);
    }
    // The suite is package code: it registers with the caller's test framework and never imports one.
    expect(read('src/testing/index.ts')).not.toMatch(/from '(vitest|jest|node:test)'/);
  });

  it('the barrel exports the fixed public names', async () => {
    const api = await import('../src/index.js');
    for (const name of ['createResolver', 'connect', 'createServer', 'attach'])
      expect(typeof (api as Record<string, unknown>)[name]).toBe('function');
  });
});
