import { providerConformance } from 'tls-secrets/testing';
import { describe, expect, it } from 'vitest';
import { env } from '../../providers/env.js';
import { ConfigurationError } from '../../src/errors.js';
import { createResolver } from '../../src/index.js';
import { createTestCA } from '../fixtures/ca.js';

providerConformance(
  {
    name: 'env',
    capabilities: {
      batch: 'variables are read one by one',
      watch: 'the environment sends no notifications; the resolver checks versions',
      probe: true,
      deny: 'the environment has no permissions',
      unreachable: 'the environment is always there',
      abort: 'env answers synchronously; the resolver bounds every call by its signal',
      binary: 'a variable holds text only (binary values are base64 text)',
      closeEndsFetch: 'env has no close()',
    },
    async setup() {
      const variables: NodeJS.ProcessEnv = {};
      const provider = env({ env: variables, prefix: 'TLS_' });
      let calls = 0;
      const fetch = provider.fetch.bind(provider);
      provider.fetch = (ref, signal) => {
        calls += 1;
        return fetch(ref, signal);
      };
      const variable = (name: string) => name.replace(/[^A-Za-z0-9_]/g, '_');
      return {
        provider,
        put: async (name, value) => {
          variables[`TLS_${variable(name)}`] = String(value);
        },
        ref: (name, options) => provider.ref(variable(name), options),
        storeCalls: () => calls,
        close: async () => undefined,
      };
    },
  },
  { describe, it },
);

describe('env provider', () => {
  it('resolves PEM text and base64-encoded ticket keys from variables', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue();
    const ticketKeys = Buffer.alloc(48, 7);
    const variables = {
      APP_KEY: leaf.keyPem,
      APP_CERT: leaf.certPem,
      APP_TICKETS: ticketKeys.toString('base64'),
    };
    const vars = env({ env: variables });
    const resolver = createResolver({
      key: vars.ref('APP_KEY'),
      cert: vars.ref('APP_CERT'),
      ticketKeys: vars.ref('APP_TICKETS', { encoding: 'base64' }),
    });
    const options = await resolver.resolve();
    expect(options.ticketKeys).toEqual(ticketKeys);
    expect(options.cert).toEqual([leaf.certPem]);
    await resolver.close();
  });

  it('refuses names that are not variable names when the reference is made', () => {
    expect(() => env().ref('not-a-name')).toThrow(ConfigurationError);
  });
});

describe('env: names of Object members', () => {
  it('a variable named like an Object member (constructor, toString, __proto__) that is not set is not found', async () => {
    for (const source of [process.env, {}]) {
      const provider = env({ env: source });
      for (const name of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
        const ref = provider.ref(name);
        await expect(provider.fetch(ref, new AbortController().signal)).rejects.toMatchObject({
          code: 'NOT_FOUND',
        });
        expect(await provider.currentVersion?.(ref, new AbortController().signal)).toBeUndefined();
      }
    }
    // Set, it is read as any other.
    const provider = env({ env: { constructor: 'set' } as NodeJS.ProcessEnv });
    expect((await provider.fetch(provider.ref('constructor'), new AbortController().signal)).value).toBe(
      'set',
    );
  });
});
