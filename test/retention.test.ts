/**
 * A rotated-out generation is let go of, on every helper: after many rotations, each with a real mutual-TLS
 * exchange through the helper, the contexts still reachable are as many as after the first, and no old
 * generation's key list is reachable. Once, each bundle kept the one before it alive through a closure's
 * scope (a context, certificates and keys per rotation and resolver, which the soak saw only as a heap a
 * few percent larger), and a gRPC server kept its first generation's key in the options Node keeps.
 * And connect()'s session state is wiped as docs/security.md says: at the swap, when replaced, at close().
 */
import http2 from 'node:http2';
import https from 'node:https';
import { syncBuiltinESMExports } from 'node:module';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { request as undiciRequest } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { createAgent, createHttp2Client } from '../src/agent.js';
import { grpcChannelCredentials, grpcServerCredentials } from '../src/grpc.js';
import { attach, connect, createResolver, createServer, type Resolver } from '../src/index.js';
import { createDispatcher } from '../src/undici.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';
import { closeServer, countContexts, listen, readAll } from './helpers/tls.js';

const ROTATIONS = 12;
/** Each side's current context, and one a socket or session of the generation before may still hold. */
const SLACK = 2;

let ca: TestCA;
const serverLeaves: Issued[] = [];
const clientLeaves: Issued[] = [];
beforeAll(async () => {
  ca = await createTestCA();
  for (let i = 0; i < 3; i++) {
    serverLeaves.push(await ca.issue({ commonName: 'localhost' }));
    clientLeaves.push(await ca.issue({ commonName: `client-${i}` }));
  }
});
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A server and a client resolver on one store; `rotate(i)` moves both to the i-th leaves and swaps. */
function pair() {
  const at = (pool: Issued[], i: number) => pool[i % pool.length] as Issued;
  const store = memory({
    'server/key': at(serverLeaves, 0).keyPem,
    'server/cert': at(serverLeaves, 0).certPem,
    'client/key': at(clientLeaves, 0).keyPem,
    'client/cert': at(clientLeaves, 0).certPem,
    ca: ca.certPem,
  });
  const spec = (side: string) => ({
    key: store.ref(`${side}/key`),
    cert: store.ref(`${side}/cert`),
    ca: store.ref('ca'),
  });
  const serverTls = createResolver(spec('server'));
  const clientTls = createResolver(spec('client'));
  cleanups.push(() => Promise.all([serverTls.close(), clientTls.close(), store.close()]).then(() => {}));
  const rotate = async (i: number) => {
    for (const [side, pool] of [
      ['server', serverLeaves],
      ['client', clientLeaves],
    ] as const) {
      store.set(`${side}/key`, at(pool, i).keyPem);
      store.set(`${side}/cert`, at(pool, i).certPem);
    }
    await Promise.all([serverTls.refresh(), clientTls.refresh()]);
  };
  return { serverTls, clientTls, rotate };
}

/** Starts a server on `serverTls` and returns one exchange through the helper under test on `clientTls`. */
type Exchange = (serverTls: Resolver, clientTls: Resolver) => Promise<() => Promise<void>>;

async function httpsServer(serverTls: Resolver): Promise<number> {
  const server = https.createServer({ requestCert: true }, (_request, response) => response.end('ok'));
  await attach(server, serverTls, { requestCert: true });
  const port = await listen(server);
  cleanups.push(() => {
    server.closeAllConnections();
    return closeServer(server);
  });
  return port;
}

const helpers: [string, Exchange][] = [
  [
    'connect() and createServer()',
    async (serverTls, clientTls) => {
      const server = createServer(serverTls, { requestCert: true }, (socket) => socket.end('ok'));
      const port = await listen(server);
      cleanups.push(() => closeServer(server));
      return async () => {
        const socket = await connect(clientTls, { host: '127.0.0.1', port, servername: 'localhost' });
        expect(await readAll(socket)).toBe('ok');
        socket.destroy();
      };
    },
  ],
  [
    'createAgent() and attach()',
    async (serverTls, clientTls) => {
      const port = await httpsServer(serverTls);
      const agent = createAgent(clientTls);
      cleanups.push(() => agent.destroy());
      return () =>
        new Promise<void>((resolve, reject) => {
          https
            .get({ host: '127.0.0.1', port, servername: 'localhost', agent }, (response) => {
              response.resume();
              response.on('end', resolve);
            })
            .on('error', reject);
        });
    },
  ],
  [
    'createDispatcher() (undici)',
    async (serverTls, clientTls) => {
      const port = await httpsServer(serverTls);
      const dispatcher = await createDispatcher(clientTls);
      cleanups.push(() => dispatcher.close());
      return async () => {
        const response = await undiciRequest(`https://localhost:${port}/`, { dispatcher });
        expect(await response.body.text()).toBe('ok');
      };
    },
  ],
  [
    'createHttp2Client() and an attached HTTP/2 server',
    async (serverTls, clientTls) => {
      const server = http2.createSecureServer({ requestCert: true });
      await attach(server, serverTls, { requestCert: true });
      server.on('stream', (stream) => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
      const port = await listen(server);
      const client = createHttp2Client(clientTls, `https://localhost:${port}`);
      cleanups.push(() => closeServer(server));
      cleanups.push(() => client.close());
      return async () => {
        const stream = (await client.session()).request({ ':path': '/' });
        stream.resume();
        await new Promise((resolve, reject) => stream.on('end', resolve).on('error', reject));
      };
    },
  ],
  [
    'gRPC server and channel credentials',
    async (serverTls, clientTls) => {
      const json = {
        serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
        deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()) as unknown,
      };
      const service = {
        echo: {
          path: '/tls_secrets.test.Retention/Echo',
          requestStream: false,
          responseStream: false,
          requestSerialize: json.serialize,
          requestDeserialize: json.deserialize,
          responseSerialize: json.serialize,
          responseDeserialize: json.deserialize,
        },
      } as const;
      const server = new grpc.Server();
      server.addService(service, {
        echo: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { ok: true }),
      });
      const serverCredentials = await grpcServerCredentials(serverTls, { requireClientCert: true });
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync('127.0.0.1:0', serverCredentials, (error, bound) =>
          error ? reject(error) : resolve(bound),
        ),
      );
      cleanups.push(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
      const Client = grpc.makeGenericClientConstructor(service, 'Retention');
      const client = new Client(
        `127.0.0.1:${port}`,
        await grpcChannelCredentials(clientTls, { servername: 'localhost' }),
        { 'grpc.use_local_subchannel_pool': 1 },
      ) as unknown as grpc.Client & {
        echo(request: unknown, callback: (error: grpc.ServiceError | null) => void): void;
      };
      cleanups.push(() => client.close());
      return () =>
        new Promise<void>((resolve, reject) =>
          client.echo({}, (error) => (error ? reject(error) : resolve())),
        );
    },
  ],
];

describe('a rotated-out generation is released', () => {
  it.each(helpers)(
    '%s: old contexts and key lists are let go of after many rotations',
    async (_name, start) => {
      const contexts = countContexts();
      cleanups.push(() => contexts.restore());
      const { serverTls, clientTls, rotate } = pair();
      // Each generation's key list, the object every helper is handed: nothing may keep an old one (such as
      // the options a server was constructed with, which Node keeps for the server's life).
      const released = new Set<string>();
      const registry = new FinalizationRegistry<string>((held) => released.add(held));
      const track = async () => {
        for (const [side, resolver] of [
          ['server', serverTls],
          ['client', clientTls],
        ] as const) {
          registry.register((await resolver.resolve()).key as object, `${side} ${resolver.generation}`);
        }
      };
      const exchange = await start(serverTls, clientTls);
      await track();
      await exchange();
      await rotate(1);
      await track();
      await exchange();
      const settled = await contexts.live();

      for (let i = 2; i <= ROTATIONS; i++) {
        await rotate(i);
        await track();
        await exchange();
      }
      expect(serverTls.generation).toBe(ROTATIONS + 1);
      expect(clientTls.generation).toBe(ROTATIONS + 1);
      // Each rotation builds contexts; none of an older generation may stay reachable.
      expect(contexts.count()).toBeGreaterThan(settled + ROTATIONS);
      expect(await contexts.live()).toBeLessThanOrEqual(settled + SLACK);
      // All but the current generation and the one before it (a socket of it may still be closing).
      const old = Array.from({ length: ROTATIONS - 1 }, (_, i) => i + 1);
      const kept = ['server', 'client'].flatMap((side) =>
        old.map((n) => `${side} ${n}`).filter((held) => !released.has(held)),
      );
      expect(kept).toEqual([]);
    },
  );
});

describe("connect()'s TLS sessions are wiped", () => {
  it("a replaced ticket at once, the old generation's at the swap (no connect() needed), the rest at close()", async () => {
    const { serverTls, clientTls, rotate } = pair();
    const server = createServer(serverTls, { requestCert: true }, (socket) => socket.end('ok'));
    const port = await listen(server);
    cleanups.push(() => closeServer(server));
    // Every session buffer the client's sockets hand out: the ones connect() keeps are among them.
    const sessions: Buffer[] = [];
    const original = tls.connect;
    (tls as { connect: typeof tls.connect }).connect = ((...args: Parameters<typeof tls.connect>) => {
      const socket = original(...args);
      socket.on('session', (session: Buffer) => sessions.push(session));
      return socket;
    }) as typeof tls.connect;
    syncBuiltinESMExports();
    cleanups.push(() => {
      (tls as { connect: typeof tls.connect }).connect = original;
      syncBuiltinESMExports();
    });
    const wiped = (session: Buffer) => session.every((byte) => byte === 0);
    const exchange = async () => {
      const socket = await connect(clientTls, { host: '127.0.0.1', port, servername: 'localhost' });
      expect(await readAll(socket)).toBe('ok');
      socket.destroy();
    };

    await exchange();
    // TLS 1.3: two tickets per handshake; the one kept is the last, the first is wiped when replaced.
    expect(sessions.length).toBeGreaterThanOrEqual(2);
    expect(sessions.slice(0, -1).filter((session) => !wiped(session))).toEqual([]);
    expect(wiped(sessions[sessions.length - 1] as Buffer)).toBe(false);

    await rotate(1);
    expect(sessions.filter((session) => !wiped(session))).toEqual([]);

    await exchange();
    expect(sessions.filter((session) => !wiped(session))).toHaveLength(1);
    await clientTls.close();
    expect(sessions.filter((session) => !wiped(session))).toEqual([]);
  });
});
