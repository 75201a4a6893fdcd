/**
 * The validation gate, case by case: each bad bundle gets a typed error naming field and reference, with no
 * secret bytes in it, and is never swapped in: the previous generation keeps serving.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { createResolver, InvalidMaterialError, type RawSecret, type TlsSecretsError } from '../src/index.js';
import {
  createTestCA,
  encryptKey,
  type Issued,
  randomTicketKeys,
  type TestCA,
  toPfx,
} from './fixtures/ca.js';

let ca: TestCA;
let good: Issued;
let goodRsa: Issued;

beforeAll(async () => {
  ca = await createTestCA();
  good = await ca.issue();
  goodRsa = await ca.issue({ algorithm: 'rsa' });
});

type Spec = Parameters<typeof createResolver>[0];
type Bad = { field: string; values: Record<string, RawSecret>; reason: RegExp; verifyChain?: boolean };

const day = 86_400_000;

/** Serves a good bundle, swaps in `bad`, and checks the rejection. Returns the error. */
async function rejectSwap(
  makeSpec: (store: ReturnType<typeof memory>) => Spec,
  goodValues: Record<string, RawSecret>,
  bad: Bad,
) {
  const store = memory(goodValues);
  const resolver = createResolver(makeSpec(store), { debounceMs: 1, verifyChain: bad.verifyChain ?? false });
  const errors: TlsSecretsError[] = [];
  resolver.on('error', (error) => errors.push(error));
  try {
    const served = await resolver.resolve();
    for (const [key, value] of Object.entries(bad.values)) store.set(key, value);
    const result = await resolver.refresh();
    const error = result.errors[0] ?? errors[0];
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error?.field).toBe(bad.field);
    expect(error?.ref).toMatch(/^memory:/);
    expect(error?.message).toMatch(bad.reason);
    expect(resolver.generation).toBe(1);
    expect(await resolver.resolve()).toBe(served);
    for (const value of Object.values(bad.values)) {
      const text =
        Buffer.isBuffer(value) || value instanceof Uint8Array
          ? Buffer.from(value).toString('latin1')
          : String(value);
      const sample = text
        .replace(/-----[A-Z ]+-----/g, '')
        .trim()
        .slice(0, 24);
      if (sample.length >= 8) {
        expect(error?.message).not.toContain(sample);
        expect(JSON.stringify(error)).not.toContain(sample);
      }
    }
    return error;
  } finally {
    await resolver.close();
  }
}

const pemSpec = (store: ReturnType<typeof memory>): Spec => ({
  key: store.ref('key'),
  cert: store.ref('cert'),
  ca: store.ref('ca'),
});

describe('bad material is rejected and the previous bundle keeps serving', () => {
  const goodPem = () => ({ key: good.keyPem, cert: good.certPem, ca: ca.certPem });

  it('garbage instead of a certificate', async () => {
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { cert: 'not a certificate at all, just text' },
      reason: /not a parsable X.509/,
    });
  });

  it('truncated PEM', async () => {
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { cert: good.certPem.slice(0, 200) },
      reason: /not a parsable X.509|PEM/,
    });
  });

  it('key and certificate of different key types (P-256 key, RSA certificate: Node accepts it silently)', async () => {
    const other = await ca.issue({ algorithm: 'rsa' });
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { cert: other.certPem },
      reason: /does not match any private key/,
    });
  });

  it('key and certificate of the same type that do not match', async () => {
    const other = await ca.issue();
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { cert: other.certPem },
      reason: /does not match any private key/,
    });
  });

  it('an expired certificate', async () => {
    const expired = await ca.issue({
      notBefore: new Date(Date.now() - 10 * day),
      notAfter: new Date(Date.now() - day),
    });
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { key: expired.keyPem, cert: expired.certPem },
      reason: /expired at/,
    });
  });

  it('a certificate not yet valid', async () => {
    const future = await ca.issue({
      notBefore: new Date(Date.now() + day),
      notAfter: new Date(Date.now() + 10 * day),
    });
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { key: future.keyPem, cert: future.certPem },
      reason: /not valid before/,
    });
  });

  it('an encrypted key without a passphrase', async () => {
    await rejectSwap(pemSpec, goodPem(), {
      field: 'key',
      values: { key: encryptKey(good.keyPem, 'secret-pass') },
      reason: /encrypted and no passphrase/,
    });
  });

  it('an encrypted key with the wrong passphrase', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      key: { pem: store.ref('key'), passphrase: store.ref('pass') },
      cert: store.ref('cert'),
    });
    const values = { key: encryptKey(good.keyPem, 'right-pass'), cert: good.certPem, pass: 'right-pass' };
    await rejectSwap(spec, values, {
      field: 'key',
      values: { pass: 'wrong-pass' },
      reason: /cannot be decrypted with the passphrase from memory:pass/,
    });
  });

  it('a PFX with the wrong passphrase', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      pfx: { buf: store.ref('pfx'), passphrase: store.ref('pass') },
    });
    const values = { pfx: toPfx(good, 'pfx-pass'), pass: 'pfx-pass' };
    await rejectSwap(spec, values, {
      field: 'pfx',
      values: { pass: 'nope' },
      reason: /wrong or missing passphrase/,
    });
  });

  it('ticket keys of 47 and 49 bytes', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      ...pemSpec(store),
      ticketKeys: store.ref('tickets'),
    });
    for (const size of [47, 49]) {
      await rejectSwap(
        spec,
        { ...goodPem(), tickets: randomTicketKeys() },
        {
          field: 'ticketKeys',
          values: { tickets: Buffer.alloc(size, 1) },
          reason: new RegExp(`exactly 48 bytes, got ${size}`),
        },
      );
    }
  });

  it('a CA entry that is not a certificate', async () => {
    const bundle = `${ca.certPem}\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`;
    await rejectSwap(pemSpec, goodPem(), {
      field: 'ca#1',
      values: { ca: bundle },
      reason: /not a parsable X.509/,
    });
  });

  it('garbage between CA blocks (OpenSSL would silently drop every CA after it)', async () => {
    const other = await createTestCA();
    const bundle = `${ca.certPem}\nsome junk line\n${other.certPem}`;
    await rejectSwap(pemSpec, goodPem(), {
      field: 'ca',
      values: { ca: bundle },
      reason: /not a clean PEM bundle/,
    });
  });

  it('a malformed CRL', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({ ...pemSpec(store), crl: store.ref('crl') });
    await rejectSwap(
      spec,
      { ...goodPem(), crl: await ca.crl() },
      {
        field: 'crl',
        values: {
          crl: '-----BEGIN X509 CRL-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END X509 CRL-----\n',
        },
        reason: /CRL cannot be parsed/,
      },
    );
  });

  it('a JSON secret without the requested key', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      key: store.ref('tls', { jsonKey: 'key' }),
      cert: store.ref('tls', { jsonKey: 'cert' }),
    });
    await rejectSwap(
      spec,
      { tls: JSON.stringify({ key: good.keyPem, cert: good.certPem }) },
      {
        field: 'key',
        values: { tls: JSON.stringify({ private_key: good.keyPem, cert: good.certPem }) },
        reason: /has no key "key"/,
      },
    );
  });

  it('binary where text is expected', async () => {
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { cert: new Uint8Array([0xff, 0xfe, 0x00, 0x81, 0xc3]) },
      reason: /binary where text is expected/,
    });
  });

  it('an empty secret', async () => {
    await rejectSwap(pemSpec, goodPem(), { field: 'ca', values: { ca: '' }, reason: /empty/ });
  });

  it('an oversized secret (10 MB)', async () => {
    await rejectSwap(pemSpec, goodPem(), {
      field: 'ca',
      values: { ca: 'A'.repeat(10 * 1024 * 1024) },
      reason: /over the .*-byte limit/,
    });
  });

  it('a chain whose leaf is not signed by the given CA, when chain checking is on', async () => {
    const stranger = await createTestCA({ commonName: 'stranger' });
    const foreign = await stranger.issue();
    await rejectSwap(pemSpec, goodPem(), {
      field: 'cert',
      values: { key: foreign.keyPem, cert: foreign.certPem },
      reason: /not signed by any given CA/,
      verifyChain: true,
    });
  });

  it('a JSON secret that is not JSON does not echo its text', async () => {
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      ...pemSpec(store),
      passphrase: store.ref('cfg', { jsonKey: 'p' }),
    });
    const error = await rejectSwap(
      spec,
      { ...goodPem(), cfg: '{"p":"ok-passphrase"}' },
      {
        field: 'passphrase',
        values: { cfg: 'CANARY-not-json-secret-text' },
        reason: /not JSON/,
      },
    );
    expect(String((error?.cause as Error | undefined)?.message)).not.toContain('CANARY');
  });
});

describe('more edges of the gate', () => {
  const dhparam = (name: string) =>
    execFileSync(
      'sh',
      ['-c', `openssl genpkey -genparam -algorithm DH -pkeyopt dh_param:${name} | openssl dhparam`],
      {
        encoding: 'utf8',
      },
    );

  it('DH parameters: a standard 2048-bit group is accepted, garbage is refused (Node would drop it silently)', async () => {
    const accepted = createResolver({
      key: goodRsa.keyPem,
      cert: goodRsa.certPem,
      dhparam: dhparam('ffdhe2048'),
    });
    await expect(accepted.resolve()).resolves.toBeTruthy();
    const spec = (store: ReturnType<typeof memory>): Spec => ({
      ...pemSpec(store),
      dhparam: store.ref('dh'),
    });
    await rejectSwap(
      spec,
      { key: good.keyPem, cert: good.certPem, ca: ca.certPem, dh: dhparam('ffdhe2048') },
      {
        field: 'dhparam',
        values: { dh: '-----BEGIN DH PARAMETERS-----\nMAYCAQUCAQI=\n-----END DH PARAMETERS-----\n' },
        reason: /at least 2048|not a single PEM/,
      },
    );
    await accepted.close();
  });

  it('a DER certificate is accepted and handed to Node as PEM', async () => {
    const der = new X509Certificate(good.certPem).raw;
    const resolver = createResolver({ key: good.keyPem, cert: der, ca: new X509Certificate(ca.certPem).raw });
    const options = await resolver.resolve();
    expect(String((options.cert as string[])[0])).toContain('BEGIN CERTIFICATE');
    expect(String((options.ca as string[])[0])).toContain('BEGIN CERTIFICATE');
    expect(resolver.status().notAfter?.getTime()).toBe(good.notAfter.getTime());
    await resolver.close();
  });

  it('a certificate without any private key says so', async () => {
    const resolver = createResolver({ cert: good.certPem });
    await expect(resolver.resolve()).rejects.toThrow(/certificate given without a private key/);
    await resolver.close();
  });
});

describe('valid material of every kind is accepted', () => {
  it('RSA and ECDSA key pairs together, encrypted key with passphrase, CRL, ticket keys', async () => {
    const resolver = createResolver({
      key: [good.keyPem, { pem: encryptKey(goodRsa.keyPem, 'pw'), passphrase: 'pw' }],
      cert: [good.certPem, goodRsa.certPem],
      ca: ca.certPem,
      crl: await ca.crl([goodRsa.serial]),
      ticketKeys: randomTicketKeys(),
    });
    const options = await resolver.resolve();
    expect(options.key).toHaveLength(2);
    expect(resolver.status().fields.map((f) => f.field)).toEqual([
      'key[0]',
      'key[1]',
      'key[1].passphrase',
      'cert[0]',
      'cert[1]',
      'ca',
      'crl',
      'ticketKeys',
    ]);
    await resolver.close();
  });
});
