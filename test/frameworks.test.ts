/**
 * Frameworks that create their own server: Fastify 5 with `https` and with `http2: true`, kept rotating by
 * `attach()` (examples/frameworks/fastify.ts). Real mutual-TLS requests over HTTP/1.1 and HTTP/2; each checks
 * the certificate the server presented in that handshake.
 */
import http2 from 'node:http2';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { expressServer, koaServer } from '../examples/frameworks/express.js';
import { http2App, httpsApp } from '../examples/frameworks/fastify.js';
import { memory } from '../providers/memory.js';
import { SecretNotFoundError } from '../src/errors.js';
import { createResolver, type Resolver } from '../src/index.js';
import { createTestCA, type Issued } from './fixtures/ca.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Seen {
  readonly status: number;
  readonly serverCN: string;
  readonly body: { hello: string; http?: string };
}

const commonName = (cert: PeerCertificate) => String(cert.subject.CN);

/** One HTTP/1.1 request on a new connection (no agent reuse), with a client certificate. */
function get11(port: number, ca: string, client: Issued): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/hello',
        servername: 'localhost',
        ca,
        key: client.keyPem,
        cert: client.certPem,
        agent: false,
      },
      (res) => {
        const serverCN = commonName((res.socket as TLSSocket).getPeerCertificate());
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, serverCN, body: JSON.parse(body) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** One HTTP/2 request on a new session. */
function get2(port: number, ca: string, client: Issued): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://localhost:${port}`, {
      host: '127.0.0.1',
      ca,
      key: client.keyPem,
      cert: client.certPem,
    });
    session.on('error', reject);
    let serverCN = '';
    session.once('connect', (_session, socket) => {
      serverCN = commonName((socket as TLSSocket).getPeerCertificate());
    });
    const stream = session.request({ ':path': '/hello' });
    let status = 0;
    let body = '';
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      body += chunk;
    });
    stream.on('end', () => {
      session.close();
      // A refused client certificate ends the stream without a response (TLS 1.3 reports it after the handshake).
      if (status === 0) reject(new Error('no response: the server closed the session'));
      else resolve({ status, serverCN, body: JSON.parse(body) });
    });
    stream.on('error', reject);
    stream.end();
  });
}

/**
 * Two CAs, a server certificate from each, a client of each, and a resolver serving the first server
 * certificate with the first CA from a memory store: the rotation every framework test makes.
 */
async function rotationRig() {
  const [oldCa, newCa] = await Promise.all([
    createTestCA({ commonName: 'old CA' }),
    createTestCA({ commonName: 'new CA' }),
  ]);
  const [s1, s2, client, newClient] = await Promise.all([
    oldCa.issue({ commonName: 'server-1', dnsNames: ['localhost'] }),
    newCa.issue({ commonName: 'server-2', dnsNames: ['localhost'] }),
    oldCa.issue({ commonName: 'client-old' }),
    newCa.issue({ commonName: 'client-new' }),
  ]);
  const store = memory({ key: s1.keyPem, cert: s1.certPem, ca: oldCa.certPem });
  const tls = createResolver({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
  cleanups.push(() => tls.close());
  return { oldCa, newCa, s2, client, newClient, store, tls };
}

const rotated = (resolver: Resolver) =>
  new Promise<void>((resolve) => resolver.once('rotate', () => resolve()));

describe.each([
  ['https', httpsApp, get11, '1.1'],
  ['http2: true', http2App, get2, '2.0'],
] as const)('Fastify 5 with %s', (_label, build, get, httpVersion) => {
  it('serves the first bundle from the first request and follows rotations without a restart', async () => {
    const { oldCa, newCa, s2, client, newClient, store, tls } = await rotationRig();
    const app = await build(tls);
    cleanups.push(() => app.close());
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;

    // The first request already gets the resolver's bundle: attach() installed it before listen().
    const first = await get(port, oldCa.certPem, client);
    expect(first).toMatchObject({
      status: 200,
      serverCN: 'server-1',
      body: { hello: 'world', http: httpVersion },
    });

    // Server certificate and key from the new CA, and the CA the server verifies clients with.
    const swapped = rotated(tls);
    store.set('key', s2.keyPem);
    store.set('cert', s2.certPem);
    store.set('ca', newCa.certPem);
    await swapped;
    const second = await get(port, newCa.certPem, newClient);
    expect(second).toMatchObject({ status: 200, serverCN: 'server-2' });
    // The old client certificate is no longer trusted: the complete options were installed, ca included.
    await expect(get(port, newCa.certPem, client)).rejects.toThrow();
  });

  it('a bad store rejects the build, before anything could listen', async () => {
    const tls = createResolver({ key: memory().ref('absent-key'), cert: memory().ref('absent-cert') });
    cleanups.push(() => tls.close());
    const error = await build(tls).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SecretNotFoundError);
    expect((error as Error).message).toMatch(/absent-(key|cert)/);
  });
});

describe.each([
  ['Express 5', expressServer, 'express'],
  ['Koa 3', koaServer, 'koa'],
] as const)('%s on an https server of your own', (_label, build, hello) => {
  it('serves the first bundle from the first request and follows a rotation of cert, key and CA', async () => {
    const { oldCa, newCa, s2, client, newClient, store, tls } = await rotationRig();
    const server = await build(tls);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as AddressInfo;

    expect(await get11(port, oldCa.certPem, client)).toMatchObject({
      status: 200,
      serverCN: 'server-1',
      body: { hello },
    });
    const swapped = rotated(tls);
    store.set('key', s2.keyPem);
    store.set('cert', s2.certPem);
    store.set('ca', newCa.certPem);
    await swapped;
    expect(await get11(port, newCa.certPem, newClient)).toMatchObject({ status: 200, serverCN: 'server-2' });
    await expect(get11(port, newCa.certPem, client)).rejects.toThrow();
  });
});
