/** Secret material never shows through util.inspect, JSON.stringify or String(). */
import { once } from 'node:events';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { attach, connect, createResolver, createServer, type TlsSecretsError } from '../src/index.js';
import { createTestCA, encryptKey } from './fixtures/ca.js';
import { closeServer, listen } from './helpers/tls.js';

function bodyOf(pem: string): string {
  // A recognisable run of base64 from inside the PEM: what a leak would show.
  return pem.split('\n')[3] ?? '';
}

describe('redaction', () => {
  it('resolved options, spread copies, the resolver, its status, events and errors show no secret', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue();
    const passphrase = 'CANARY-passphrase-7f3a';
    const store = memory({ key: encryptKey(leaf.keyPem, passphrase), cert: leaf.certPem, pass: passphrase });
    const resolver = createResolver(
      { key: store.ref('key'), cert: store.ref('cert'), passphrase: store.ref('pass') },
      { debounceMs: 1 },
    );
    const seen: unknown[] = [];
    resolver.on('rotate', (event) => seen.push(event));
    resolver.on('error', (error) => seen.push(error));
    resolver.on('stale', (event) => seen.push(event));

    const options = await resolver.resolve();
    store.set('pass', 'CANARY-wrong-passphrase-91b2');
    await resolver.refresh();
    store.set('cert', 'CANARY-garbage-cert-text');
    await resolver.refresh();

    const keyBody = bodyOf(encryptKey(leaf.keyPem, passphrase));
    const views = [
      inspect(options, { depth: 10, showHidden: true }),
      JSON.stringify(options),
      String(options),
      inspect({ ...options, host: 'example' }, { depth: 10 }),
      JSON.stringify({ nested: { ...options } }),
      inspect(resolver, { depth: 10 }),
      JSON.stringify(resolver),
      JSON.stringify(resolver.status()),
      ...seen.map((item) => inspect(item, { depth: 10 })),
      ...seen.map((item) => JSON.stringify(item)),
      ...seen
        .filter((item): item is TlsSecretsError => item instanceof Error)
        .map((e) => `${e.message}\n${e.stack}`),
    ];
    expect(seen.some((item) => item instanceof Error)).toBe(true);
    for (const view of views) {
      expect(view).not.toContain('CANARY');
      expect(view).not.toContain(keyBody);
      expect(view).not.toContain('PRIVATE KEY');
    }
    // Node still gets the real values.
    expect(options.passphrase).toBe(passphrase);
    await resolver.close();
  });
});

describe('servers', () => {
  it('a server from createServer() or attach() shows no key after a swap (Node keeps its options as properties)', async () => {
    const ca = await createTestCA();
    const [first, second] = await Promise.all([ca.issue(), ca.issue()]);
    const store = memory({ key: first.keyPem, cert: first.certPem });
    const resolver = createResolver({ key: store.ref('key'), cert: store.ref('cert') });
    // attach() on a server the application built itself, with a key of its own at construction.
    const own = https.createServer({ key: second.keyPem, cert: second.certPem });
    const detach = await attach(own, resolver);
    const server = createServer(resolver, {});
    await listen(server);
    const rotated = once(resolver, 'rotate');
    store.set('key', second.keyPem);
    store.set('cert', second.certPem);
    await resolver.refresh();
    await rotated;
    const socket = await connect(createResolver({ ca: ca.certPem }), {
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      servername: 'localhost',
    });
    // The swap took effect: the new certificate is what the server presents.
    expect(socket.getPeerCertificate().serialNumber).toBe(second.serial);
    socket.destroy();
    for (const view of [server, own].map((s) => inspect(s, { showHidden: true, depth: 6 }))) {
      expect(view).not.toContain('PRIVATE KEY');
      expect(view).not.toContain(bodyOf(first.keyPem));
      expect(view).not.toContain(bodyOf(second.keyPem));
    }
    detach();
    await closeServer(server);
    await resolver.close();
  });
});
