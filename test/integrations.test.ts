/**
 * HTTP clients on the resolver, each over a real mutual-TLS connection on loopback: the https.Agent, the
 * undici dispatcher and the HTTP/2 client, with the server side hot-swapped by `attach`. Rotation and expiry
 * are checked on the server side: which client certificate each request carried and when each connection
 * closed.
 */
import { X509Certificate } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { createSecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { fetch as undiciFetch, request as undiciRequest } from 'undici';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { liveOptions } from '../examples/databases/live-options.js';
import { mysqlSsl } from '../examples/databases/mysql2.js';
import { type MemoryProvider, memory } from '../providers/memory.js';
import { createAgent, createHttp2Client } from '../src/agent.js';
import { attach, createResolver, type Resolver } from '../src/index.js';
import { createDispatcher } from '../src/undici.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';
import { eventually, sleep } from './helpers/tls.js';

let ca: TestCA;
let serverA: Issued;
let serverB: Issued;
let clientA: Issued;
let clientB: Issued;

beforeAll(async () => {
  ca = await createTestCA();
  [serverA, serverB, clientA, clientB] = await Promise.all([
    ca.issue({ commonName: 'server-a' }),
    ca.issue({ commonName: 'server-b' }),
    ca.issue({ commonName: 'client-a' }),
    ca.issue({ commonName: 'client-b' }),
  ]);
});

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Side {
  store: MemoryProvider;
  resolver: Resolver;
}

function side(issued: Issued): Side {
  const store = memory({ key: issued.keyPem, cert: issued.certPem, ca: ca.certPem });
  const resolver = createResolver(
    { key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') },
    { refreshIntervalMs: 3_600_000 },
  );
  cleanups.push(() => resolver.close());
  return { store, resolver };
}

async function rotate({ store, resolver }: Side, issued: Issued): Promise<void> {
  store.set('key', issued.keyPem);
  store.set('cert', issued.certPem);
  const result = await resolver.refresh();
  expect(result.rotated).toBe(true);
}

interface Seen {
  cn: string;
  port: number;
}

/** Connections the server accepted, by client port, with when each closed. */
class Connections {
  readonly closedAt = new Map<number, number>();
  readonly seen: number[] = [];
  track(socket: TLSSocket): void {
    const port = socket.remotePort ?? 0;
    this.seen.push(port);
    socket.once('close', () => this.closedAt.set(port, Date.now()));
  }
  closed(port: number): Promise<number> {
    return eventually(() => {
      const at = this.closedAt.get(port);
      if (at === undefined) throw new Error(`connection from port ${port} still open`);
      return at;
    }, 3_000);
  }
}

const MTLS = { requestCert: true, rejectUnauthorized: true } as const;

/** Answers with the client certificate's CN and the client port, after `?delay=ms`. */
async function httpsServer(server: Side): Promise<{ port: number; connections: Connections }> {
  const connections = new Connections();
  const app = https.createServer(MTLS, (req, res) => {
    const socket = req.socket as TLSSocket;
    const delay = Number(new URL(req.url ?? '/', 'https://x').searchParams.get('delay') ?? 0);
    const seen: Seen = { cn: String(socket.getPeerCertificate().subject?.CN), port: socket.remotePort ?? 0 };
    setTimeout(() => res.end(JSON.stringify(seen)), delay);
  });
  app.on('secureConnection', (socket: TLSSocket) => connections.track(socket));
  await attach(app, server.resolver, MTLS);
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        app.closeAllConnections();
        app.close(() => resolve());
      }),
  );
  return { port: (app.address() as AddressInfo).port, connections };
}

function get(
  agent: https.Agent,
  port: number,
  path = '/',
): Promise<Seen & { status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () =>
        resolve({ ...(JSON.parse(body) as Seen), status: res.statusCode ?? 0, reused: req.reusedSocket }),
      );
    });
    req.on('error', reject);
  });
}

describe('https.Agent', () => {
  it('does mutual TLS with the store’s client certificate and reuses pooled sockets', async () => {
    const { port, connections } = await httpsServer(side(serverA));
    const client = side(clientA);
    const agent = createAgent(client.resolver);
    cleanups.push(() => agent.destroy());

    const first = await get(agent, port);
    const second = await get(agent, port);
    expect(first).toMatchObject({ status: 200, cn: 'client-a', reused: false });
    expect(second).toMatchObject({ status: 200, cn: 'client-a', reused: true, port: first.port });
    expect(connections.seen).toEqual([first.port]);
  });

  it('at a rotation closes idle old sockets at once and busy ones after their request; none fails', async () => {
    const { port, connections } = await httpsServer(side(serverA));
    const client = side(clientA);
    const agent = createAgent(client.resolver);
    cleanups.push(() => agent.destroy());

    const slow = get(agent, port, '/?delay=700');
    const quick = await get(agent, port);
    await sleep(20);
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);

    const rotatedAt = Date.now();
    await rotate(client, clientB);
    // The idle socket of generation 1 goes now, while the slow request is still running on the other.
    const idleClosedAt = await connections.closed(quick.port);
    expect(idleClosedAt - rotatedAt).toBeLessThan(500);

    const slowResult = await slow;
    expect(slowResult).toMatchObject({ status: 200, cn: 'client-a' });
    await connections.closed(slowResult.port);

    const after = await get(agent, port);
    expect(after).toMatchObject({ status: 200, cn: 'client-b', reused: false });
    expect([quick.port, slowResult.port]).not.toContain(after.port);
  });

  it('an application rotate listener that throws does not stop the agent from draining', async () => {
    const { port, connections } = await httpsServer(side(serverA));
    const client = side(clientA);
    const failures: Error[] = [];
    client.resolver.on('error', (error) => failures.push(error));
    // Registered before the agent: the agent must not depend on the application's listeners.
    client.resolver.on('rotate', function brokenAudit() {
      throw new Error('audit sink down');
    });
    const agent = createAgent(client.resolver);
    cleanups.push(() => agent.destroy());
    const before = await get(agent, port);
    await sleep(20);
    await rotate(client, clientB);
    await connections.closed(before.port);
    expect(await get(agent, port)).toMatchObject({ status: 200, cn: 'client-b', reused: false });
    expect(failures.map((error) => error.message)).toContainEqual(expect.stringMatching(/brokenAudit/));
  });

  it("closes a generation's pooled sockets at its certificate's notAfter", async () => {
    const { port, connections } = await httpsServer(side(serverA));
    const shortLived = await ca.issue({
      commonName: 'client-short',
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 2_500),
    });
    const notAfter = new Date(new X509Certificate(shortLived.certPem).validTo).getTime();
    const client = side(shortLived);
    const agent = createAgent(client.resolver);
    cleanups.push(() => agent.destroy());

    const seen = await get(agent, port);
    expect(seen.cn).toBe('client-short');
    const closedAt = await eventually(() => connections.closed(seen.port), 5_000);
    expect(closedAt).toBeGreaterThanOrEqual(notAfter - 50);
    expect(closedAt).toBeLessThan(notAfter + 1_000);
  });
});

describe('undici dispatcher', () => {
  it('fetch and request do mutual TLS; a rotation drains the old connections without failing a request', async () => {
    const { port, connections } = await httpsServer(side(serverA));
    const client = side(clientA);
    const dispatcher = await createDispatcher(client.resolver);
    cleanups.push(() => dispatcher.destroy());
    const url = `https://127.0.0.1:${port}`;

    const first = await undiciRequest(url, { dispatcher });
    const firstSeen = (await first.body.json()) as Seen;
    expect(first.statusCode).toBe(200);
    expect(firstSeen.cn).toBe('client-a');
    const viaFetch = await undiciFetch(url, { dispatcher });
    expect(viaFetch.status).toBe(200);
    // Node's own fetch (its bundled undici) takes the dispatcher too; its RequestInit types another Dispatcher.
    const global = await fetch(url, { dispatcher } as unknown as RequestInit);
    expect(((await global.json()) as Seen).cn).toBe('client-a');
    await sleep(20);
    // Pooled: undici may have opened a second connection while the first was finishing, but no more.
    const again = (await (await undiciFetch(url, { dispatcher })).json()) as Seen;
    expect(again.cn).toBe('client-a');
    expect(connections.seen).toContain(again.port);
    await viaFetch.arrayBuffer();
    const before = [...connections.seen];
    expect(before.length).toBeLessThanOrEqual(2);

    const slow = undiciRequest(`${url}/?delay=500`, { dispatcher });
    await sleep(100);
    await rotate(client, clientB);
    const slowResponse = await slow;
    expect(slowResponse.statusCode).toBe(200);
    expect(((await slowResponse.body.json()) as Seen).cn).toBe('client-a');
    const slowDoneAt = Date.now();

    // At once, not through an idle pooled connection of generation 1.
    const after = await undiciRequest(url, { dispatcher });
    const afterSeen = (await after.body.json()) as Seen;
    expect(afterSeen.cn).toBe('client-b');
    expect(before).not.toContain(afterSeen.port);
    // Closed by the drain, not by a keep-alive timeout (the server announces 5 s).
    for (const port of before) expect((await connections.closed(port)) - slowDoneAt).toBeLessThan(1_000);
  });
});

describe('HTTP/2', () => {
  interface H2Seen {
    cn: string;
    status: number;
  }

  function h2get(session: http2.ClientHttp2Session, path = '/'): Promise<H2Seen> {
    return new Promise((resolve, reject) => {
      const stream = session.request({ ':path': path });
      let status = 0;
      let body = '';
      stream.setEncoding('utf8');
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', (chunk: string) => {
        body += chunk;
      });
      stream.on('end', () => resolve({ ...(JSON.parse(body) as { cn: string }), status }));
      stream.on('error', reject);
      stream.end();
    });
  }

  it('createSecureServer follows the resolver through attach; the client moves to a new session at rotation', async () => {
    const server = side(serverA);
    const app = http2.createSecureServer({ ...MTLS, allowHTTP1: false });
    app.on('stream', (stream, headers) => {
      const socket = stream.session?.socket as TLSSocket;
      const delay = Number(new URL(String(headers[':path']), 'https://x').searchParams.get('delay') ?? 0);
      setTimeout(() => {
        stream.respond({ ':status': 200 });
        stream.end(JSON.stringify({ cn: socket.getPeerCertificate().subject?.CN }));
      }, delay);
    });
    await attach(app, server.resolver, MTLS);
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const port = (app.address() as AddressInfo).port;

    const client = side(clientA);
    const h2 = createHttp2Client(client.resolver, `https://127.0.0.1:${port}`);
    cleanups.push(() => h2.close());

    const first = await h2.session();
    expect(await h2get(first)).toEqual({ cn: 'client-a', status: 200 });
    expect(await h2.session()).toBe(first);
    const serverCn = (s: http2.ClientHttp2Session) =>
      (s.socket as TLSSocket).getPeerCertificate().subject?.CN;
    expect(serverCn(first)).toBe('server-a');

    await rotate(server, serverB);
    const slow = h2get(first, '/?delay=400');
    await sleep(50);
    await rotate(client, clientB);
    const second = await h2.session();
    expect(second).not.toBe(first);
    expect(serverCn(second)).toBe('server-b');
    expect(await h2get(second)).toEqual({ cn: 'client-b', status: 200 });
    // The old session finishes its stream, then closes.
    expect(await slow).toEqual({ cn: 'client-a', status: 200 });
    await eventually(() => expect(first.closed).toBe(true));
  });
});

describe('database examples', () => {
  it('liveOptions follows rotations, and mysqlSsl gives mysql2 PEM fields that make a working context', async () => {
    const { port } = await httpsServer(side(serverA));
    const client = side(clientA);
    const live = await liveOptions(client.resolver);
    cleanups.push(() => live.stop());

    const handshake = (cn: string) =>
      new Promise<string>((resolve, reject) => {
        // What mysql2 does with its ssl option: build a context from the PEM fields.
        const { key, cert, ca: caPem } = mysqlSsl(live.current);
        const socket = tlsConnect({
          host: '127.0.0.1',
          port,
          secureContext: createSecureContext({ key, cert, ca: caPem }),
        });
        socket.once('secureConnect', () => {
          socket.write(`GET /?${cn} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
        });
        let reply = '';
        socket.setEncoding('utf8').on('data', (chunk: string) => {
          reply += chunk;
        });
        socket.once('end', () => resolve(reply));
        socket.once('error', reject);
      });
    expect(await handshake('a')).toContain('"cn":"client-a"');
    await rotate(client, clientB);
    await eventually(() => expect(live.current.cert).toEqual([clientB.certPem]));
    expect(await handshake('b')).toContain('"cn":"client-b"');
  });
});
