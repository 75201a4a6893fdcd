/**
 * Class 6: revocation must take effect. A resumed TLS session skips every certificate check, so a client
 * revoked by a new CRL, or whose CA was dropped, kept getting in by resuming (TLS 1.2 tickets, TLS 1.3
 * PSK) while the server carried its old ticket keys into each new context. Real mTLS servers, real clients
 * resuming real sessions with the `session` option.
 */
import https from 'node:https';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../../providers/memory.js';
import { attach, type Resolver } from '../../src/index.js';
import { closeServer, listen } from '../helpers/tls.js';
import { type Authority, type Cert, createRoot } from './pki.js';
import { handshake, resolverFor, serve } from './rig.js';

let root: Authority;
let otherRoot: Authority;
let server: Cert;
let renewedServer: Cert;
let client: Cert;

beforeAll(async () => {
  root = await createRoot();
  otherRoot = await createRoot('another root');
  server = await root.issue();
  renewedServer = await root.issue();
  client = await root.issue({ commonName: 'client' });
});

const mtls = { requestCert: true, rejectUnauthorized: true };
const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

async function rotate(resolver: Resolver): Promise<void> {
  const before = resolver.generation;
  await resolver.refresh();
  expect(resolver.generation).toBe(before + 1);
  // The server installs the new generation on the rotate event, one tick later.
  await new Promise((resolve) => setImmediate(resolve));
}

/** A client that connects, keeps its session, and checks that a second connection resumes it. */
async function resumingClient(port: number, version: (typeof VERSIONS)[number]) {
  const options = {
    ca: root.certPem,
    key: client.keyPem,
    cert: client.certPem,
    minVersion: version,
    maxVersion: version,
  };
  const first = await handshake(port, options);
  if (!first.ok || !first.session) throw new Error(`first handshake failed: ${JSON.stringify(first)}`);
  const session = first.session;
  const control = await handshake(port, { ...options, session });
  expect(control).toMatchObject({ ok: true, reused: true });
  return { options, session };
}

function mtlsStore(extra: Record<string, string | Buffer> = {}) {
  return memory({ key: server.keyPem, cert: server.certPem, ca: root.certPem, ...extra });
}

describe.each(VERSIONS)('%s', (version) => {
  it('a CRL revoking the client: the old session no longer resumes, the client is refused', async () => {
    const store = mtlsStore({ crl: await root.crl() });
    const resolver = resolverFor({
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      crl: store.ref('crl'),
    });
    const port = await serve(resolver, mtls);
    const { options, session } = await resumingClient(port, version);
    store.set('crl', await root.crl({ revoked: [client.serial] }));
    await rotate(resolver);
    expect((await handshake(port, options)).ok).toBe(false);
    const resumed = await handshake(port, { ...options, session });
    expect(resumed.ok).toBe(false);
  });

  it('a CA rotation that drops the client issuer: the old session no longer resumes', async () => {
    const store = mtlsStore();
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver, mtls);
    const { options, session } = await resumingClient(port, version);
    store.set('ca', otherRoot.certPem);
    await rotate(resolver);
    expect((await handshake(port, { ...options, session })).ok).toBe(false);
  });

  it('only the server certificate changes: resumption continues', async () => {
    const store = mtlsStore();
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver, mtls);
    const { options, session } = await resumingClient(port, version);
    store.set('key', renewedServer.keyPem);
    store.set('cert', renewedServer.certPem);
    await rotate(resolver);
    expect(await handshake(port, { ...options, session })).toMatchObject({ ok: true, reused: true });
  });
});

describe('the same rule for attach() and for ticket keys from a store', () => {
  it('attach() on an https server the user created: a revoking CRL stops resumption (TLS 1.3)', async () => {
    const store = mtlsStore({ crl: await root.crl() });
    const resolver = resolverFor({
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      crl: store.ref('crl'),
    });
    const httpsServer = https.createServer(mtls, (_request, response) => response.end('hello'));
    httpsServer.on('tlsClientError', () => undefined);
    const detach = await attach(httpsServer, resolver, mtls);
    const port = await listen(httpsServer);
    try {
      const request = (session?: Buffer) =>
        new Promise<{ ok: boolean; reused: boolean; session?: Buffer }>((resolve) => {
          let latest: Buffer | undefined;
          const req = https.get(
            {
              host: '127.0.0.1',
              port,
              servername: 'localhost',
              ca: root.certPem,
              key: client.keyPem,
              cert: client.certPem,
              agent: false,
              ...(session ? { session } : {}),
            } as https.RequestOptions,
            (response) => {
              const socket = response.socket as import('node:tls').TLSSocket;
              socket.on('session', (next: Buffer) => {
                latest = next;
              });
              response.resume();
              response.on('end', () => {
                const reused = socket.isSessionReused();
                // TLS 1.3 tickets arrive after the handshake: wait for the connection to end.
                socket.once('close', () => resolve({ ok: true, reused, session: latest }));
              });
            },
          );
          req.on('socket', (socket) =>
            socket.on('session', (next: Buffer) => {
              latest = next;
            }),
          );
          req.on('error', () => resolve({ ok: false, reused: false }));
        });
      const first = await request();
      expect(first.ok).toBe(true);
      const session = first.session as Buffer;
      expect(await request(session)).toMatchObject({ ok: true, reused: true });
      store.set('crl', await root.crl({ revoked: [client.serial] }));
      await rotate(resolver);
      expect((await request(session)).ok).toBe(false);
    } finally {
      detach();
      await closeServer(httpsServer);
    }
  });

  it('ticket keys from a store: a CA rotation stops resumption; two servers with the same keys and trust share sessions', async () => {
    const ticketKeys = Buffer.alloc(48, 7);
    const store = mtlsStore({ ticketKeys });
    const spec = {
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      ticketKeys: store.ref('ticketKeys', { encoding: 'binary' }),
    };
    const resolver = resolverFor(spec);
    const port = await serve(resolver, mtls);
    const { options, session } = await resumingClient(port, 'TLSv1.3');
    // A second server of the fleet, same store: it resumes the first one's session.
    const peerPort = await serve(resolverFor(spec), mtls);
    expect(await handshake(peerPort, { ...options, session })).toMatchObject({ ok: true, reused: true });
    store.set('ca', `${root.certPem}\n${otherRoot.certPem}`);
    await rotate(resolver);
    const resumed = await handshake(port, { ...options, session });
    // The client is still trusted: it gets in, with a full handshake.
    expect(resumed).toMatchObject({ ok: true, reused: false });
  });
});
