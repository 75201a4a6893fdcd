/**
 * Class 1: OpenSSL must see exactly what was validated. A chain whose intermediate hides behind a BEGIN
 * line that does not start its line passed the old gate (its splitter found the block anyway), while
 * OpenSSL skipped the block: every client trusting only the root failed. Built for real, served for real.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../../providers/memory.js';
import { InvalidMaterialError } from '../../src/index.js';
import { type Authority, type Cert, createRoot } from './pki.js';
import { handshake, pastBackoff, resolverFor, serve } from './rig.js';

let root: Authority;
let intermediate: Authority;
let leaf: Cert;

beforeAll(async () => {
  root = await createRoot();
  intermediate = await root.intermediate();
  leaf = await intermediate.issue();
});

/** What OpenSSL skips before a BEGIN line, each hiding the intermediate from it. */
const HIDING = {
  spaces: '  ',
  tab: '\t',
  'no-break space': '\u00a0',
  'byte-order mark after a blank line': '\n\ufeff',
};

describe('PEM is read by OpenSSL rules', () => {
  it('a well-formed chain serves its intermediate: a client trusting only the root connects', async () => {
    // CRLF line ends and trailing blanks are what OpenSSL strips too: accepted, and canonical when served.
    const chain = `${leaf.certPem}\r\n\r\n${intermediate.certPem.replace(/\n/g, ' \r\n')}`;
    const store = memory({ key: leaf.keyPem, cert: chain });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const port = await serve(resolver);
    const outcome = await handshake(port, { ca: root.certPem });
    expect(outcome.ok).toBe(true);
    const served = (await resolver.resolve()).cert as string[];
    expect(served[0]).not.toMatch(/\r| \n/);
  });

  for (const [name, before] of Object.entries(HIDING)) {
    it(`cert chain: an intermediate behind ${name} is refused cold, and as a rotation the good chain keeps serving`, async () => {
      const hidden = `${leaf.certPem}\n${before}${intermediate.certPem}`;
      const cold = memory({ key: leaf.keyPem, cert: hidden });
      const refused = resolverFor({ key: cold.ref('key'), cert: cold.ref('cert') });
      const error = await refused.resolve().catch((err: unknown) => err);
      expect(error).toBeInstanceOf(InvalidMaterialError);
      expect((error as InvalidMaterialError).field).toBe('cert');
      expect((error as InvalidMaterialError).ref).toBe('memory:cert');
      expect((error as Error).message).toMatch(/not a clean PEM bundle: line \d+/);

      const store = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
      const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
      const port = await serve(resolver);
      expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
      store.set('cert', hidden);
      const result = await resolver.refresh();
      expect(result.rotated).toBe(false);
      expect(result.errors[0]).toBeInstanceOf(InvalidMaterialError);
      expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
    });
  }

  it('ca: a CA behind a tab is refused (the old gate let the client lose it: UNABLE_TO_VERIFY_LEAF_SIGNATURE)', async () => {
    const other = await createRoot('another root');
    const bundle = `${other.certPem}\n\t${root.certPem}`;
    const server = memory({ key: leaf.keyPem, cert: `${leaf.certPem}\n${intermediate.certPem}` });
    const port = await serve(resolverFor({ key: server.ref('key'), cert: server.ref('cert') }));
    const store = memory({ ca: bundle });
    const client = resolverFor({ ca: store.ref('ca') });
    const error = await client.resolve().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('ca');
    // The clean bundle works with the same peer: the refusal is what saved it.
    store.set('ca', `${other.certPem}\n${root.certPem}`);
    pastBackoff();
    const resolved = await client.resolve();
    expect((await handshake(port, { secureContext: resolved.secureContext })).ok).toBe(true);
  });

  it('key: text before the key block is refused, an EC PARAMETERS block beside it is dropped', async () => {
    const store = memory({
      key: `garbage\n${leaf.keyPem}`,
      cert: `${leaf.certPem}\n${intermediate.certPem}`,
    });
    const resolver = resolverFor({ key: store.ref('key'), cert: store.ref('cert') });
    const error = await resolver.resolve().catch((err: unknown) => err);
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect((error as InvalidMaterialError).field).toBe('key');
    expect((error as Error).message).not.toContain('garbage');
    store.set(
      'key',
      `-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n${leaf.keyPem}`,
    );
    pastBackoff();
    const resolved = await resolver.resolve();
    const [served] = resolved.key as { pem: string }[];
    expect(served?.pem).not.toContain('EC PARAMETERS');
    const port = await serve(resolver);
    expect((await handshake(port, { ca: root.certPem })).ok).toBe(true);
  });
});
