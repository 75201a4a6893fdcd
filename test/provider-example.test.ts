/**
 * The example provider of docs/providers/writing-a-provider.md (examples/provider/http-kv.ts) under the
 * conformance suite, imported as a third party would, against a real HTTP key/value server on loopback.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigurationError } from 'tls-secrets/provider-kit';
import { providerConformance } from 'tls-secrets/testing';
import { describe, expect, it } from 'vitest';
import { httpKv } from '../examples/provider/http-kv.js';
import { createResolver } from '../src/index.js';
import { createTestCA } from './fixtures/ca.js';

const TOKEN = 'example-token-7d41c0a9f3';

/** The store: keys under `private/` exist but this token may not read them. Counts the requests it gets. */
async function kvServer() {
  const values = new Map<string, Buffer>();
  let requests = 0;
  const server: Server = createServer((req, res) => {
    requests += 1;
    const key = decodeURIComponent((req.url ?? '/').replace(/^\/kv\//, ''));
    if (req.headers.authorization !== `Bearer ${TOKEN}`) return void res.writeHead(401).end();
    if (key.startsWith('private/')) return void res.writeHead(403).end();
    const value = values.get(key);
    if (!value) return void res.writeHead(404).end();
    const etag = `"${createHash('sha256').update(value).digest('hex').slice(0, 16)}"`;
    res.writeHead(200, { etag, 'content-type': 'application/octet-stream' });
    res.end(req.method === 'HEAD' ? undefined : value);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/kv`,
    put: (key: string, value: string | Uint8Array) => void values.set(key, Buffer.from(value)),
    requests: () => requests,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

providerConformance(
  {
    name: 'http-kv (examples/provider)',
    capabilities: {
      batch: 'the example store has no batch read',
      watch: 'the example store sends no notifications',
      probe: true,
      deny: true,
      unreachable: true,
      abort: true,
      binary: true,
      closeEndsFetch: true,
    },
    async setup() {
      const store = await kvServer();
      const provider = httpKv({ baseUrl: store.url, token: TOKEN });
      return {
        provider,
        put: async (name, value) => store.put(name, value),
        ref: (name, options) => provider.ref(name, options),
        storeCalls: store.requests,
        async denied() {
          store.put('private/key.pem', 'not for this token');
          return provider.ref('private/key.pem');
        },
        async unreachable() {
          const gone = await kvServer();
          await gone.close();
          const provider = httpKv({ baseUrl: gone.url, token: TOKEN, requestTimeoutMs: 5_000 });
          return provider.ref('anything');
        },
        close: store.close,
      };
    },
  },
  { describe, it },
);

describe('the example provider', () => {
  it('serves a resolver: key and certificate from the store', async () => {
    const store = await kvServer();
    const ca = await createTestCA();
    const leaf = await ca.issue();
    store.put('web/key.pem', leaf.keyPem);
    store.put('web/cert.pem', leaf.certPem);
    const kv = httpKv({ baseUrl: store.url, token: TOKEN });
    const resolver = createResolver({ key: kv.ref('web/key.pem'), cert: kv.ref('web/cert.pem') });
    try {
      expect((await resolver.resolve()).cert).toEqual([leaf.certPem]);
    } finally {
      await resolver.close();
      await kv.close();
      await store.close();
    }
  });

  it('refuses bad options and keys at creation, echoing neither', () => {
    expect(() => httpKv({ baseUrl: 'not a url' })).toThrow(ConfigurationError);
    expect(() => httpKv({ baseUrl: 'https://user:pa55word@kv.test' })).toThrow(/credentials/);
    expect(() => httpKv({ baseUrl: 'https://kv.test', requestTimeoutMs: 0 })).toThrow(/requestTimeoutMs/);
    expect(() => httpKv({ baseUrl: 'https://kv.test' }).ref('-----BEGIN PRIVATE KEY-----')).toThrow(
      expect.objectContaining({ message: expect.not.stringContaining('BEGIN') }),
    );
  });
});
