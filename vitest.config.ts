import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // The kit and the suite are imported by their package names, as a provider author does; here from source.
  resolve: {
    alias: {
      'tls-secrets/provider-kit': fileURLToPath(new URL('src/provider-kit.ts', import.meta.url)),
      'tls-secrets/testing': fileURLToPath(new URL('src/testing/index.ts', import.meta.url)),
    },
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/setup/moto.ts', 'test/setup/bao.ts', 'test/setup/package.ts'],
  },
});
