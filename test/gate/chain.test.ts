/**
 * Class 5: incomplete chains. A chain written non-atomically (the leaf first, the intermediate a moment
 * later) had its leaf-only form swapped in, and every client trusting only the root failed until the next
 * change. The gate now refuses a chain that lost an intermediate it needs and the served chain carried,
 * and the file provider reports an in-place write once it has settled. Real files, real peers.
 */
import { once } from 'node:events';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { file } from '../../providers/file.js';
import { memory } from '../../providers/memory.js';
import { InvalidMaterialError, type TlsSecretsError } from '../../src/index.js';
import type { RotateEvent } from '../../src/types.js';
import { type Authority, type Cert, createRoot } from './pki.js';
import { handshake, pastBackoff, resolverFor, serve, servePlain, track } from './rig.js';

let root: Authority;
let intermediate: Authority;
let leaf: Cert;
let renewed: Cert;

beforeAll(async () => {
  root = await createRoot();
  intermediate = await root.intermediate();
  leaf = await intermediate.issue();
  renewed = await intermediate.issue();
});

describe('the gate keeps a chain whole', () => {
  it('a rotation to the leaf alone (its intermediate missing) is refused; the full chain keeps serving', async () => {
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    store.set('key', renewed.keyPem);
    store.set('cert', renewed.certPem);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]).toBeInstanceOf(InvalidMaterialError);
    expect(result.errors[0]?.field).toBe('cert');
    expect(result.errors[0]?.message).toMatch(/served chain carried and this one lacks/);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
    // Once the chain is complete it goes in.
    store.set('cert', `${renewed.certPem}\n${intermediate.certPem}`);
    pastBackoff();
    expect((await resolver.refresh()).rotated).toBe(true);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });

  it('a move to another issuer is a rotation, not an incomplete chain', async () => {
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    await resolver.resolve();
    const direct = await root.issue();
    store.set('key', direct.keyPem);
    store.set('cert', direct.certPem);
    expect((await resolver.refresh()).rotated).toBe(true);
  });
});

/** The serial number of the leaf the server presents, undefined when the handshake fails. */
async function servedSerial(port: number, ca: string): Promise<string | undefined> {
  const outcome = await handshake(port, { ca });
  return outcome.ok ? outcome.serial : undefined;
}

describe('the chain OpenSSL presents, linked by signature', () => {
  it('an intermediate that reaches peers only as a CA entry (leaf-only cert): a `ca` rotation dropping it is refused, naming ca', async () => {
    const store = memory({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}\n${intermediate.certPem}`,
    });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    // OpenSSL completes a leaf-only chain from the CA entries: the intermediate reaches the peer.
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
    // What the peers would get if the rotation went in.
    const without = await servePlain({ key: leaf.keyPem, cert: leaf.certPem, ca: root.certPem });
    expect(await handshake(without, { ca: root.certPem })).toEqual({
      ok: false,
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });

    store.set('ca', root.certPem);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    const [error] = result.errors as TlsSecretsError[];
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe('ca');
    expect(error?.ref).toBe('memory:ca');
    expect(error?.message).toContain(`issued by intermediate ${intermediate.serial}`);
    expect(error?.message).toMatch(/\(from ca#1\), which the served chain carried and this one lacks/);
    expect(resolver.status().refused?.field).toBe('ca');
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);

    // A `ca` rotation that keeps it (another root added) goes in.
    const other = await createRoot('another root');
    store.set('ca', `${root.certPem}\n${other.certPem}\n${intermediate.certPem}`);
    pastBackoff();
    expect((await resolver.refresh()).rotated).toBe(true);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });

  it('an intermediate of the same name but another key in place of the real one is refused (`cert` chain)', async () => {
    const impostor = await root.intermediate();
    expect(impostor.subject).toBe(intermediate.subject);
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    const broken = await servePlain({ key: leaf.keyPem, cert: `${leaf.certPem}\n${impostor.certPem}` });
    expect(await handshake(broken, { ca: root.certPem })).toEqual({
      ok: false,
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });

    store.set('cert', `${leaf.certPem}\n${impostor.certPem}`);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    const [error] = result.errors as TlsSecretsError[];
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe('cert');
    expect(error?.ref).toBe('memory:cert');
    expect(error?.message).toContain(`issued by intermediate ${intermediate.serial}`);
    expect(error?.message).toContain(
      `the certificate of that name it holds (${impostor.serial}) has another key`,
    );
    expect(await servedSerial(port, root.certPem)).toBe(leaf.serial);
  });

  it('the same through a CA entry: ca [root, intermediate] rotating to [root, impostor] is refused', async () => {
    const impostor = await root.intermediate();
    const store = memory({
      key: leaf.keyPem,
      cert: leaf.certPem,
      ca: `${root.certPem}\n${intermediate.certPem}`,
    });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    store.set('ca', `${root.certPem}\n${impostor.certPem}`);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    expect(result.errors[0]?.field).toBe('ca');
    expect(result.errors[0]?.message).toContain(`(${impostor.serial}) has another key`);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });

  it('an intermediate renewed with the same key (same name, new serial) is linked by its key: the rotation goes in', async () => {
    const renewedIntermediate = await root.intermediate({ keys: intermediate.keys });
    const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    store.set('cert', `${leaf.certPem}\n${renewedIntermediate.certPem}`);
    expect((await resolver.refresh()).rotated).toBe(true);
    expect(
      resolver
        .status()
        .fields.find((field) => field.field === 'cert')
        ?.notAfter?.getTime(),
    ).toBe(Math.min(leaf.cert.notAfter.getTime(), renewedIntermediate.cert.notAfter.getTime()));
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });

  it('a `cert` chain is sent as given: a CA entry does not stand in for an intermediate it lost', async () => {
    const upper = await root.intermediate({ commonName: 'upper intermediate', pathLength: 1 });
    const lower = await upper.intermediate({ commonName: 'lower intermediate' });
    const deep = await lower.issue();
    const ca = `${root.certPem}\n${upper.certPem}`;
    const store = memory({
      key: deep.keyPem,
      cert: `${deep.certPem}\n${lower.certPem}\n${upper.certPem}`,
      ca,
    });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
    const port = await serve(resolver);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
    // With chain entries, OpenSSL sends them and nothing from `ca`: peers never get the upper intermediate.
    const partial = await servePlain({ key: deep.keyPem, cert: `${deep.certPem}\n${lower.certPem}`, ca });
    expect(await handshake(partial, { ca: root.certPem })).toEqual({
      ok: false,
      code: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
    });

    store.set('cert', `${deep.certPem}\n${lower.certPem}`);
    const result = await resolver.refresh();
    expect(result.rotated).toBe(false);
    // The CA entry is still there: it is the chain that no longer presents it.
    expect(result.errors[0]?.field).toBe('cert');
    expect(result.errors[0]?.message).toContain(`issued by intermediate ${upper.serial}`);
    expect(result.errors[0]?.message).toMatch(
      /it is a CA entry, but OpenSSL sends a `cert` value with chain entries as given/,
    );
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });
});

describe('the file provider waits for a write in place to settle', () => {
  let dir = '';
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('leaf written first, intermediate 120 ms later (a slow in-place writer): no error, no leaf-only generation', async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlss-gate-chain-'));
    const certPath = join(dir, 'tls.crt');
    await writeFile(join(dir, 'tls.key'), leaf.keyPem);
    await writeFile(certPath, `${leaf.certPem}\n${intermediate.certPem}\n`);
    const sameKey = await intermediate.issue({ keys: leaf.keys });
    const provider = track(file({ baseDir: dir }));
    const resolver = resolverFor({ key: provider.ref('tls.key'), cert: provider.ref('tls.crt') });
    const errors: Error[] = [];
    resolver.on('error', (error) => errors.push(error));
    const port = await serve(resolver);

    // The slow writer: truncate, the leaf, a pause, then the intermediate, all on the same inode.
    const handle = await open(certPath, 'r+');
    await handle.truncate(0);
    await handle.write(`${sameKey.certPem}\n`, 0);
    await handle.sync();
    await new Promise((resolve) => setTimeout(resolve, 120));
    const { size } = await handle.stat();
    await handle.write(`${intermediate.certPem}\n`, size);
    await handle.close();

    const [event] = (await once(resolver, 'rotate')) as [RotateEvent];
    expect(event.certificates.map((cert) => cert.serialNumber)).toEqual([
      sameKey.serial,
      intermediate.serial,
    ]);
    expect(errors).toEqual([]);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });
});
