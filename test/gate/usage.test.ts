/**
 * Class 4: key usage for the role. A certificate whose (extended) key usage does not allow the role it is
 * used in passed the old gate, and every handshake then failed with INVALID_PURPOSE at the peer. The
 * helpers declare the role (createServer/attach: server; connect/agents: client) and the gate checks it,
 * once per generation. Real certificates with real extensions, real peers.
 */
import { once } from 'node:events';
import https from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../../providers/memory.js';
import { grpcChannelCredentials, grpcServerCredentials } from '../../src/grpc.js';
import {
  ConfigurationError,
  connect,
  createAgent,
  createServer,
  InvalidMaterialError,
  type Resolver,
} from '../../src/index.js';
import { toPfx } from '../fixtures/ca.js';
import { type Authority, type Cert, createRoot, DAY, x509 } from './pki.js';
import { handshake, pastBackoff, resolverFor, serve, servePlain, track } from './rig.js';

const { serverAuth, clientAuth } = x509.ExtendedKeyUsage;
let root: Authority;
let both: Cert;
let serverOnly: Cert;
let clientOnly: Cert;

beforeAll(async () => {
  root = await createRoot();
  both = await root.issue();
  serverOnly = await root.issue({ extKeyUsage: [serverAuth] });
  clientOnly = await root.issue({ extKeyUsage: [clientAuth] });
});

function keyPair(cert: Cert) {
  return memory({ key: cert.keyPem, cert: cert.certPem });
}

/** What `createServer()` on `resolver` reports when it listens: its 'error', or undefined if it listens. */
async function listenError(resolver: Resolver): Promise<InvalidMaterialError | undefined> {
  const server = createServer(resolver, {}, (socket) => socket.end('hello'));
  server.listen(0, '127.0.0.1');
  const [error] = (await Promise.race([once(server, 'error'), once(server, 'listening')])) as [
    InvalidMaterialError | undefined,
  ];
  server.close();
  return error;
}

describe('server role', () => {
  it('a server certificate without serverAuth is refused: listen() reports it, no peer ever sees INVALID_PURPOSE', async () => {
    const store = keyPair(clientOnly);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const server = createServer(resolver, {}, (socket) => socket.end('hello'));
    server.listen(0, '127.0.0.1');
    const [error] = (await once(server, 'error')) as [InvalidMaterialError];
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error.field).toBe('cert');
    expect(error.ref).toBe('memory:cert');
    expect(error.message).toMatch(/used as a server but its extended key usage lacks serverAuth/);
    expect(server.listening).toBe(false);
    server.close();
  });

  it('a rotation to a certificate without serverAuth is refused; the served one keeps working', async () => {
    const store = keyPair(both);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    store.set('key', clientOnly.keyPem);
    store.set('cert', clientOnly.certPem);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.message).toMatch(/lacks serverAuth/);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });

  it('a key usage without digitalSignature or keyEncipherment is refused for a server', async () => {
    const signOnly = await root.issue({ keyUsage: x509.KeyUsageFlags.nonRepudiation });
    const store = keyPair(signOnly);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    await resolver.resolve();
    expect(() => resolver.declareRole('server')).toThrow(
      /key usage lacks digitalSignature, keyEncipherment or keyAgreement/,
    );
  });

  it('an intermediate whose extended key usage excludes serverAuth is refused (OpenSSL checks the chain)', async () => {
    const clientCa = await root.intermediate({ extKeyUsage: [clientAuth] });
    const leaf = await clientCa.issue();
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${clientCa.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    await resolver.resolve();
    expect(() => resolver.declareRole('server')).toThrow(
      /intermediate certificate [0-9A-F]+ is used as a server/,
    );
  });

  it('so is one OpenSSL takes from `ca` to complete a leaf-only chain: it reaches peers just the same', async () => {
    const clientCa = await root.intermediate({ extKeyUsage: [clientAuth] });
    const leaf = await clientCa.issue();
    const store = memory({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}\n${clientCa.certPem}`,
    });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const error = await listenError(resolver);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe('ca#1');
    expect(error?.ref).toBe('memory:ca');
    expect(error?.message).toContain(`intermediate certificate ${clientCa.serial} is used as a server`);
  });
});

/**
 * `cert` (with `leaf`'s key) served as it is, by a plain Node server, and through the gate: peers accept
 * both, and see the leaf.
 */
async function acceptedAsPeersAccept(leaf: Cert, cert: string): Promise<void> {
  const plain = await servePlain({ key: leaf.keyPem, cert });
  expect(await handshake(plain, { ca: root.certPem })).toMatchObject({ ok: true });
  const store = memory({ key: leaf.keyPem, cert });
  const port = await serve(resolverFor({ key: store.ref('key'), cert: store.ref('cert') }));
  expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: leaf.serial });
}

/**
 * `cert` (with `leaf`'s key) served as it is by a plain Node server: peers refuse it (`peersSee`); and the
 * gate refuses it with `message`: as a server's material (`role`), or as any material (`resolve`).
 */
async function refusedAsPeersRefuse(
  leaf: Cert,
  cert: string,
  peersSee: Record<string, unknown>,
  message: string,
  refusedAt: 'role' | 'resolve' = 'role',
): Promise<void> {
  const plain = await servePlain({ key: leaf.keyPem, cert });
  const seen = await handshake(plain, { ca: root.certPem });
  if ('code' in peersSee) expect(seen).toEqual(peersSee);
  else expect(seen).toMatchObject(peersSee);
  const store = memory({ key: leaf.keyPem, cert });
  const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
  if (refusedAt === 'resolve') {
    await expect(resolver.resolve()).rejects.toThrow(new RegExp(message));
    return;
  }
  await resolver.resolve();
  expect(() => resolver.declareRole('server')).toThrow(new RegExp(message));
}

describe('what every OpenSSL peer refuses, whatever the role', () => {
  it('an unknown critical extension, on the leaf or an intermediate, is refused: peers refuse it too', async () => {
    const flagged = await root.intermediate({ criticalExtension: '1.2.3.4.5' });
    const leaf = await flagged.issue();
    await refusedAsPeersRefuse(
      leaf,
      `${leaf.certPem}${flagged.certPem}`,
      { ok: false },
      `intermediate certificate ${flagged.serial} has a critical extension OpenSSL does not handle \\(1\\.2\\.3\\.4\\.5\\)`,
      'resolve',
    );
    const flaggedLeaf = await root.issue({ criticalExtension: '1.2.3.4.5' });
    await refusedAsPeersRefuse(
      flaggedLeaf,
      flaggedLeaf.certPem,
      { ok: false },
      `certificate ${flaggedLeaf.serial} has a critical extension OpenSSL does not handle`,
      'resolve',
    );
  });

  it('an intermediate signed with SHA-1 is refused: peers at the default security level refuse it', async () => {
    const weak = await root.intermediate({ signatureHash: 'SHA-1' });
    const leaf = await weak.issue();
    await refusedAsPeersRefuse(
      leaf,
      `${leaf.certPem}${weak.certPem}`,
      { ok: false },
      `intermediate certificate ${weak.serial} is signed with ECDSA with SHA-1`,
      'resolve',
    );
  });
});

describe('intermediates as peers check them', () => {
  it('an intermediate that is not a CA certificate (no basicConstraints) is refused: every peer refuses the chain', async () => {
    const notCa = await root.intermediate({ basicConstraints: false });
    const leaf = await notCa.issue();
    await refusedAsPeersRefuse(
      leaf,
      `${leaf.certPem}${notCa.certPem}`,
      { ok: false, code: 'INVALID_CA' },
      `intermediate certificate ${notCa.serial} is presented as an issuer but is not a CA certificate`,
    );
  });

  it('an intermediate whose key usage lacks keyCertSign is refused: every peer refuses the chain', async () => {
    const noSign = await root.intermediate({
      keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.cRLSign,
    });
    const leaf = await noSign.issue();
    await refusedAsPeersRefuse(
      leaf,
      `${leaf.certPem}${noSign.certPem}`,
      { ok: false },
      `intermediate certificate ${noSign.serial} is presented as an issuer but its key usage lacks keyCertSign`,
    );
    // The same one sent before a good copy of it (same name and key): peers take the first, and fail.
    const good = await root.intermediate({ keys: noSign.keys });
    const both = `${leaf.certPem}${noSign.certPem}${good.certPem}`;
    expect(
      await handshake(await servePlain({ key: leaf.keyPem, cert: both }), { ca: root.certPem }),
    ).toMatchObject({
      ok: false,
    });
    const rotating = memory({ key: leaf.keyPem, cert: `${leaf.certPem}${good.certPem}` });
    const served = resolverFor({ key: rotating.ref('key'), cert: rotating.ref('cert') });
    const port = await serve(served);
    rotating.set('cert', both);
    pastBackoff();
    expect((await served.refresh()).errors[0]?.message).toMatch(/lacks keyCertSign/);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: leaf.serial });
    // And as a CA entry completing a leaf-only chain.
    const fromCa = resolverFor({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}${noSign.certPem}`,
    });
    await fromCa.resolve();
    expect(() => fromCa.declareRole('server')).toThrow(/lacks keyCertSign/);
  });

  it('of an expired copy of the intermediate and its renewal (same key) sent together, the valid one counts, as peers take it', async () => {
    const intermediate = await root.intermediate();
    const expired = await root.intermediate({
      keys: intermediate.keys,
      notBefore: new Date(Date.now() - 400 * DAY),
      notAfter: new Date(Date.now() - 300 * DAY),
    });
    const leaf = await intermediate.issue();
    for (const cert of [
      `${leaf.certPem}${expired.certPem}${intermediate.certPem}`,
      `${leaf.certPem}${intermediate.certPem}${expired.certPem}`,
    ]) {
      await acceptedAsPeersAccept(leaf, cert);
    }
  });

  it('a Netscape type on a CA with basicConstraints is not read (as OpenSSL): an object-signing-CA type passes, peers accept', async () => {
    const typed = await root.intermediate({ nsCertType: 0x01 });
    const leaf = await typed.issue();
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}${typed.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: leaf.serial });
  });

  it("a leaf's own Netscape type still counts: an SSL-client-only type is refused for a server", async () => {
    const leaf = await root.issue({ nsCertType: 0x80 });
    const store = keyPair(leaf);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    await resolver.resolve();
    expect(() => resolver.declareRole('server')).toThrow(/Netscape certificate type excludes it/);
    const plain = await servePlain({ key: leaf.keyPem, cert: leaf.certPem });
    expect(await handshake(plain, { ca: root.certPem })).toMatchObject({ ok: false });
  });

  it('an expired root sent along, and an expired certificate off the path, are not dated: peers accept both', async () => {
    const past = { notBefore: new Date(Date.now() - 400 * DAY), notAfter: new Date(Date.now() - 300 * DAY) };
    // The same root (name and key), in a copy that has expired: peers anchor on their own, valid one.
    const expiredRoot = await createRoot(root.cert.subject.replace(/^CN=/, ''), { keys: root.keys, ...past });
    const stray = await root.issue({ commonName: 'stray', ...past });
    for (const extra of [expiredRoot, stray]) {
      await acceptedAsPeersAccept(both, `${both.certPem}${extra.certPem}`);
    }
  });

  it('a certificate given along that is not on the path is not checked: peers ignore it, and so does the gate', async () => {
    const stray = await root.issue({ extKeyUsage: [clientAuth], commonName: 'stray' });
    await acceptedAsPeersAccept(both, `${both.certPem}${stray.certPem}`);
  });
});

describe('a PFX presents its chain too', () => {
  const PASS = 'pfx-pass';
  const pfxResolver = (pfx: Buffer, ca?: string) => {
    const store = memory({ pfx, pass: PASS, ...(ca === undefined ? {} : { ca }) });
    const resolver = resolverFor({
      pfx: store.ref('pfx', { encoding: 'binary' }),
      passphrase: store.ref('pass'),
      ...(ca === undefined ? {} : { ca: store.ref('ca') }),
    });
    return { store, resolver };
  };

  it('an intermediate inside a PFX that excludes serverAuth is refused, naming pfx; a real server on it fails every peer', async () => {
    const clientCa = await root.intermediate({ extKeyUsage: [clientAuth] });
    const pfx = toPfx(await clientCa.issue(), PASS, clientCa.certPem);
    // Not a false alarm: served as it is, peers refuse its chain.
    const plain = await servePlain({ pfx, passphrase: PASS });
    expect(await handshake(plain, { ca: root.certPem })).toMatchObject({ ok: false });
    const { resolver } = pfxResolver(pfx);
    const error = await listenError(resolver);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe('pfx');
    expect(error?.message).toContain(`intermediate certificate ${clientCa.serial} is used as a server`);
  });

  it('a rotation to such a PFX is refused; the served one keeps working', async () => {
    const serverCa = await root.intermediate({ extKeyUsage: [serverAuth] });
    const clientCa = await root.intermediate({ extKeyUsage: [clientAuth] });
    const good = await serverCa.issue();
    const { store, resolver } = pfxResolver(toPfx(good, PASS, serverCa.certPem));
    const port = await serve(resolver);
    store.set('pfx', toPfx(await clientCa.issue(), PASS, clientCa.certPem));
    pastBackoff();
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.message).toMatch(/intermediate certificate [0-9A-F]+ is used as a server/);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: good.serial });
  });

  it('a PFX holding its leaf alone is completed from ca, as OpenSSL does: that CA entry is checked', async () => {
    const clientCa = await root.intermediate({ extKeyUsage: [clientAuth] });
    const { resolver } = pfxResolver(
      toPfx(await clientCa.issue(), PASS),
      `${root.certPem}\n${clientCa.certPem}`,
    );
    await resolver.resolve();
    const error = (() => {
      try {
        resolver.declareRole('server');
      } catch (err) {
        return err as InvalidMaterialError;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe('ca#1');
    expect(error?.message).toContain(`intermediate certificate ${clientCa.serial} is used as a server`);
  });

  it("a PFX's intermediate is dated: the bundle's notAfter is the intermediate's when it ends first", async () => {
    const shortCa = await root.intermediate({ notAfter: new Date(Date.now() + 5 * DAY) });
    const leaf = await shortCa.issue({ notAfter: new Date(Date.now() + 20 * DAY) });
    const { resolver } = pfxResolver(toPfx(leaf, PASS, shortCa.certPem));
    await resolver.resolve();
    expect(resolver.status().notAfter?.getTime()).toBe(shortCa.cert.notAfter.getTime());
  });
});

describe('a role binds once it served', () => {
  /** A server-only certificate served, and the next one ready in the store. */
  async function serverOnlyServer() {
    const next = await root.issue({ extKeyUsage: [serverAuth] });
    const store = memory({ key: serverOnly.keyPem, cert: serverOnly.certPem, ca: root.certPem });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({
      ok: true,
      serial: serverOnly.serial,
    });
    const rotate = async () => {
      store.set('key', next.keyPem);
      store.set('cert', next.certPem);
      pastBackoff();
      return resolver.refresh();
    };
    return { resolver, port, next, rotate };
  }

  it('an https agent on a server resolver whose certificate lacks clientAuth: its refused request does not bind the server', async () => {
    const { resolver, port, next, rotate } = await serverOnlyServer();
    const agent = createAgent(resolver);
    const refused = await new Promise<unknown>((resolve) => {
      https
        .get({ host: '127.0.0.1', port, servername: 'localhost', agent }, () => resolve(undefined))
        .on('error', resolve);
    });
    expect(refused).toBeInstanceOf(InvalidMaterialError);
    expect((refused as Error).message).toMatch(
      /used as a client but its extended key usage lacks clientAuth/,
    );
    agent.destroy();
    const result = await rotate();
    expect(result.errors).toEqual([]);
    expect(result.rotated).toBe(true);
    expect(resolver.state).toBe('serving');
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: next.serial });
  });

  it('an agent merely created (then destroyed) binds nothing', async () => {
    const { resolver, port, next, rotate } = await serverOnlyServer();
    createAgent(resolver).destroy();
    expect((await rotate()).rotated).toBe(true);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: next.serial });
  });

  it('declareRole() on a cold resolver has nothing to check: it says so instead of binding nothing', async () => {
    const store = keyPair(serverOnly);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    expect(() => resolver.declareRole('client')).toThrow(ConfigurationError);
    expect(() => resolver.declareRole('client')).toThrow(/call it after resolve\(\)/);
    await resolver.resolve();
    expect(() => resolver.declareRole('client')).toThrow(InvalidMaterialError);
    resolver.declareRole('server');
  });

  it('a refused connect() records nothing: the next server-only rotation goes in', async () => {
    const peer = await serve(
      resolverFor({ key: memory({ k: both.keyPem }).ref('k'), cert: memory({ c: both.certPem }).ref('c') }),
    );
    const { resolver, port, next, rotate } = await serverOnlyServer();
    await expect(
      connect(resolver, { host: '127.0.0.1', port: peer, servername: 'localhost' }),
    ).rejects.toThrow(/lacks clientAuth/);
    // Asked again, the same generation gives the same verdict, without recording anything.
    expect(() => resolver.declareRole('client')).toThrow(/lacks clientAuth/);
    const result = await rotate();
    expect(result.errors).toEqual([]);
    expect(result.rotated).toBe(true);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: next.serial });
  });

  it("a role that served binds for the resolver's life: after a connect() with it, a server-only rotation is refused", async () => {
    const peer = await serve(
      resolverFor({ key: memory({ k: both.keyPem }).ref('k'), cert: memory({ c: both.certPem }).ref('c') }),
    );
    const store = memory({ key: both.keyPem, cert: both.certPem, ca: root.certPem });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    const socket = await connect(resolver, { host: '127.0.0.1', port: peer, servername: 'localhost' });
    socket.destroy();
    store.set('key', serverOnly.keyPem);
    store.set('cert', serverOnly.certPem);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.message).toMatch(/used as a client but its extended key usage lacks clientAuth/);
    expect(await handshake(port, { ca: root.certPem })).toMatchObject({ ok: true, serial: both.serial });
  });
});

describe('client role', () => {
  /** An mTLS server that accepts any client certificate of the root (one per test: cleanups run after each). */
  const mtlsServer = () => {
    const store = memory({ key: both.keyPem, cert: both.certPem, ca: root.certPem });
    return serve(resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') }), {
      requestCert: true,
      rejectUnauthorized: true,
    });
  };

  it('connect() with a client certificate without clientAuth fails with the gate error, not at the peer', async () => {
    const port = await mtlsServer();
    const store = memory({ key: serverOnly.keyPem, cert: serverOnly.certPem, ca: root.certPem });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const error = await connect(resolver, { host: '127.0.0.1', port, servername: 'localhost' }).catch(
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('cert');
    expect((error as Error).message).toMatch(/used as a client but its extended key usage lacks clientAuth/);
  });

  it('a resolver used for both roles needs both: serving works, connect() is refused', async () => {
    const port = await mtlsServer();
    const store = memory({ key: serverOnly.keyPem, cert: serverOnly.certPem, ca: root.certPem });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const ownPort = await serve(resolver);
    expect((await handshake(ownPort, { ca: root.certPem })).ok).toBe(true);
    await expect(connect(resolver, { host: '127.0.0.1', port, servername: 'localhost' })).rejects.toThrow(
      /lacks clientAuth/,
    );
    // The refused connect() recorded no client role; the server role binds: a rotation must allow serving.
    store.set('key', clientOnly.keyPem);
    store.set('cert', clientOnly.certPem);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.message).toMatch(/lacks serverAuth/);
    store.set('key', both.keyPem);
    store.set('cert', both.certPem);
    pastBackoff();
    expect((await resolver.refresh()).rotated).toBe(true);
    const socket = await connect(resolver, { host: '127.0.0.1', port, servername: 'localhost' });
    socket.destroy();
  });
});

describe('gRPC credentials declare their role too', () => {
  /** The serial of the certificate a gRPC server presents (ALPN h2, as grpc-js clients ask). */
  const presented = (port: number) =>
    new Promise<string | undefined>((resolve, reject) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: root.certPem,
        ALPNProtocols: ['h2'],
      });
      socket.once('secureConnect', () => {
        resolve(socket.getPeerX509Certificate()?.serialNumber);
        socket.destroy();
      });
      socket.once('error', reject);
    });

  it('grpcServerCredentials on a certificate without serverAuth is refused, naming the field', async () => {
    const store = keyPair(clientOnly);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const error = await grpcServerCredentials(resolver).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('cert');
    expect((error as Error).message).toMatch(/used as a server but its extended key usage lacks serverAuth/);
  });

  it('a rotation of a gRPC server to a certificate without serverAuth is refused; the served one keeps working', async () => {
    const store = keyPair(both);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const server = new grpc.Server();
    track({ close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) });
    const credentials = await grpcServerCredentials(resolver);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    store.set('key', clientOnly.keyPem);
    store.set('cert', clientOnly.certPem);
    pastBackoff();
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.message).toMatch(/lacks serverAuth/);
    expect(await presented(port)).toBe(both.serial);
  });

  it('grpcChannelCredentials with a client certificate without clientAuth is refused', async () => {
    const store = keyPair(serverOnly);
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: root.certPem });
    await expect(grpcChannelCredentials(resolver)).rejects.toThrow(
      /used as a client but its extended key usage lacks clientAuth/,
    );
  });
});
