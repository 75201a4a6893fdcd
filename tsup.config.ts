import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    'providers/memory': 'providers/memory.ts',
    'providers/env': 'providers/env.ts',
    'providers/file': 'providers/file.ts',
    'providers/aws-secrets-manager': 'providers/aws-secrets-manager.ts',
    'providers/aws-ssm': 'providers/aws-ssm.ts',
    'providers/vault': 'providers/vault/index.ts',
    grpc: 'src/grpc.ts',
    undici: 'src/undici.ts',
    otel: 'src/otel.ts',
    'provider-kit': 'src/provider-kit.ts',
    testing: 'src/testing/index.ts',
    config: 'config/index.ts',
    cli: 'cli/main.ts',
  },
  format: ['esm', 'cjs'],
  dts: true,
  clean: true,
  // One copy of the error classes across entry points, so instanceof holds in CommonJS too.
  splitting: true,
  target: 'node20',
  // Store SDKs and integration libraries are optional peers: never bundle them.
  external: [
    'node-vault',
    '@aws-sdk/client-secrets-manager',
    '@aws-sdk/client-ssm',
    '@grpc/grpc-js',
    'undici',
    'yaml',
    '@opentelemetry/api',
  ],
});
