/** PSK: identities mapped to keys in a store; client and server callbacks built by the resolver. */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import {
  ConfigurationError,
  connect,
  createResolver,
  createServer,
  InvalidMaterialError,
} from '../src/index.js';
import { closeServer, eventually, listen, readAll } from './helpers/tls.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function pskPair(version: 'TLSv1.2' | 'TLSv1.3') {
  const store = memory({
    'psk/a': randomBytes(32).toString('base64'),
    'psk/b': randomBytes(32).toString('base64'),
  });
  const tlsOptions = {
    minVersion: version,
    maxVersion: version,
    ...(version === 'TLSv1.2' ? { ciphers: 'PSK-AES128-GCM-SHA256' } : {}),
  } as const;
  const serverTls = createResolver(
    {
      psk: {
        'client-a': store.ref('psk/a', { encoding: 'base64' }),
        'client-b': store.ref('psk/b', { encoding: 'base64' }),
      },
    },
    { debounceMs: 5 },
  );
  const clientTls = createResolver({
    psk: { 'client-b': store.ref('psk/b', { encoding: 'base64' }) },
    ...tlsOptions,
    checkServerIdentity: () => undefined,
  });
  const server = createServer(serverTls, tlsOptions, (socket) => socket.end(`hello ${socket.getProtocol()}`));
  const port = await listen(server);
  cleanups.push(
    () => serverTls.close(),
    () => clientTls.close(),
    () => closeServer(server),
  );
  return { store, serverTls, clientTls, port };
}

describe('PSK', () => {
  it.each(['TLSv1.2', 'TLSv1.3'] as const)(
    '%s handshake with a key from the store, and key rotation',
    async (version) => {
      const { store, serverTls, clientTls, port } = await pskPair(version);
      const socket = await connect(clientTls, { host: '127.0.0.1', port });
      expect(await readAll(socket)).toBe(`hello ${version}`);

      // Rotate the client's key on both sides: the server answers from its new generation.
      store.set('psk/b', randomBytes(32).toString('base64'));
      await eventually(() => expect(serverTls.generation).toBe(2));
      await clientTls.refresh();
      const again = await connect(clientTls, { host: '127.0.0.1', port, resumeSessions: false });
      expect(await readAll(again)).toBe(`hello ${version}`);
    },
  );

  it('a client whose key the server does not hold fails the handshake', async () => {
    const { port } = await pskPair('TLSv1.2');
    const stranger = createResolver({
      psk: { 'client-a': randomBytes(32) },
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ciphers: 'PSK-AES128-GCM-SHA256',
      checkServerIdentity: () => undefined,
    });
    cleanups.push(() => stranger.close());
    await expect(
      connect(stranger, { host: '127.0.0.1', port, retryOnVerifyFailure: false }),
    ).rejects.toThrow();
  });

  it('refuses short keys and unknown client identities', async () => {
    const short = createResolver({ psk: { a: Buffer.alloc(8, 1) } });
    await expect(short.resolve()).rejects.toBeInstanceOf(InvalidMaterialError);
    expect(() => createResolver({ psk: { a: randomBytes(32) }, pskIdentity: 'b' })).toThrow(
      ConfigurationError,
    );
  });
});
