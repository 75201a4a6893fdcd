/** Real TLS on loopback: connect(), createServer(), attach(), and openssl s_client as an outside client. */
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import {
  attach,
  connect,
  createResolver,
  createServer,
  type Resolver,
  type TlsSecretsError,
} from '../src/index.js';
import { createRef, type Provider } from '../src/provider.js';
import { createTestCA, type Issued, randomTicketKeys, type TestCA, toPfx } from './fixtures/ca.js';
import {
  closeServer,
  countContexts as countBuilds,
  eventually,
  listen,
  readAll,
  sleep,
} from './helpers/tls.js';

const run = promisify(execFile);

let ca: TestCA;
let serverLeaf: Issued;
let clientLeaf: Issued;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  ca = await createTestCA();
  serverLeaf = await ca.issue({ commonName: 'server' });
  clientLeaf = await ca.issue({ commonName: 'client', algorithm: 'rsa' });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function resolverPair(extraServer: Record<string, unknown> = {}) {
  const store = memory({
    'server/key': serverLeaf.keyPem,
    'server/cert': serverLeaf.certPem,
    'client/key': clientLeaf.keyPem,
    'client/cert': clientLeaf.certPem,
    ca: ca.certPem,
    tickets: randomTicketKeys(),
    ...extraServer,
  });
  const serverTls = createResolver(
    {
      key: store.ref('server/key'),
      cert: store.ref('server/cert'),
      ca: store.ref('ca'),
      ticketKeys: store.ref('tickets'),
    },
    { debounceMs: 5 },
  );
  const clientTls = createResolver({
    key: store.ref('client/key'),
    cert: store.ref('client/cert'),
    ca: store.ref('ca'),
  });
  cleanups.push(
    () => serverTls.close(),
    () => clientTls.close(),
  );
  return { store, serverTls, clientTls };
}

async function startServer(serverTls: Resolver) {
  const server = createServer(serverTls, { requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.end(`hello ${socket.getPeerCertificate().subject?.CN ?? 'anonymous'}`);
  });
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return { server, port };
}

/** A resumed TLS 1.3 session carries no server certificate, so serial checks make full handshakes. */
async function peerSerial(clientTls: Resolver, port: number, resumeSessions = false) {
  const socket = await connect(clientTls, {
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    resumeSessions,
  });
  const serial = socket.getPeerCertificate().serialNumber;
  const body = await readAll(socket);
  return { serial, body, reused: socket.isSessionReused() };
}

async function opensslSerial(
  port: number,
  caFile: string,
  certFile: string,
  keyFile: string,
): Promise<string> {
  const { stdout } = await run(
    'sh',
    [
      '-c',
      `echo | openssl s_client -connect 127.0.0.1:${port} -servername localhost -CAfile ${caFile} -cert ${certFile} -key ${keyFile} -verify_return_error 2>/dev/null | openssl x509 -noout -serial`,
    ],
    { timeout: 10_000 },
  );
  return stdout.trim().replace(/^serial=/, '');
}

describe('connect() and createServer()', () => {
  it('mTLS end to end; after a rotation both connect() and openssl s_client see the new serial', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { store, serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);

    const dir = mkdtempSync(join(tmpdir(), 'tls-secrets-openssl-'));
    const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') };
    writeFileSync(files.ca, ca.certPem);
    writeFileSync(files.cert, clientLeaf.certPem);
    writeFileSync(files.key, clientLeaf.keyPem);

    const first = await peerSerial(clientTls, port);
    expect(first).toMatchObject({ serial: serverLeaf.serial, body: 'hello client' });
    expect(await opensslSerial(port, files.ca, files.cert, files.key)).toBe(serverLeaf.serial);

    const next = await ca.issue({ commonName: 'server-2' });
    store.set('server/cert', next.certPem);
    store.set('server/key', next.keyPem);
    await eventually(() => expect(serverTls.generation).toBe(2));
    await eventually(async () => expect((await peerSerial(clientTls, port)).serial).toBe(next.serial));
    expect(await opensslSerial(port, files.ca, files.cert, files.key)).toBe(next.serial);
  });

  it('a broken bundle is rejected and the old certificate keeps serving', async () => {
    const { store, serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);
    const errors: TlsSecretsError[] = [];
    serverTls.on('error', (error) => errors.push(error));
    expect((await peerSerial(clientTls, port)).serial).toBe(serverLeaf.serial);

    const expired = await ca.issue({
      notBefore: new Date(Date.now() - 86_400_000),
      notAfter: new Date(Date.now() - 60_000),
    });
    store.set('server/key', expired.keyPem);
    store.set('server/cert', expired.certPem);
    await eventually(() => expect(errors.length).toBeGreaterThan(0));
    expect(errors[0]?.message).toMatch(/expired/);
    expect(errors[0]).toMatchObject({ field: 'cert', ref: 'memory:server/cert' });
    expect(serverTls.generation).toBe(1);
    expect((await peerSerial(clientTls, port)).serial).toBe(serverLeaf.serial);
  });

  it('reuses one SecureContext per generation and resumes the last session to the same target', async () => {
    const { serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);
    let contexts = 0;
    const original = tls.createSecureContext;
    const spy = (options?: tls.SecureContextOptions) => {
      contexts += 1;
      return original(options);
    };
    (tls as { createSecureContext: typeof spy }).createSecureContext = spy;
    cleanups.push(() => {
      (tls as { createSecureContext: typeof original }).createSecureContext = original;
    });
    await clientTls.resolve();
    contexts = 0;
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await peerSerial(clientTls, port, true));
    expect(contexts).toBe(0);
    expect(results[0]?.reused).toBe(false);
    expect(results.slice(1).every((r) => r.reused)).toBe(true);
  });

  it('drops sessions made with an older generation of the client bundle', async () => {
    const { store, serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);
    await peerSerial(clientTls, port, true);
    expect((await peerSerial(clientTls, port, true)).reused).toBe(true);
    const nextClient = await ca.issue({ commonName: 'client-2' });
    store.set('client/key', nextClient.keyPem);
    store.set('client/cert', nextClient.certPem);
    await clientTls.refresh();
    const after = await peerSerial(clientTls, port, true);
    expect(after.reused).toBe(false);
    expect(after.body).toBe('hello client-2');
  });

  it('keeps the CA and the ticket keys across a server swap (setSecureContext resets what is left out)', async () => {
    const { store, serverTls, clientTls } = resolverPair();
    const { server, port } = await startServer(serverTls);
    const ticketKeys = server.getTicketKeys();
    await peerSerial(clientTls, port);
    // Rotating only the certificate must not drop the server's ca (mTLS) nor its ticket keys.
    const next = await ca.issue({ commonName: 'server-3' });
    store.set('server/key', next.keyPem);
    store.set('server/cert', next.certPem);
    await eventually(() => expect(serverTls.generation).toBe(2));
    expect(server.getTicketKeys()).toEqual(ticketKeys);
    const after = await peerSerial(clientTls, port);
    expect(after).toMatchObject({ serial: next.serial, body: 'hello client' });
  });

  it('serves clients that send no SNI (IP-address targets)', async () => {
    const { serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);
    const socket = await connect(clientTls, { host: '127.0.0.1', port });
    expect(socket.servername).toBeFalsy();
    expect(await readAll(socket)).toBe('hello client');
  });

  it('after a verification failure, refreshes once and retries with the new CA', async () => {
    const newCa = await createTestCA({ commonName: 'rotated CA' });
    const newServerLeaf = await newCa.issue({ commonName: 'server' });
    const newClientLeaf = await newCa.issue({ commonName: 'client' });
    const { store, serverTls, clientTls } = resolverPair();
    await clientTls.resolve();
    // The server moves to a new CA; the client's store already has it but the client has not refreshed.
    store.set('server/key', newServerLeaf.keyPem);
    store.set('server/cert', newServerLeaf.certPem);
    store.set('client/key', newClientLeaf.keyPem);
    store.set('client/cert', newClientLeaf.certPem);
    store.set('ca', newCa.certPem);
    const { port } = await startServer(serverTls);
    await eventually(async () => expect((await serverTls.resolve()).ca).toEqual([newCa.certPem]));
    const generationBefore = clientTls.generation;
    const socket = await connect(clientTls, { host: '127.0.0.1', port, servername: 'localhost' });
    expect(socket.getPeerCertificate().serialNumber).toBe(newServerLeaf.serial);
    expect(clientTls.generation).toBe(generationBefore + 1);
    socket.destroy();

    const strict = await connect(clientTls, { host: '127.0.0.1', port, servername: 'localhost' });
    strict.destroy();
  });

  it('creates no server context and fetches nothing before listen()', async () => {
    let fetches = 0;
    const store = memory({ key: serverLeaf.keyPem, cert: serverLeaf.certPem });
    const fetch = store.fetch.bind(store);
    store.fetch = (ref, signal) => {
      fetches += 1;
      return fetch(ref, signal);
    };
    const resolver = createResolver({ key: store.ref('key'), cert: store.ref('cert') });
    cleanups.push(() => resolver.close());
    const server = createServer(resolver, {}, (socket) => socket.end('ok'));
    await sleep(20);
    expect(fetches).toBe(0);
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    expect(fetches).toBe(2);
    const socket = tls.connect({ port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost' });
    expect(await readAll(socket)).toBe('ok');
  });

  it('a failure to resolve before listen is the server error, and the port is never bound', async () => {
    const store = memory({});
    const resolver = createResolver({ key: store.ref('missing-key'), cert: store.ref('missing-cert') });
    cleanups.push(() => resolver.close());
    const server = createServer(resolver);
    const error = await new Promise<Error>((resolve) => {
      server.once('error', resolve);
      server.listen(0, '127.0.0.1');
    });
    expect(error.message).toMatch(/not found/);
    expect(server.listening).toBe(false);
  });

  it('serves a PFX bundle with its passphrase', async () => {
    const pfx = toPfx(serverLeaf, 'pfx-pass', ca.certPem);
    const store = memory({ pfx, pass: 'pfx-pass' });
    const resolver = createResolver({ pfx: store.ref('pfx'), passphrase: store.ref('pass') });
    cleanups.push(() => resolver.close());
    const server = createServer(resolver, {}, (socket) => socket.end('pfx'));
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    const socket = tls.connect({ port, host: '127.0.0.1', ca: ca.certPem, servername: 'localhost' });
    expect(await readAll(socket)).toBe('pfx');
    expect(resolver.status().notAfter?.getTime()).toBe(serverLeaf.notAfter.getTime());
  });

  it('no handshake fails while the server bundle rotates every 20 ms under traffic', async () => {
    const { store, serverTls, clientTls } = resolverPair();
    const { port } = await startServer(serverTls);
    const leaves = await Promise.all(
      Array.from({ length: 4 }, (_, i) => ca.issue({ commonName: `server-r${i}` })),
    );
    let stop = false;
    const rotator = (async () => {
      for (let i = 0; !stop; i++) {
        const leaf = leaves[i % leaves.length] as Issued;
        store.set('server/key', leaf.keyPem);
        store.set('server/cert', leaf.certPem);
        await sleep(20);
      }
    })();
    let ok = 0;
    let failed = 0;
    const deadline = Date.now() + 1_500;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < deadline) {
          try {
            const result = await peerSerial(clientTls, port);
            if (result.body === 'hello client') ok += 1;
            else failed += 1;
          } catch {
            failed += 1;
          }
        }
      }),
    );
    stop = true;
    await rotator;
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(50);
    expect(serverTls.generation).toBeGreaterThan(10);
  });
});

describe('attach() to servers the user created', () => {
  it('https.createServer follows rotations', async () => {
    const { store, serverTls } = resolverPair();
    const server = https.createServer((_req, res) => res.end('https ok'));
    await attach(server, serverTls, {});
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    const get = () =>
      new Promise<{ body: string; serial: string }>((resolve, reject) => {
        const req = https.get(
          { host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem, agent: false },
          (res) => {
            let body = '';
            const serial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
            res.on('data', (chunk) => {
              body += chunk;
            });
            res.on('end', () => resolve({ body, serial }));
          },
        );
        req.on('error', reject);
      });
    expect(await get()).toEqual({ body: 'https ok', serial: serverLeaf.serial });
    const next = await ca.issue();
    store.set('server/key', next.keyPem);
    store.set('server/cert', next.certPem);
    await eventually(async () => expect((await get()).serial).toBe(next.serial));
  });

  it('http2.createSecureServer follows rotations', async () => {
    const { store, serverTls } = resolverPair();
    const server = http2.createSecureServer({});
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('h2 ok');
    });
    await attach(server, serverTls);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const get = () =>
      new Promise<{ body: string; serial: string }>((resolve, reject) => {
        const session = http2.connect(`https://localhost:${port}`, { ca: ca.certPem, host: '127.0.0.1' });
        session.on('error', reject);
        const req = session.request({ ':path': '/' });
        let body = '';
        req.on('data', (chunk) => {
          body += chunk;
        });
        req.on('end', () => {
          const serial = (session.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
          session.close();
          resolve({ body, serial });
        });
        req.end();
      });
    expect(await get()).toEqual({ body: 'h2 ok', serial: serverLeaf.serial });
    const next = await ca.issue();
    store.set('server/key', next.keyPem);
    store.set('server/cert', next.certPem);
    await eventually(async () => expect((await get()).serial).toBe(next.serial));
  });
});

/** Counts the contexts built until the test ends. */
function countContexts(): { count(): number } {
  const counter = countBuilds();
  cleanups.push(() => counter.restore());
  return counter;
}

describe('one SecureContext per rotation', () => {
  const servers: [string, (serverTls: Resolver, options: tls.TlsOptions) => Promise<tls.Server>][] = [
    [
      'createServer',
      async (serverTls, options) => {
        const server = createServer(serverTls, options, (socket) => socket.end('one'));
        await listen(server);
        return server;
      },
    ],
    [
      'attach to https.createServer',
      async (serverTls, options) => {
        const server = https.createServer(options, (_req, res) => res.end('one'));
        await attach(server, serverTls, options);
        await listen(server);
        return server;
      },
    ],
    [
      'attach to http2.createSecureServer',
      async (serverTls, options) => {
        const server = http2.createSecureServer(options);
        await attach(server, serverTls, options);
        await listen(server);
        return server;
      },
    ],
  ];

  it.each(servers)(
    '%s: the validated context is the one installed, built once per rotation',
    async (_name, start) => {
      const { store, serverTls } = resolverPair();
      // The server's own context options must reach the one context built: a sessionIdContext and
      // ciphers of its own, with its ticket keys (bound to the trust) from the store.
      const options: tls.TlsOptions = {
        requestCert: false,
        sessionIdContext: 'one-context',
        ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256',
      };
      const server = await start(serverTls, options);
      cleanups.push(() => closeServer(server));
      const port = (server.address() as AddressInfo).port;
      const serial = () =>
        new Promise<string>((resolve, reject) => {
          const socket = tls.connect(
            {
              host: '127.0.0.1',
              port,
              servername: 'localhost',
              ca: ca.certPem,
              ALPNProtocols: ['h2', 'http/1.1'],
            },
            () => {
              resolve(socket.getPeerCertificate().serialNumber);
              socket.destroy();
            },
          );
          socket.once('error', reject);
        });
      expect(await serial()).toBe(serverLeaf.serial);
      const counter = countContexts();
      // A certificate rotation, then a trust change (new CA bundle: ticket keys and sessionIdContext change).
      const next = await ca.issue({ commonName: 'server-one-context' });
      store.set('server/key', next.keyPem);
      store.set('server/cert', next.certPem);
      await serverTls.refresh();
      expect(serverTls.generation).toBe(2);
      expect(counter.count()).toBe(1);
      // (tls.connect with a ca builds a context of its own: counted apart.)
      expect(await serial()).toBe(next.serial);
      const afterFirst = counter.count();
      const ticketKeys = server.getTicketKeys();
      const other = await createTestCA({ commonName: 'another CA' });
      store.set('ca', `${ca.certPem.trim()}\n${other.certPem}`);
      const refreshed = await serverTls.refresh();
      expect(refreshed.errors.map((e) => e.message)).toEqual([]);
      expect(serverTls.generation).toBe(3);
      expect(counter.count() - afterFirst).toBe(1);
      expect(server.getTicketKeys()).not.toEqual(ticketKeys);
      expect(await serial()).toBe(next.serial);
      // The server's properties carry no secret after the swap.
      const held = server as unknown as Record<string, unknown>;
      expect(held.key).toBeUndefined();
      expect(held.cert).toBeUndefined();
    },
  );

  it("a rotation's context build runs in a turn of its own, after the checks' turn and before the swap's", async () => {
    const store = memory({
      'server/key': serverLeaf.keyPem,
      'server/cert': serverLeaf.certPem,
      ca: ca.certPem,
    });
    // The event loop's turns, counted by a chain of setImmediate; the fetch's answer, the context build and
    // the rotate event each note the turn they ran in. The checks run in the fetch's turn (no await between).
    let turn = 0;
    let counting = true;
    const count = () => {
      turn += 1;
      if (counting) setImmediate(count);
    };
    cleanups.push(() => {
      counting = false;
    });
    const seen: Record<string, number> = {};
    const watched: Provider = {
      name: 'turn-noting',
      async fetch(ref, signal) {
        const result = await store.fetch(ref, signal);
        seen.fetched = turn;
        return result;
      },
    };
    const serverTls = createResolver({
      key: createRef(watched, 'server/key'),
      cert: createRef(watched, 'server/cert'),
      ca: createRef(watched, 'ca'),
    });
    cleanups.push(() => serverTls.close());
    const server = createServer(serverTls, {}, (socket) => socket.end('x'));
    await listen(server);
    cleanups.push(() => closeServer(server));
    const original = tls.createSecureContext;
    (tls as { createSecureContext: typeof original }).createSecureContext = (options) => {
      seen.built = turn;
      return original(options);
    };
    syncBuiltinESMExports();
    cleanups.push(() => {
      (tls as { createSecureContext: typeof original }).createSecureContext = original;
      syncBuiltinESMExports();
    });
    serverTls.on('rotate', () => {
      seen.swapped = turn;
    });
    const next = await ca.issue({ commonName: 'server-turns' });
    store.set('server/cert', next.certPem);
    store.set('server/key', next.keyPem);
    setImmediate(count);
    expect((await serverTls.refresh()).rotated).toBe(true);
    expect(seen.fetched).toBeDefined();
    expect(seen.built).toBeGreaterThan(seen.fetched ?? Number.POSITIVE_INFINITY);
    expect(seen.swapped).toBeGreaterThan(seen.built ?? Number.POSITIVE_INFINITY);
  });

  it('a server attached while a candidate is being built serves the candidate once it is swapped in', async () => {
    const { store, serverTls } = resolverPair();
    const first = createServer(serverTls, {}, (socket) => socket.end('first'));
    await listen(first);
    cleanups.push(() => closeServer(first));
    const late = https.createServer({}, (_req, res) => res.end('late'));
    cleanups.push(() => closeServer(late));
    let attaching: Promise<unknown> | undefined;
    const original = tls.createSecureContext;
    (tls as { createSecureContext: typeof original }).createSecureContext = (options) => {
      // The first server's context for the candidate: the second server attaches in this very turn, on
      // the generation still served (the candidate is not swapped in yet).
      attaching ??= attach(late, serverTls);
      return original(options);
    };
    syncBuiltinESMExports();
    cleanups.push(() => {
      (tls as { createSecureContext: typeof original }).createSecureContext = original;
      syncBuiltinESMExports();
    });
    const next = await ca.issue({ commonName: 'server-late-attach' });
    store.set('server/key', next.keyPem);
    store.set('server/cert', next.certPem);
    expect((await serverTls.refresh()).rotated).toBe(true);
    await attaching;
    (tls as { createSecureContext: typeof original }).createSecureContext = original;
    syncBuiltinESMExports();
    const port = await listen(late);
    const serial = await new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: ca.certPem }, () => {
        resolve(socket.getPeerCertificate().serialNumber);
        socket.destroy();
      });
      socket.once('error', reject);
    });
    expect(serial).toBe(next.serial);
  });

  it('with a CRL, a certificate rotation still builds one context: an unchanged CRL is not parsed again; a new one is', async () => {
    const store = memory({
      key: serverLeaf.keyPem,
      cert: serverLeaf.certPem,
      ca: ca.certPem,
      crl: await ca.crl([]),
    });
    const serverTls = createResolver({
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      crl: store.ref('crl'),
    });
    cleanups.push(() => serverTls.close());
    const server = createServer(serverTls, { requestCert: true }, (socket) => socket.end('x'));
    await listen(server);
    cleanups.push(() => closeServer(server));
    const counter = countContexts();
    const next = await ca.issue({ commonName: 'server-crl-one-context' });
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    expect((await serverTls.refresh()).rotated).toBe(true);
    expect(counter.count()).toBe(1);
    store.set('crl', await ca.crl([clientLeaf.serial]));
    expect((await serverTls.refresh()).rotated).toBe(true);
    // The new CRL's parse check, and the server's context.
    expect(counter.count()).toBe(3);
  });

  it('a client on the same resolver gets a context built with its own options, on first use', async () => {
    const { store, serverTls } = resolverPair();
    const server = createServer(serverTls, { ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, (s) => s.end('x'));
    await listen(server);
    cleanups.push(() => closeServer(server));
    const counter = countContexts();
    const next = await ca.issue({ commonName: 'server-lazy' });
    store.set('server/key', next.keyPem);
    store.set('server/cert', next.certPem);
    await serverTls.refresh();
    expect(counter.count()).toBe(1);
    const resolved = await serverTls.resolve();
    // Printing the options builds nothing.
    expect(JSON.stringify(resolved)).toContain('[redacted]');
    expect(counter.count()).toBe(1);
    const context = resolved.secureContext;
    expect(context).toBeInstanceOf(Object);
    expect(counter.count()).toBe(2);
    expect((await serverTls.resolve()).secureContext).toBe(context);
    expect(counter.count()).toBe(2);
  });
});
