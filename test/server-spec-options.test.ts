/**
 * A spec's server options apply to the servers built from it (a config file has no other place for them):
 * `requestCert`/`rejectUnauthorized` from the spec enforce mTLS on createServer, ALPN from the spec is
 * offered, context options like `minVersion` hold; attach() refuses construction-time options it cannot
 * apply to an existing server instead of ignoring them. Real handshakes on loopback.
 */
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import {
  attach,
  ConfigurationError,
  createResolver,
  createServer,
  FetchError,
  type Resolver,
} from '../src/index.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';
import { closeServer, listen } from './helpers/tls.js';

let ca: TestCA;
let serverLeaf: Issued;
let clientLeaf: Issued;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
beforeAll(async () => {
  ca = await createTestCA();
  serverLeaf = await ca.issue({ commonName: 'server' });
  clientLeaf = await ca.issue({ commonName: 'client' });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function serverResolver(extra: Record<string, unknown>): Resolver {
  const store = memory({ key: serverLeaf.keyPem, cert: serverLeaf.certPem, ca: ca.certPem });
  const resolver = createResolver({
    key: store.ref('key'),
    cert: store.ref('cert'),
    ca: store.ref('ca'),
    ...extra,
  });
  cleanups.push(() => resolver.close());
  return resolver;
}

/** One handshake; resolves with the negotiated protocol or rejects with the handshake error. */
function handshake(
  port: number,
  options: tls.ConnectionOptions,
): Promise<{ alpn: string | false | null; version: string | null }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: ca.certPem,
      ...options,
    });
    socket.once('secureConnect', () => {
      // TLS 1.3 reports a refused client certificate after the handshake: wait for the server's verdict.
      socket.once('data', () => {
        resolve({ alpn: socket.alpnProtocol, version: socket.getProtocol() });
        socket.destroy();
      });
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before data')));
  });
}

async function serve(resolver: Resolver): Promise<number> {
  const server = createServer(resolver, {}, (socket) => socket.end('hello'));
  cleanups.push(() => closeServer(server));
  return listen(server);
}

describe("a spec's server options", () => {
  it('requestCert and rejectUnauthorized in the spec enforce mTLS on createServer: a client without a certificate is refused', async () => {
    const port = await serve(serverResolver({ requestCert: true, rejectUnauthorized: true }));
    await expect(handshake(port, {})).rejects.toThrow();
    await expect(handshake(port, { key: clientLeaf.keyPem, cert: clientLeaf.certPem })).resolves.toBeTruthy();
  });

  it('ALPNProtocols and minVersion in the spec are what createServer negotiates', async () => {
    const port = await serve(serverResolver({ ALPNProtocols: ['h2', 'http/1.1'], minVersion: 'TLSv1.3' }));
    const result = await handshake(port, { ALPNProtocols: ['http/1.1'] });
    expect(result).toEqual({ alpn: 'http/1.1', version: 'TLSv1.3' });
    await expect(handshake(port, { maxVersion: 'TLSv1.2' })).rejects.toThrow();
  });

  it('attach() refuses a spec option it cannot apply to an existing server, naming it', async () => {
    const server = tls.createServer();
    cleanups.push(() => closeServer(server));
    const error = await attach(server, serverResolver({ requestCert: true })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).field).toBe('requestCert');
    // The same value the server already has is no conflict, and an option given to attach() wins.
    const same = tls.createServer({ requestCert: true });
    cleanups.push(() => closeServer(same));
    await expect(attach(same, serverResolver({ requestCert: true }))).resolves.toBeTypeOf('function');
  });

  it('socket options tls.connect hands to net (requestOCSP, family, localAddress, autoSelectFamily) are accepted and passed on', async () => {
    const port = await serve(serverResolver({}));
    const store = memory({ key: clientLeaf.keyPem, cert: clientLeaf.certPem, ca: ca.certPem });
    // Not in Node's ConnectionOptions type, so a JavaScript caller or a config file is who passes them.
    const spec = {
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      requestOCSP: true,
      family: 4,
      localAddress: '127.0.0.1',
      autoSelectFamily: false,
    };
    const client = createResolver(spec);
    cleanups.push(() => client.close());
    const resolved = await client.resolve();
    expect(resolved).toMatchObject({ requestOCSP: true, family: 4, localAddress: '127.0.0.1' });
    await expect(handshake(port, resolved)).resolves.toMatchObject({ version: 'TLSv1.3' });
  });

  it('attach() refuses construction-time options given to it that the server was not created with', async () => {
    const plain = tls.createServer();
    cleanups.push(() => closeServer(plain));
    for (const options of [{ requestCert: true }, { rejectUnauthorized: false }, { ALPNProtocols: ['h2'] }]) {
      const error = await attach(plain, serverResolver({}), options).catch((e: unknown) => e);
      expect(error, JSON.stringify(options)).toBeInstanceOf(ConfigurationError);
      expect((error as ConfigurationError).field).toBe(Object.keys(options)[0]);
    }
    // Created with them, and given the same again (the documented use): accepted.
    const same = { requestCert: true, ALPNProtocols: ['h2', 'http/1.1'] };
    const built = tls.createServer(same);
    cleanups.push(() => closeServer(built));
    await expect(attach(built, serverResolver({}), same)).resolves.toBeTypeOf('function');
  });

  it('a spec and code that disagree on an option are refused, by name, instead of code silently winning', async () => {
    const strict = serverResolver({ requestCert: true, rejectUnauthorized: true });
    expect(() => createServer(strict, { rejectUnauthorized: false })).toThrow(ConfigurationError);
    const server = tls.createServer({ requestCert: true });
    cleanups.push(() => closeServer(server));
    const error = await attach(server, strict, { requestCert: false }).catch((e: unknown) => e);
    expect((error as ConfigurationError).field).toBe('requestCert');
  });

  it('close() before the first bundle cancels the listen: the server never binds', async () => {
    const resolver = slowStart();
    const server = createServer(resolver);
    const served = new Promise<void>((resolve) => resolver.once('rotate', () => resolve()));
    resolver.once('error', () => server.close());
    server.listen(0, '127.0.0.1');
    await served;
    // The bundle arrived after close(): attach settles in the same turn, so one more turn shows the outcome.
    await new Promise((resolve) => setImmediate(resolve));
    expect(server.listening).toBe(false);
  });

  it('an option given as undefined does not unset the spec: a config asking for mTLS keeps it', async () => {
    const strict = serverResolver({ requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' });
    const server = createServer(
      strict,
      { requestCert: undefined, rejectUnauthorized: undefined, minVersion: undefined },
      (socket) => socket.end('hello'),
    );
    cleanups.push(() => closeServer(server));
    const port = await listen(server);
    await expect(handshake(port, {})).rejects.toThrow();
    await expect(
      handshake(port, { key: clientLeaf.keyPem, cert: clientLeaf.certPem, maxVersion: 'TLSv1.2' }),
    ).rejects.toThrow();
  });

  /** A cold resolver whose store fails until the first error, then serves: the start takes two attempts. */
  function slowStart() {
    const store = memory({ key: serverLeaf.keyPem, cert: serverLeaf.certPem });
    let down = true;
    const provider = {
      name: store.name,
      fetch: (ref: { id: string }, signal: AbortSignal) =>
        down
          ? Promise.reject(new FetchError('starting', { provider: store.name, transient: true }))
          : store.fetch({ ...ref, provider: store, options: {} }, signal),
    };
    const ref = (id: string) => ({ provider, id, options: {} });
    const resolver = createResolver({ key: ref('key'), cert: ref('cert') }, { retryInitialDelayMs: 20 });
    cleanups.push(() => resolver.close());
    resolver.once('error', () => {
      down = false;
    });
    return resolver;
  }

  it('close() in the same turn as the first bundle (a rotate listener) still cancels the listen', async () => {
    const resolver = slowStart();
    const server = createServer(resolver);
    const served = new Promise<void>((resolve) =>
      resolver.once('rotate', () => {
        server.close();
        resolve();
      }),
    );
    server.listen(0, '127.0.0.1');
    await served;
    await new Promise((resolve) => setImmediate(resolve));
    expect(server.listening).toBe(false);
  });

  it('a listen() right after close() during a slow start binds once the bundle arrives', async () => {
    const resolver = slowStart();
    const server = createServer(resolver);
    cleanups.push(() => closeServer(server));
    server.listen(0, '127.0.0.1');
    server.close();
    const bound = new Promise<void>((resolve) => server.once('listening', () => resolve()));
    server.listen(0, '127.0.0.1');
    await bound;
    expect(server.listening).toBe(true);
  });

  it("a client spec's rejectUnauthorized: false never turns off a server's client verification unless code says so", async () => {
    const clientish = serverResolver({ rejectUnauthorized: false });
    const error = (() => {
      try {
        createServer(clientish, { requestCert: true });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).field).toBe('rejectUnauthorized');
    // Said in code, it stands; and without requestCert the spec's value changes nothing for a server.
    expect(() =>
      createServer(clientish, { requestCert: true, rejectUnauthorized: false }).close(),
    ).not.toThrow();
    expect(() => createServer(clientish).close()).not.toThrow();
  });
});
