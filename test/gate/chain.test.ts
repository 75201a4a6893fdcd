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
import { InvalidMaterialError } from '../../src/index.js';
import type { RotateEvent } from '../../src/types.js';
import { type Authority, type Cert, createRoot } from './pki.js';
import { handshake, pastBackoff, resolverFor, serve, track } from './rig.js';

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
