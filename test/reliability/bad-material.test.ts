/**
 * Bad material beyond test/validation.test.ts: shapes it does not try (PFX that is no PKCS#12 or has no
 * passphrase, a key pasted into the CA field, DER where PEM is needed, an expired certificate up the chain,
 * …) and the paths that only other providers take (bytes from AWS SecretBinary, a field picked from a Vault
 * KV map rather than JSON text, the file provider's own size limit). Each: a typed error naming field and
 * reference, no secret bytes in anything the error shows, nothing swapped in, the old bundle still serving
 * real handshakes.
 */
import { createPrivateKey, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { file } from '../../providers/file.js';
import { memory } from '../../providers/memory.js';
import { vault } from '../../providers/vault/index.js';
import {
  connect,
  createResolver,
  createServer,
  InvalidMaterialError,
  type RawSecret,
  type Resolver,
  type TlsSecretsError,
  type TlsSecretsSpec,
} from '../../src/index.js';
import { createTestCA, type Issued, type TestCA, toPfx } from '../fixtures/ca.js';
import { closeServer, listen } from '../helpers/tls.js';
import { seedApi } from './vault-rig.js';

const endpoint = inject('motoEndpoint');
const NO_MOTO = !endpoint;
if (NO_MOTO)
  console.warn(`[bad-material] AWS cases SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

let ca: TestCA;
let good: Issued;
const cleanups: (() => Promise<unknown>)[] = [];
let tried = 0;

beforeAll(async () => {
  ca = await createTestCA();
  good = await ca.issue({ commonName: 'localhost' });
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
afterAll(() => {
  console.info(`[bad-material] ${tried} bad inputs tried in this file`);
});

function shownOf(error: unknown): string {
  const parts = [inspect(error, { depth: 8, showHidden: true }), JSON.stringify(error)];
  for (let current = error, i = 0; current instanceof Error && i < 8; current = current.cause, i++) {
    parts.push(current.message, String(current.stack));
  }
  return parts.join('\n');
}

/** Recognisable runs of the bad value: base64 body lines, or the text itself. */
function samplesOf(value: RawSecret): string[] {
  const text =
    typeof value === 'string'
      ? value
      : value instanceof Uint8Array
        ? Buffer.from(value).toString('latin1')
        : JSON.stringify(value);
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length >= 12 && !line.startsWith('-----'))
    .map((line) => line.slice(0, 40));
}

/** A handshake against a server built from `resolver`; returns the serial the client saw. */
async function serialServed(resolver: Resolver): Promise<string> {
  const server = createServer(resolver, {}, (socket) => socket.end());
  const port = await listen(server);
  const client = createResolver({ ca: ca.certPem });
  try {
    const socket = await connect(client, { host: '127.0.0.1', port, servername: 'localhost' });
    const serial = socket.getPeerCertificate().serialNumber;
    socket.destroy();
    return serial;
  } finally {
    await client.close();
    await closeServer(server);
  }
}

interface Rejection {
  field: string;
  ref: string;
  reason: RegExp;
  /** Values whose text must not show in the error (default: the bad values written). */
  secrets?: string[];
}

/** Serves a good bundle, puts bad material in the store, and checks the rejection. */
async function rejectSwap(
  resolver: Resolver,
  swap: () => Promise<RawSecret[]> | RawSecret[],
  expected: Rejection,
): Promise<TlsSecretsError> {
  cleanups.push(() => resolver.close());
  const served = await resolver.resolve();
  const serial = await serialServed(resolver);
  const written = await swap();
  tried += 1;
  const result = await resolver.refresh();
  const [error] = result.errors;
  expect(error).toBeInstanceOf(InvalidMaterialError);
  expect(error?.field).toBe(expected.field);
  expect(error?.ref).toBe(expected.ref);
  expect(error?.message).toMatch(expected.reason);
  expect(result.rotated).toBe(false);
  expect(resolver.generation).toBe(1);
  expect(await resolver.resolve()).toBe(served);
  expect(await serialServed(resolver)).toBe(serial);
  const shown = shownOf(error);
  for (const secret of [...(expected.secrets ?? []), ...written.flatMap(samplesOf)]) {
    expect(shown).not.toContain(secret);
  }
  expect(shown).not.toMatch(/PRIVATE KEY-----\r?\n[A-Za-z0-9+/]/);
  return error as TlsSecretsError;
}

/** A memory store seeded with the good bundle and `extra`; `spec` picks the references. */
function memoryRig(extra: Record<string, RawSecret>, spec: (s: ReturnType<typeof memory>) => TlsSecretsSpec) {
  const store = memory({ key: good.keyPem, cert: good.certPem, ca: ca.certPem, ...extra });
  return { store, resolver: createResolver(spec(store), { debounceMs: 1 }) };
}

const pemSpec = (s: ReturnType<typeof memory>): TlsSecretsSpec => ({
  key: s.ref('key'),
  cert: s.ref('cert'),
  ca: s.ref('ca'),
});

describe('bad material, shapes validation.test.ts does not try', () => {
  it('a PFX that is not PKCS#12 at all', async () => {
    const { store, resolver } = memoryRig({ pfx: toPfx(good, 'pw'), pass: 'pw' }, (s) => ({
      pfx: { buf: s.ref('pfx'), passphrase: s.ref('pass') },
    }));
    const junk = Buffer.from('30820a0b02010330820a'.repeat(20), 'hex');
    await rejectSwap(
      resolver,
      () => {
        store.set('pfx', junk);
        return [junk];
      },
      {
        field: 'pfx',
        ref: 'memory:pfx',
        reason: /PFX cannot be parsed|wrong or missing passphrase/,
      },
    );
  });

  it('a PFX that needs a passphrase and is given none', async () => {
    const { store, resolver } = memoryRig({ pfx: toPfx(good, '') }, (s) => ({ pfx: s.ref('pfx') }));
    const locked = toPfx(good, 'needs-a-passphrase');
    await rejectSwap(
      resolver,
      () => {
        store.set('pfx', locked);
        return [];
      },
      { field: 'pfx', ref: 'memory:pfx', reason: /wrong or missing passphrase/ },
    );
  });

  it('a private key pasted into the CA field: named by its label, its body never shown', async () => {
    const { store, resolver } = memoryRig({}, pemSpec);
    await rejectSwap(
      resolver,
      () => {
        store.set('ca', good.keyPem);
        return [good.keyPem];
      },
      { field: 'ca', ref: 'memory:ca', reason: /CA entry 0 is a "PRIVATE KEY" block/ },
    );
  });

  it('a CA bundle with a BEGIN line and no END line', async () => {
    const { store, resolver } = memoryRig({}, pemSpec);
    const cut = `${ca.certPem}-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIQ\n`;
    await rejectSwap(
      resolver,
      () => {
        store.set('ca', cut);
        return [];
      },
      { field: 'ca', ref: 'memory:ca', reason: /not a clean PEM bundle/ },
    );
  });

  it('a certificate given as the CRL', async () => {
    const { store, resolver } = memoryRig({ crl: await ca.crl() }, (s) => ({
      ...pemSpec(s),
      crl: s.ref('crl'),
    }));
    await rejectSwap(
      resolver,
      () => {
        store.set('crl', good.certPem);
        return [];
      },
      { field: 'crl', ref: 'memory:crl', reason: /CRL entry 0 is a "CERTIFICATE" block, expected X509 CRL/ },
    );
  });

  it('an expired certificate sent along that issues nothing on the chain is not refused: peers ignore it', async () => {
    // (An expired intermediate ON the chain is refused: test/gate/expiry.test.ts.)
    const { store, resolver } = memoryRig({}, pemSpec);
    cleanups.push(() => resolver.close());
    await resolver.resolve();
    const old = await createTestCA({
      commonName: 'expired, unrelated',
      notBefore: new Date(Date.now() - 20 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    store.set('cert', `${good.certPem}\n${old.certPem}`);
    const result = await resolver.refresh();
    expect(result.errors).toEqual([]);
    expect(result.rotated).toBe(true);
  });

  it('binary bytes that are not a DER certificate (a real DER certificate is accepted, as PEM)', async () => {
    const { store, resolver } = memoryRig({}, (s) => ({
      key: s.ref('key'),
      cert: s.ref('cert', { encoding: 'binary' }),
    }));
    const notDer = Buffer.concat([Buffer.from([0x30, 0x82, 0x01, 0x00]), Buffer.alloc(256, 7)]);
    await rejectSwap(
      resolver,
      () => {
        store.set('cert', notDer);
        return [];
      },
      { field: 'cert', ref: 'memory:cert', reason: /not a parsable X.509/ },
    );
  });

  it('a DER private key', async () => {
    const { store, resolver } = memoryRig({}, (s) => ({
      key: s.ref('key', { encoding: 'binary' }),
      cert: s.ref('cert'),
    }));
    const der = createPrivateKey(good.keyPem).export({ type: 'pkcs8', format: 'der' });
    await rejectSwap(
      resolver,
      () => {
        store.set('key', der);
        return [der];
      },
      { field: 'key', ref: 'memory:key', reason: /not a parsable private key/ },
    );
  });

  it('a secret of whitespace only (a file holding a newline)', async () => {
    const { store, resolver } = memoryRig({}, pemSpec);
    await rejectSwap(
      resolver,
      () => {
        store.set('cert', ' \n\n');
        return [];
      },
      { field: 'cert', ref: 'memory:cert', reason: /not a parsable X.509/ },
    );
  });

  it('bytes after the END line of a certificate', async () => {
    const { store, resolver } = memoryRig({}, pemSpec);
    const trailing = `${good.certPem}\0\0junk-after-the-end-line`;
    await rejectSwap(
      resolver,
      () => {
        store.set('cert', trailing);
        return [];
      },
      {
        field: 'cert',
        ref: 'memory:cert',
        reason: /not a clean PEM bundle/,
        secrets: ['junk-after-the-end-line'],
      },
    );
  });

  it('a JSON field holding null, then a number', async () => {
    const { store, resolver } = memoryRig(
      { tls: JSON.stringify({ key: good.keyPem, cert: good.certPem }) },
      (s) => ({
        key: s.ref('tls', { jsonKey: 'key' }),
        cert: s.ref('tls', { jsonKey: 'cert' }),
      }),
    );
    await rejectSwap(
      resolver,
      () => {
        store.set('tls', JSON.stringify({ key: good.keyPem, cert: null }));
        return [];
      },
      {
        field: 'cert',
        ref: 'memory:tls#cert',
        reason: /secret is a null value/,
        secrets: samplesOf(good.keyPem),
      },
    );
    const second = memoryRig({ tls: JSON.stringify({ key: good.keyPem, cert: good.certPem }) }, (s) => ({
      key: s.ref('tls', { jsonKey: 'key' }),
      cert: s.ref('tls', { jsonKey: 'cert' }),
    }));
    await rejectSwap(
      second.resolver,
      () => {
        second.store.set('tls', JSON.stringify({ key: 42, cert: good.certPem }));
        return [];
      },
      { field: 'key', ref: 'memory:tls#key', reason: /secret is a number value/ },
    );
  });

  it('encoding base64 on a value that is not base64 (a PEM)', async () => {
    const { store, resolver } = memoryRig({ tickets: Buffer.alloc(48, 3).toString('base64') }, (s) => ({
      ...pemSpec(s),
      ticketKeys: s.ref('tickets', { encoding: 'base64' }),
    }));
    await rejectSwap(
      resolver,
      () => {
        store.set('tickets', good.keyPem);
        return [good.keyPem];
      },
      { field: 'ticketKeys', ref: 'memory:tickets', reason: /not valid base64/ },
    );
  });

  it('a key without a certificate, and a certificate without a key, fail at first use', async () => {
    const store = memory({ key: good.keyPem, cert: good.certPem });
    for (const [spec, field, reason] of [
      [{ key: store.ref('key') }, 'key', /private key given without a certificate/],
      [{ cert: store.ref('cert') }, 'cert', /certificate given without a private key/],
    ] as const) {
      tried += 1;
      const resolver = createResolver(spec);
      const error = (await resolver.resolve().catch((e: unknown) => e)) as TlsSecretsError;
      expect(error).toBeInstanceOf(InvalidMaterialError);
      expect(error.field).toBe(field);
      expect(error.ref).toBe(`memory:${field}`);
      expect(error.message).toMatch(reason);
      expect(shownOf(error)).not.toContain(samplesOf(good.keyPem)[0]);
      await resolver.close();
    }
  });
});

describe('bad material on other providers’ code paths', () => {
  it('the file provider refuses a 10 MB file itself, before reading it whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tls-secrets-bad-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await writeFile(join(dir, 'ca.pem'), ca.certPem);
    const files = file({ baseDir: dir, watch: false });
    const resolver = createResolver({ key: good.keyPem, cert: good.certPem, ca: files.ref('ca.pem') });
    await rejectSwap(
      resolver,
      async () => {
        await writeFile(join(dir, 'ca.pem'), 'A'.repeat(10 * 1024 * 1024));
        return [];
      },
      {
        field: 'ca',
        ref: `file:${join(dir, 'ca.pem')}`,
        reason: /over the .*-byte limit/,
        secrets: ['AAAAAAAAAAAAAAAA'],
      },
    );
  });

  it.skipIf(NO_MOTO)('AWS Secrets Manager: SecretBinary bytes where PEM text is expected', async () => {
    const credentials = { accessKeyId: 'AKIDBAD', secretAccessKey: 'bad-material-secret-key' };
    const admin = new SecretsManagerClient({ endpoint, region: 'us-east-1', credentials });
    cleanups.push(async () => admin.destroy());
    const name = `bad-${randomUUID().slice(0, 8)}`;
    await admin.send(new CreateSecretCommand({ Name: name, SecretString: good.certPem }));
    const aws = awsSecretsManager({ endpoint, region: 'us-east-1', credentials });
    cleanups.push(() => aws.close());
    const resolver = createResolver({ key: good.keyPem, cert: aws.secret(name) });
    const binary = Buffer.concat([
      Buffer.from([0xff, 0xfe, 0x81]),
      Buffer.from('binary-secret-payload-7c1d'),
    ]);
    await rejectSwap(
      resolver,
      async () => {
        await admin.send(new PutSecretValueCommand({ SecretId: name, SecretBinary: binary }));
        return [binary];
      },
      {
        field: 'cert',
        ref: `aws-secrets-manager:${name}`,
        reason: /binary where text is expected/,
        secrets: ['binary-secret-payload-7c1d'],
      },
    );
  });

  // The run's real OpenBao (or an operator's Vault): secrets under a run prefix, removed afterwards.
  const vaultAddr = inject('vaultAddr');
  const vaultToken = inject('vaultToken');
  const prefix = `tlss-bad-${randomUUID().slice(0, 8)}`;
  describe.skipIf(!vaultAddr)(
    `Vault KV maps (the field is picked from an object, not from JSON text)${vaultAddr ? '' : ` (skipped: ${inject('vaultServer')})`}`,
    () => {
      const api = seedApi(vaultAddr, vaultToken);
      const paths: string[] = [];
      afterAll(async () => {
        for (const path of paths) await api('DELETE', `secret/metadata/${path}`).catch(() => undefined);
      });

      const cases: [string, Record<string, unknown>, RegExp][] = [
        [
          'a KV secret without the requested field',
          { certificate: 'cert-under-another-name-0b9e' },
          /has no key "cert"/,
        ],
        ['a KV field holding a number', { cert: 12345 }, /secret is a number value/],
        ['a KV field holding a map', { cert: { pem: 'nested-pem-text-5e2a' } }, /secret is a object value/],
      ];
      for (const [label, data, reason] of cases) {
        it(label, async () => {
          const path = `${prefix}/bad-${randomUUID().slice(0, 8)}`;
          paths.push(path);
          const put = (body: Record<string, unknown>) => api('POST', `secret/data/${path}`, { data: body });
          await put({ key: good.keyPem, cert: good.certPem });
          const v = vault({ endpoint: vaultAddr, auth: { token: vaultToken } });
          cleanups.push(() => v.close());
          const resolver = createResolver({
            key: v.kv(`secret/${path}`, { field: 'key' }),
            cert: v.kv(`secret/${path}`, { field: 'cert' }),
          });
          await rejectSwap(
            resolver,
            async () => {
              await put({ ...data, key: good.keyPem });
              return [];
            },
            {
              field: 'cert',
              ref: `vault:secret/${path}#cert`,
              reason,
              secrets: ['nested-pem-text-5e2a', 'cert-under-another-name-0b9e', ...samplesOf(good.keyPem)],
            },
          );
        });
      }
    },
  );
});
