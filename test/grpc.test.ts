/**
 * gRPC credentials against a real grpc-js server and client (makeGenericClientConstructor, JSON messages):
 * mutual TLS, unary and server-streaming calls running while the server certificate, the client certificate
 * and the CA rotate, and a client revoked (by CRL, or by removing its CA) being cut off within
 * max_connection_age × 1.1 + grace.
 */
import { type PeerCertificate, connect as tlsConnect } from 'node:tls';
import { inspect } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { ConfigurationError } from '../src/errors.js';
import { grpcChannelCredentials, grpcServerCredentials } from '../src/grpc.js';
import { createResolver, type Resolver } from '../src/index.js';
import { internal } from '../src/resolver/index.js';
import { createTestCA, type Issued } from './fixtures/ca.js';
import { countContexts } from './helpers/tls.js';

interface EchoReply {
  readonly clientCN: string | undefined;
  readonly n: number;
}

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
};
const method = (name: string, responseStream: boolean) => ({
  path: `/tls_secrets.test.Echo/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});
const service = { echo: method('Echo', false), count: method('Count', true) } as const;
const EchoClient = grpc.makeGenericClientConstructor(service, 'Echo');
type Echo = grpc.Client & {
  echo(
    request: { n: number },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, reply?: EchoReply) => void,
  ): grpc.ClientUnaryCall;
  count(request: { n: number }, options: grpc.CallOptions): grpc.ClientReadableStream<EchoReply>;
};

const commonName = (cert: PeerCertificate | undefined) =>
  cert?.subject?.CN === undefined ? undefined : String(cert.subject.CN);

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startServer(resolver: Resolver, options: grpc.ServerOptions) {
  const server = new grpc.Server(options);
  const clientNames: string[] = [];
  server.addService(service, {
    echo: (call: grpc.ServerUnaryCall<{ n: number }, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) => {
      const clientCN = commonName(call.getAuthContext().sslPeerCertificate);
      if (clientCN) clientNames.push(clientCN);
      callback(null, { clientCN, n: call.request.n });
    },
    count: (call: grpc.ServerWritableStream<{ n: number }, EchoReply>) => {
      const clientCN = commonName(call.getAuthContext().sslPeerCertificate);
      let i = 0;
      const timer = setInterval(() => {
        call.write({ clientCN, n: i++ });
        if (i >= call.request.n) {
          clearInterval(timer);
          call.end();
        }
      }, 10);
      call.on('cancelled', () => clearInterval(timer));
    },
  });
  const credentials = await grpcServerCredentials(resolver, { requireClientCert: true });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return { server, port, clientNames };
}

async function startClient(resolver: Resolver, port: number, seen: string[] = []) {
  const credentials = await grpcChannelCredentials(resolver, {
    // The target is an IP address; the server's certificate names localhost.
    servername: 'localhost',
    checkServerIdentity: (_host: string, cert: PeerCertificate) => {
      seen.push(commonName(cert) ?? '');
      return undefined;
    },
  });
  const client = new EchoClient(`127.0.0.1:${port}`, credentials, {
    // Each test client gets its own connection, not one shared through the global subchannel pool.
    'grpc.use_local_subchannel_pool': 1,
  }) as unknown as Echo;
  cleanups.push(() => client.close());
  return { client, seen };
}

const unary = (client: Echo, n: number) =>
  new Promise<EchoReply>((resolve, reject) =>
    client.echo({ n }, { deadline: Date.now() + 5_000 }, (error, reply) =>
      error || !reply ? reject(error ?? new Error('no reply')) : resolve(reply),
    ),
  );

const stream = (client: Echo, n: number) =>
  new Promise<EchoReply[]>((resolve, reject) => {
    const replies: EchoReply[] = [];
    const call = client.count({ n }, { deadline: Date.now() + 5_000 });
    call.on('data', (reply: EchoReply) => replies.push(reply));
    call.on('error', reject);
    call.on('end', () => (replies.length === n ? resolve(replies) : reject(new Error('stream cut short'))));
  });

/** Polls `check` until it holds or the deadline passes (no fixed sleeps: the wait ends as soon as it holds). */
async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const rotated = (resolver: Resolver) =>
  new Promise<void>((resolve) => resolver.once('rotate', () => resolve()));

describe('grpcServerCredentials / grpcChannelCredentials', () => {
  it('refuse at start what cannot work, naming the field', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'server', dnsNames: ['localhost'] });
    const noCa = createResolver({ key: leaf.keyPem, cert: leaf.certPem });
    const noCert = createResolver({ ca: ca.certPem });
    cleanups.push(
      () => noCa.close(),
      () => noCert.close(),
    );
    await expect(grpcServerCredentials(noCa, { requireClientCert: true })).rejects.toThrow(/needs a ca/);
    const error = await grpcServerCredentials(noCert).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).field).toBe('key');
    const missing = createResolver({ ca: memory().ref('absent-ca') });
    cleanups.push(() => missing.close());
    await expect(grpcChannelCredentials(missing)).rejects.toThrow(/absent-ca/);
  });

  it('server credentials follow the resolver only while a server uses them', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'server', dnsNames: ['localhost'] });
    const resolver = createResolver({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });
    cleanups.push(() => resolver.close());
    const before = resolver[internal].subscriberCount();
    const credentials = await grpcServerCredentials(resolver);
    expect(resolver[internal].subscriberCount()).toBe(before + 1);
    const server = new grpc.Server();
    await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', credentials, (error, port) => (error ? reject(error) : resolve(port))),
    );
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    expect(resolver[internal].subscriberCount()).toBe(before);
  });

  it('a rotation builds one context, however many addresses the server is bound to, and each serves it', async () => {
    const ca = await createTestCA();
    const [first, next] = await Promise.all([
      ca.issue({ commonName: 'server-first', dnsNames: ['localhost'] }),
      ca.issue({ commonName: 'server-next', dnsNames: ['localhost'] }),
    ]);
    const store = memory({ key: first.keyPem, cert: first.certPem });
    const resolver = createResolver({ key: store.ref('key'), cert: store.ref('cert'), ca: ca.certPem });
    cleanups.push(() => resolver.close());
    const credentials = await grpcServerCredentials(resolver);
    const server = new grpc.Server();
    cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
    const bind = () =>
      new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', credentials, (error, port) =>
          error ? reject(error) : resolve(port),
        ),
      );
    const ports = [await bind(), await bind()];
    const presented = (port: number) =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          ca: ca.certPem,
          ALPNProtocols: ['h2'],
        });
        socket.once('secureConnect', () => {
          resolve(socket.getPeerX509Certificate()?.serialNumber ?? '');
          socket.destroy();
        });
        socket.once('error', reject);
      });
    expect(await Promise.all(ports.map(presented))).toEqual([first.serial, first.serial]);
    const builds = countContexts();
    cleanups.push(() => builds.restore());
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    expect((await resolver.refresh()).rotated).toBe(true);
    // The gate's build is the one both http2 servers install: no check build, no build per server.
    expect(builds.count()).toBe(1);
    expect(await Promise.all(ports.map(presented))).toEqual([next.serial, next.serial]);
  });

  it('credentials, and the client holding them, print without the keys', async () => {
    const ca = await createTestCA();
    const [serverLeaf, clientLeaf] = await Promise.all([
      ca.issue({ commonName: 'server', dnsNames: ['localhost'] }),
      ca.issue({ commonName: 'client' }),
    ]);
    const serverTls = createResolver({ key: serverLeaf.keyPem, cert: serverLeaf.certPem, ca: ca.certPem });
    const clientTls = createResolver({ key: clientLeaf.keyPem, cert: clientLeaf.certPem, ca: ca.certPem });
    cleanups.push(
      () => serverTls.close(),
      () => clientTls.close(),
    );
    const { port } = await startServer(serverTls, {});
    const { client } = await startClient(clientTls, port);
    await unary(client, 1);
    const serverCredentials = await grpcServerCredentials(serverTls, { requireClientCert: true });
    const channelCredentials = await grpcChannelCredentials(clientTls);
    const shown = [
      // Not the grpc.Server: Node's tls.Server keeps key and cert as properties after setSecureContext.
      ...[client, serverCredentials, channelCredentials].map((value) =>
        inspect(value, { showHidden: true, depth: Infinity }),
      ),
      JSON.stringify([serverCredentials, channelCredentials]),
    ].join('\n');
    for (const key of [serverLeaf.keyPem, clientLeaf.keyPem]) {
      const body = key.split('\n')[1] as string;
      expect(shown).not.toContain(body);
      // A Buffer prints as hex bytes.
      expect(shown).not.toContain(
        Buffer.from(key).subarray(30, 40).toString('hex').replace(/(..)/g, '$1 ').trim(),
      );
    }
  });

  it('a bundle the resolver refuses never reaches the server: the last good one keeps serving', async () => {
    const ca = await createTestCA();
    const [good, other, clientLeaf] = await Promise.all([
      ca.issue({ commonName: 'server-good', dnsNames: ['localhost'] }),
      ca.issue({ commonName: 'server-other', dnsNames: ['localhost'] }),
      ca.issue({ commonName: 'client' }),
    ]);
    const store = memory({ key: good.keyPem, cert: good.certPem });
    const serverTls = createResolver({ key: store.ref('key'), cert: store.ref('cert'), ca: ca.certPem });
    const clientTls = createResolver({ key: clientLeaf.keyPem, cert: clientLeaf.certPem, ca: ca.certPem });
    cleanups.push(
      () => serverTls.close(),
      () => clientTls.close(),
    );
    const { port } = await startServer(serverTls, {
      'grpc.max_connection_age_ms': 200,
      'grpc.max_connection_age_grace_ms': 200,
    });
    const { client, seen } = await startClient(clientTls, port);
    await unary(client, 1);
    const refused = new Promise<Error>((resolve) => serverTls.once('error', resolve));
    // A certificate whose key is not the one in the store: the resolver's validation refuses the generation.
    store.set('cert', other.certPem);
    expect((await refused).message).toMatch(/key|match/i);
    const handshakes = seen.length;
    // Calls keep the channel busy, so it reconnects after each max_connection_age GOAWAY.
    await until(
      async () => (await unary(client, 2)) !== undefined && seen.length > handshakes,
      'a new handshake after the refused rotation',
    );
    expect(new Set(seen)).toEqual(new Set(['server-good']));
  });

  it('keeps unary and streaming calls succeeding while server cert, client cert and CA rotate', async () => {
    const [oldCa, newCa] = await Promise.all([
      createTestCA({ commonName: 'old CA' }),
      createTestCA({ commonName: 'new CA' }),
    ]);
    const issue = (ca: typeof oldCa, commonName: string) =>
      ca.issue({ commonName, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
    const [s1, s2, c1, c2] = await Promise.all([
      issue(oldCa, 'server-1'),
      issue(newCa, 'server-2'),
      issue(oldCa, 'client-1'),
      issue(newCa, 'client-2'),
    ]);
    const store = memory({
      ca: oldCa.certPem,
      'server.key': s1.keyPem,
      'server.cert': s1.certPem,
      'client.key': c1.keyPem,
      'client.cert': c1.certPem,
    });
    const serverTls = createResolver({
      key: store.ref('server.key'),
      cert: store.ref('server.cert'),
      ca: store.ref('ca'),
    });
    const clientTls = createResolver({
      key: store.ref('client.key'),
      cert: store.ref('client.cert'),
      ca: store.ref('ca'),
    });
    cleanups.push(
      () => serverTls.close(),
      () => clientTls.close(),
    );
    const { port, clientNames } = await startServer(serverTls, {
      'grpc.max_connection_age_ms': 500,
      'grpc.max_connection_age_grace_ms': 2_000,
    });
    const { client, seen } = await startClient(clientTls, port);

    let calls = 0;
    const failures: unknown[] = [];
    let running = true;
    const loop = async (kind: 'unary' | 'stream') => {
      while (running) {
        calls += 1;
        try {
          if (kind === 'unary') await unary(client, calls);
          else await stream(client, 5);
        } catch (error) {
          failures.push(error);
        }
      }
    };
    const loops = [loop('unary'), loop('unary'), loop('stream'), loop('stream')];
    const setBoth = async (key: string, value: string, resolvers: Resolver[]) => {
      const done = Promise.all(resolvers.map(rotated));
      store.set(key, value);
      await done;
    };
    try {
      await until(() => calls > 20, 'calls before rotating');
      // 1. Both sides trust old and new CA.
      await setBoth('ca', `${oldCa.certPem}\n${newCa.certPem}`, [serverTls, clientTls]);
      // 2. The server presents a certificate from the new CA: seen by the client at its next handshake.
      const serverRotated = rotated(serverTls);
      store.set('server.cert', s2.certPem);
      store.set('server.key', s2.keyPem);
      await serverRotated;
      await until(() => seen.at(-1) === 'server-2', 'the client to see server-2');
      // 3. The client presents a certificate from the new CA.
      const clientRotated = rotated(clientTls);
      store.set('client.cert', c2.certPem);
      store.set('client.key', c2.keyPem);
      await clientRotated;
      await until(() => clientNames.at(-1) === 'client-2', 'the server to see client-2');
      // 4. The old CA is no longer trusted anywhere.
      await setBoth('ca', newCa.certPem, [serverTls, clientTls]);
      const handshakes = seen.length;
      await until(() => seen.length > handshakes + 1, 'two handshakes with only the new CA');
      const before = calls;
      await until(() => calls > before + 20, 'calls after the last rotation');
    } finally {
      running = false;
      await Promise.all(loops);
    }
    console.info(
      `[grpc] rotation under load: ${calls} calls, ${failures.length} failed, ${seen.length} handshakes`,
    );
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    expect(clientNames.at(-1)).toBe('client-2');
  }, 60_000);

  it.each([
    ['a CRL naming it', 'crl'],
    ['its CA removed from ca', 'ca'],
  ] as const)(
    'a client revoked by %s is cut off within max_connection_age × 1.1 + grace',
    async (_label, how) => {
      const [ca, otherCa] = await Promise.all([
        createTestCA({ commonName: 'revoking CA' }),
        createTestCA({ commonName: 'remaining CA' }),
      ]);
      const [serverLeaf, revokedLeaf, keptLeaf] = await Promise.all([
        ca.issue({ commonName: 'server', dnsNames: ['localhost'] }),
        ca.issue({ commonName: 'to-be-revoked' }),
        (how === 'ca' ? otherCa : ca).issue({ commonName: 'kept' }),
      ]);
      const store = memory({ crl: await ca.crl([]), ca: `${ca.certPem}\n${otherCa.certPem}` });
      const serverTls = createResolver({
        key: serverLeaf.keyPem,
        cert: serverLeaf.certPem,
        ca: store.ref('ca'),
        // A CRL is checked for the issuer of each client: only the CRL variant has one.
        ...(how === 'crl' ? { crl: store.ref('crl') } : {}),
      });
      const clientTls = (leaf: Issued) => {
        const resolver = createResolver({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });
        cleanups.push(() => resolver.close());
        return resolver;
      };
      cleanups.push(() => serverTls.close());
      const AGE_MS = 1_000;
      const GRACE_MS = 500;
      const { port } = await startServer(serverTls, {
        'grpc.max_connection_age_ms': AGE_MS,
        'grpc.max_connection_age_grace_ms': GRACE_MS,
      });
      const revoked = await startClient(clientTls(revokedLeaf), port);
      const kept = await startClient(clientTls(keptLeaf), port);
      expect((await unary(revoked.client, 1)).clientCN).toBe('to-be-revoked');

      // A streaming call is open on the established connection when the CRL changes.
      const openStream = stream(revoked.client, 400).then(
        () => 'completed',
        (error: grpc.ServiceError) => error.code,
      );
      const swapped = rotated(serverTls);
      if (how === 'crl') store.set('crl', await ca.crl([revokedLeaf.serial]));
      else store.set('ca', otherCa.certPem);
      await swapped;
      const revokedAt = Date.now();
      let refusedAfter: number | undefined;
      let lastError: grpc.ServiceError | undefined;
      await until(async () => {
        try {
          await unary(revoked.client, 2);
          return false;
        } catch (error) {
          lastError = error as grpc.ServiceError;
          refusedAfter = Date.now() - revokedAt;
          return true;
        }
      }, 'the revoked client to be refused');
      const bound = AGE_MS * 1.1 + GRACE_MS;
      console.info(
        `[grpc] revoked (${how}) client refused ${refusedAfter} ms after the swap (bound ${bound} ms)`,
      );
      expect(lastError?.code).toBe(grpc.status.UNAVAILABLE);
      // One reconnect attempt of slack for a loaded machine.
      expect(refusedAfter).toBeLessThanOrEqual(bound + 1_000);
      // The stream of 400 × 10 ms outlives age + grace: it is cut, not left running on revoked credentials.
      expect(await openStream).not.toBe('completed');
      // A new channel for the revoked certificate is refused at once; the other client is unaffected.
      const fresh = await startClient(clientTls(revokedLeaf), port);
      await expect(unary(fresh.client, 3)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect((await unary(kept.client, 4)).clientCN).toBe('kept');
    },
    30_000,
  );

  it('server.drain() on the rotate event cuts a revoked client off within the drain grace', async () => {
    const ca = await createTestCA({ commonName: 'draining CA' });
    const [serverLeaf, revokedLeaf, keptLeaf] = await Promise.all([
      ca.issue({ commonName: 'server', dnsNames: ['localhost'] }),
      ca.issue({ commonName: 'to-be-revoked' }),
      ca.issue({ commonName: 'kept' }),
    ]);
    const store = memory({ crl: await ca.crl([]) });
    const serverTls = createResolver({
      key: serverLeaf.keyPem,
      cert: serverLeaf.certPem,
      ca: ca.certPem,
      crl: store.ref('crl'),
    });
    const clientTls = createResolver({ key: revokedLeaf.keyPem, cert: revokedLeaf.certPem, ca: ca.certPem });
    const keptTls = createResolver({ key: keptLeaf.keyPem, cert: keptLeaf.certPem, ca: ca.certPem });
    cleanups.push(
      () => serverTls.close(),
      () => clientTls.close(),
      () => keptTls.close(),
    );
    // No connection age: without the drain, the established connection would live on.
    const { server, port } = await startServer(serverTls, {});
    const GRACE_MS = 300;
    serverTls.on('rotate', () => server.drain(`127.0.0.1:${port}`, GRACE_MS));
    const { client } = await startClient(clientTls, port);
    expect((await unary(client, 1)).clientCN).toBe('to-be-revoked');
    const openStream = stream(client, 400).then(
      () => 'completed',
      (error: grpc.ServiceError) => error.code,
    );
    const swapped = rotated(serverTls);
    store.set('crl', await ca.crl([revokedLeaf.serial]));
    await swapped;
    const revokedAt = Date.now();
    let refusedAfter: number | undefined;
    await until(async () => {
      try {
        await unary(client, 2);
        return false;
      } catch (error) {
        expect((error as grpc.ServiceError).code).toBe(grpc.status.UNAVAILABLE);
        refusedAfter = Date.now() - revokedAt;
        return true;
      }
    }, 'the revoked client to be refused after the drain');
    console.info(`[grpc] with drain(${GRACE_MS} ms): revoked client refused after ${refusedAfter} ms`);
    expect(refusedAfter).toBeLessThanOrEqual(GRACE_MS + 1_000);
    expect(await openStream).not.toBe('completed');
    // The drained server still accepts clients the CRL does not name.
    const kept = await startClient(keptTls, port);
    expect((await unary(kept.client, 3)).clientCN).toBe('kept');
  }, 30_000);
});
