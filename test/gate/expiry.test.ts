/**
 * Classes 2 and 3: everything presented that can expire is tracked, not only the leaf. An intermediate of
 * the served chain and a CRL's nextUpdate end every handshake as surely as the leaf's notAfter: they bound
 * the bundle's notAfter, get `expiring`/`expired` events, show in status(), and are refused at the gate
 * when already past. CA entries are reported per entry. Real certificates and CRLs, real peers.
 */
import { once } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../../providers/memory.js';
import { CertificateExpiredError, InvalidMaterialError } from '../../src/index.js';
import type { ExpiringEvent } from '../../src/types.js';
import { type Authority, type Cert, createRoot, DAY } from './pki.js';
import { handshake, resolverFor, serve, servePlain } from './rig.js';

let root: Authority;

beforeAll(async () => {
  root = await createRoot();
});

/** Waits until the clock is past `at` (a time, not a guess: the wait is exactly what is left). */
async function untilPast(at: number): Promise<void> {
  while (Date.now() <= at) await new Promise((resolve) => setTimeout(resolve, at + 1 - Date.now()));
}

/** The first event of `kind` whose entry is of `entryKind`. */
function firstOf(
  resolver: ReturnType<typeof resolverFor>,
  kind: 'expiring' | 'expired',
  entryKind: string,
): Promise<ExpiringEvent> {
  return new Promise((resolve) => {
    const listener = (event: ExpiringEvent) => {
      if (event.certificate.kind !== entryKind) return;
      resolver.off(kind, listener);
      resolve(event);
    };
    resolver.on(kind, listener);
  });
}

describe('intermediates of the presented chain', () => {
  it('an expired intermediate is refused at the gate, naming the field', async () => {
    const dead = await root.intermediate({
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const deadLeaf = await dead.issue();
    const store = memory({ key: deadLeaf.keyPem, cert: `${deadLeaf.certPem}\n${dead.certPem}` });
    const error = await resolverFor({ key: store.ref('key'), cert: store.ref('cert') })
      .resolve()
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('cert');
    expect((error as Error).message).toMatch(/intermediate certificate [0-9A-F]+ expired at/);
  });

  it('an intermediate expiring while served: notAfter, status(), expiring and expired events, then resolve() refuses', async () => {
    const shortLived = await root.intermediate({
      notBefore: new Date(Date.now() - 2_000),
      notAfter: new Date(Date.now() + 4_000),
    });
    const longLeaf = await shortLived.issue({ notAfter: new Date(Date.now() + 30 * DAY) });
    const store = memory({ key: longLeaf.keyPem, cert: `${longLeaf.certPem}\n${shortLived.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') }, { refreshAhead: 0.5 });
    const expiring = firstOf(resolver, 'expiring', 'intermediate');
    const expired = firstOf(resolver, 'expired', 'intermediate');
    const port = await serve(resolver);
    const intermediateNotAfter = shortLived.cert.notAfter.getTime();
    expect(resolver.status().notAfter?.getTime()).toBe(intermediateNotAfter);
    const certField = resolver.status().fields.find((field) => field.field === 'cert');
    expect(certField?.notAfter?.getTime()).toBe(intermediateNotAfter);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);

    const warned = await expiring;
    expect(warned.certificate.field).toBe('cert#1');
    expect(warned.certificate.serialNumber).toBe(shortLived.serial);
    const ended = await expired;
    expect(ended.certificate.serialNumber).toBe(shortLived.serial);
    // OpenSSL compares whole seconds (the time of day truncated): within the second of notAfter it still
    // accepts the certificate, so the peer is asked once that second is over.
    await untilPast(intermediateNotAfter + 1_000);
    // The peer now fails exactly as the event said.
    const after = await handshake(port, { ca: root.certPem });
    expect(after).toEqual({ ok: false, code: 'CERT_HAS_EXPIRED' });
    await expect(resolver.resolve()).rejects.toBeInstanceOf(CertificateExpiredError);
  }, 15_000);

  it('CA entries are reported per entry: one expiring in a bundle gets its own event', async () => {
    const soon = await root.intermediate({
      commonName: 'short CA',
      notBefore: new Date(Date.now() - 2_000),
      notAfter: new Date(Date.now() + 3_000),
    });
    // Nine tenths through a long life but 100 days from its end: not worth a warning at every rotation.
    const old = await root.intermediate({
      commonName: 'old CA',
      notBefore: new Date(Date.now() - 900 * DAY),
      notAfter: new Date(Date.now() + 100 * DAY),
    });
    const store = memory({ ca: `${root.certPem}\n${soon.certPem}\n${old.certPem}` });
    const resolver = resolverFor({ ca: store.ref('ca') }, { refreshAhead: 0.5 });
    const warned: string[] = [];
    resolver.on('expiring', (event) => warned.push(event.certificate.serialNumber));
    const expiring = firstOf(resolver, 'expiring', 'authority');
    await resolver.resolve();
    const event = await expiring;
    expect(event.certificate.field).toBe('ca#1');
    expect(event.certificate.serialNumber).toBe(soon.serial);
    expect(warned).toEqual([soon.serial]);
    // Reported, not enforced: a CA entry's expiry does not bound the bundle.
    expect(resolver.status().notAfter).toBeUndefined();
  }, 15_000);
});

describe('CA entries that OpenSSL presents in a chain (a leaf-only cert completed from `ca`)', () => {
  it('an expired one is refused cold, naming the CA entry; a valid copy of it beside the expired one is chosen, as OpenSSL does', async () => {
    const dead = await root.intermediate({
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const leaf = await dead.issue();
    const ca = `${root.certPem}\n${dead.certPem}`;
    // What peers get if it is served: OpenSSL sends the CA entry, the peer refuses it.
    const plain = await servePlain({ key: leaf.keyPem, cert: leaf.certPem, ca });
    expect(await handshake(plain, { ca: root.certPem })).toEqual({ ok: false, code: 'CERT_HAS_EXPIRED' });

    const store = memory({ key: leaf.keyPem, cert: leaf.certPem, ca });
    const spec = { key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') };
    const error = await resolverFor(spec)
      .resolve()
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('ca#1');
    expect((error as InvalidMaterialError).ref).toBe('memory:ca');
    expect((error as Error).message).toContain(
      `intermediate certificate ${dead.serial} (a CA entry OpenSSL presents in the chain of cert) expired at`,
    );

    // The same intermediate renewed with its key, listed after the expired one: OpenSSL picks the valid one.
    const renewed = await root.intermediate({ keys: dead.keys });
    store.set('ca', `${ca}\n${renewed.certPem}`);
    const resolver = resolverFor(spec);
    const port = await serve(resolver);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
    expect(resolver.status().notAfter?.getTime()).toBe(
      Math.min(leaf.cert.notAfter.getTime(), renewed.cert.notAfter.getTime()),
    );
  });

  it('a self-signed root it sends at the top is not enforced: peers anchor on their own copy', async () => {
    const expiredRoot = await createRoot('renewed root', {
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    // The same anchor re-issued (same name, same key): what the peers trust.
    const renewedRoot = await createRoot('renewed root', { keys: expiredRoot.keys });
    const leaf = await renewedRoot.issue();
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem, ca: expiredRoot.certPem });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    expect((await handshake(port, { ca: renewedRoot.certPem })).ok).toBe(true);
    expect(resolver.status().notAfter?.getTime()).toBe(leaf.cert.notAfter.getTime());
  });

  it('one expiring while served: notAfter, status(), expiring and expired events (an intermediate, ca#1), state expired, resolve() refuses', async () => {
    const shortLived = await root.intermediate({
      notBefore: new Date(Date.now() - 2_000),
      notAfter: new Date(Date.now() + 4_000),
    });
    const leaf = await shortLived.issue({ notAfter: new Date(Date.now() + 30 * DAY) });
    const store = memory({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}\n${shortLived.certPem}`,
    });
    const resolver = resolverFor(
      { key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') },
      { refreshAhead: 0.5 },
    );
    const expiring = firstOf(resolver, 'expiring', 'intermediate');
    const expired = firstOf(resolver, 'expired', 'intermediate');
    const announced: string[] = [];
    for (const kind of ['expiring', 'expired'] as const)
      resolver.on(kind, (event) => announced.push(`${kind}:${event.certificate.kind}`));
    const port = await serve(resolver);
    const standInNotAfter = shortLived.cert.notAfter.getTime();
    expect(resolver.status().notAfter?.getTime()).toBe(standInNotAfter);
    expect(
      resolver
        .status()
        .fields.find((field) => field.field === 'ca')
        ?.notAfter?.getTime(),
    ).toBe(standInNotAfter);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);

    const warned = await expiring;
    expect(warned.certificate.field).toBe('ca#1');
    expect(warned.certificate.serialNumber).toBe(shortLived.serial);
    const ended = await expired;
    expect(ended.certificate.serialNumber).toBe(shortLived.serial);
    // Announced once, as the intermediate it is, not a second time as a CA entry.
    expect(announced).toEqual(['expiring:intermediate', 'expired:intermediate']);
    await untilPast(standInNotAfter + 1_000);
    expect(await handshake(port, { ca: root.certPem })).toEqual({ ok: false, code: 'CERT_HAS_EXPIRED' });
    expect(resolver.state).toBe('expired');
    await expect(resolver.resolve()).rejects.toBeInstanceOf(CertificateExpiredError);
    const error = await resolver.resolve().catch((err: unknown) => err);
    expect((error as CertificateExpiredError).field).toBe('ca#1');
  }, 15_000);

  it('one is refreshed ahead of its notAfter, with no push and an hour-long refresh interval', async () => {
    const shortLived = await root.intermediate({
      notBefore: new Date(Date.now() - 1_000),
      notAfter: new Date(Date.now() + 3_000),
    });
    const leaf = await shortLived.issue({ notAfter: new Date(Date.now() + 30 * DAY) });
    const store = memory({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}\n${shortLived.certPem}`,
    });
    const polled = { ...store, name: 'poll', watch: undefined };
    const ref = (id: string) => ({ provider: polled, id, options: {} });
    const resolver = resolverFor(
      { key: ref('key'), cert: ref('cert'), ca: ref('ca') },
      { refreshAhead: 0.5 },
    );
    const port = await serve(resolver);
    const renewed = await root.intermediate({ keys: shortLived.keys });
    store.set('ca', `${root.certPem}\n${renewed.certPem}`);
    const [event] = (await once(resolver, 'rotate')) as [{ changed: string[] }];
    expect(event.changed).toEqual(['ca']);
    expect(resolver.status().notAfter?.getTime()).toBeGreaterThan(Date.now() + DAY);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  }, 15_000);
});

describe('CRLs expire too', () => {
  let server: Cert;
  let client: Cert;
  beforeAll(async () => {
    server = await root.issue();
    client = await root.issue({ commonName: 'client' });
  });
  const mtls = { requestCert: true, rejectUnauthorized: true };
  const asClient = () => ({ ca: root.certPem, key: client.keyPem, cert: client.certPem });

  it('a CRL past its nextUpdate is refused cold and as a rotation (the old gate let it refuse every peer)', async () => {
    const stale = await root.crl({
      thisUpdate: new Date(Date.now() - 8 * DAY),
      nextUpdate: new Date(Date.now() - DAY),
    });
    const store = memory({ key: server.keyPem, cert: server.certPem, ca: root.certPem, crl: stale });
    const spec = {
      key: store.ref('key'),
      cert: store.ref('cert'),
      ca: store.ref('ca'),
      crl: store.ref('crl'),
    };
    const error = await resolverFor(spec)
      .resolve()
      .catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('crl');
    expect((error as InvalidMaterialError).ref).toBe('memory:crl');
    expect((error as Error).message).toMatch(/CRL expired at its nextUpdate/);

    store.set('crl', await root.crl());
    const resolver = resolverFor(spec);
    const port = await serve(resolver, mtls);
    expect((await handshake(port, asClient())).ok).toBe(true);
    store.set('crl', stale);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.field).toBe('crl');
    expect((await handshake(port, asClient())).ok).toBe(true);
  });

  it('a CRL whose nextUpdate passes while served: notAfter and status(), expiring, expired, peers refused', async () => {
    const crl = await root.crl({
      thisUpdate: new Date(Date.now() - 2_000),
      nextUpdate: new Date(Date.now() + 4_000),
    });
    const store = memory({ key: server.keyPem, cert: server.certPem, ca: root.certPem, crl });
    const resolver = resolverFor(
      { key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca'), crl: store.ref('crl') },
      { refreshAhead: 0.5 },
    );
    const expiring = firstOf(resolver, 'expiring', 'crl');
    const expired = firstOf(resolver, 'expired', 'crl');
    const port = await serve(resolver, mtls);
    const status = resolver.status();
    const crlField = status.fields.find((field) => field.field === 'crl');
    expect(crlField?.notAfter).toBeInstanceOf(Date);
    expect(status.notAfter?.getTime()).toBe(crlField?.notAfter?.getTime());
    expect((await handshake(port, asClient())).ok).toBe(true);
    expect((await expiring).certificate.subject).toBe(root.subject);
    const ended = await expired;
    await untilPast(ended.certificate.notAfter.getTime() + 1_000);
    expect((await handshake(port, asClient())).ok).toBe(false);
    await expect(resolver.resolve()).rejects.toBeInstanceOf(CertificateExpiredError);
  }, 15_000);

  it('a CRL is refreshed ahead of its nextUpdate, with no push and an hour-long refresh interval', async () => {
    const crl = await root.crl({
      thisUpdate: new Date(Date.now() - 1_000),
      nextUpdate: new Date(Date.now() + 3_000),
    });
    const store = memory({ key: server.keyPem, cert: server.certPem, ca: root.certPem, crl });
    const polled = { ...store, name: 'poll', watch: undefined };
    const ref = (id: string) => ({ provider: polled, id, options: {} });
    const resolver = resolverFor(
      { key: ref('key'), cert: ref('cert'), ca: ref('ca'), crl: ref('crl') },
      { refreshAhead: 0.5 },
    );
    const port = await serve(resolver, mtls);
    store.set('crl', await root.crl());
    const [event] = (await once(resolver, 'rotate')) as [{ changed: string[] }];
    expect(event.changed).toEqual(['crl']);
    expect(resolver.status().notAfter?.getTime()).toBeGreaterThan(Date.now() + DAY);
    expect((await handshake(port, asClient())).ok).toBe(true);
  }, 15_000);
});
