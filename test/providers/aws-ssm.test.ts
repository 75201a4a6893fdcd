/**
 * The SSM Parameter Store provider through the real SDK against moto (the real awsJson1_1 wire protocol),
 * counting SDK calls with a client middleware. moto accepts any KMS key, so KMS failures and throttling come
 * from the fault proxy in front of moto answering in the service's own error format.
 */
import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import {
  DeleteParameterCommand,
  LabelParameterVersionCommand,
  PutParameterCommand,
  SSMClient,
  SSMServiceException,
} from '@aws-sdk/client-ssm';
import { providerConformance } from 'tls-secrets/testing';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { createResolverFromConfig } from '../../config/index.js';
import { ssmParameterStore } from '../../providers/aws-ssm.js';
import { ConfigurationError, FetchError, SecretNotFoundError } from '../../src/errors.js';
import { createResolver } from '../../src/index.js';
import { createTestCA } from '../fixtures/ca.js';
import { type FaultProxy, type ProxyFault, startFaultProxy } from '../helpers/fault-proxy.js';
import { awsOptionsSuite, CREDENTIALS, deniedByIam, nobodyListening, REGION } from './aws-options.js';

const endpoint = inject('motoEndpoint');
if (!endpoint) {
  console.warn(`[aws-ssm] moto tests SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);
}

const signal = () => new AbortController().signal;
const unique = (prefix: string) => `/tls-secrets-test/${prefix}-${randomUUID().slice(0, 8)}`;
const pems = (value: unknown) => [value].flat().map((pem) => String(pem).trim());

/** A real client whose commands are counted by name (`GetParameter`, `GetParameters`, …). */
function countingClient(url: string, options: { denyBatch?: boolean } = {}) {
  const client = new SSMClient({ endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
  const calls: string[] = [];
  const batchSizes: number[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = String(context.commandName).replace(/Command$/, '');
      calls.push(command);
      const names = (args.input as { Names?: string[] }).Names;
      if (names) batchSizes.push(names.length);
      // What an identity allowed ssm:GetParameter but not ssm:GetParameters gets; moto has no IAM.
      if (options.denyBatch && command === 'GetParameters') {
        throw new SSMServiceException({
          name: 'AccessDeniedException',
          $fault: 'client',
          $metadata: { httpStatusCode: 400 },
          message: 'not authorized to perform: ssm:GetParameters',
        });
      }
      return next(args);
    },
    { step: 'initialize', name: 'countCalls' },
  );
  return {
    client,
    calls,
    batchSizes,
    count: (command: string) => calls.filter((c) => c === command).length,
    reset: () => {
      calls.splice(0);
      batchSizes.splice(0);
    },
  };
}

awsOptionsSuite({
  label: 'ssmParameterStore',
  create: (options) => ssmParameterStore(options as Parameters<typeof ssmParameterStore>[0]),
  client: () => new SSMClient({ region: REGION, credentials: CREDENTIALS }),
  endpointVariable: 'AWS_ENDPOINT_URL_SSM',
  extraBad: [{ withDecryption: 'yes' }],
});

describe('ssmParameterStore: references (no I/O)', () => {
  it('reads selectors from the name; the same name and selector share one id', () => {
    const ssm = ssmParameterStore({ region: REGION, credentials: CREDENTIALS });
    const plain = ssm.ref('/svc/tls/cert', { jsonKey: 'a' });
    expect(ssm.ref('/svc/tls/cert', { encoding: 'base64' }).id).toBe(plain.id);
    const ids = ['/svc/tls/cert', '/svc/tls/cert:3', '/svc/tls/cert:blue'].map((n) => ssm.ref(n).id);
    expect(new Set(ids).size).toBe(3);
    // ARNs carry colons of their own; only one after the last "/" is a selector.
    expect(() => ssm.ref('arn:aws:ssm:eu-west-1:123456789012:parameter/svc/tls/cert')).not.toThrow();
    expect(() => ssm.ref('arn:aws:ssm:eu-west-1:123456789012:parameter/svc/tls/cert:7')).not.toThrow();
  });

  it('refuses bad names and selectors when the reference is made', () => {
    const ssm = ssmParameterStore({ region: REGION, credentials: CREDENTIALS });
    for (const bad of [
      '',
      '/svc/tls cert',
      '/svc/a?b',
      '/svc/cert:0',
      '/svc/cert:aws-label',
      '/svc/cert:1st',
      '/svc/cert:',
    ]) {
      expect(() => ssm.ref(bad), bad).toThrow(ConfigurationError);
    }
  });
});

describe.skipIf(!endpoint)('ssmParameterStore against moto', () => {
  const url = endpoint;
  const admin = new SSMClient({ endpoint: url, region: REGION, credentials: CREDENTIALS });
  afterAll(() => admin.destroy());
  const put = async (
    name: string,
    value: string,
    type: 'SecureString' | 'String' | 'StringList' = 'SecureString',
  ) =>
    String(
      (
        await admin.send(
          new PutParameterCommand({
            Name: name,
            Value: value,
            Type: type,
            Overwrite: true,
            ...(type === 'SecureString' ? { KeyId: 'alias/tls-secrets-test' } : {}),
          }),
        )
      ).Version,
    );

  providerConformance(
    {
      name: 'aws-ssm (moto)',
      capabilities: {
        batch: true,
        watch: 'the service sends no notifications; the resolver probes versions',
        probe: true,
        deny: true,
        unreachable: true,
        abort: true,
        binary: 'a parameter holds text only (binary values are stored base64)',
        closeEndsFetch: true,
      },
      async setup() {
        const counted = countingClient(url);
        const provider = ssmParameterStore({ client: counted.client });
        const others: { close(): Promise<void> }[] = [];
        const alike = (endpoint: string) => {
          const other = ssmParameterStore({
            endpoint,
            region: REGION,
            credentials: CREDENTIALS,
            maxAttempts: 1,
          });
          others.push(other);
          return other;
        };
        return {
          provider,
          put: async (name, value) => {
            await put(`/tls-secrets-conformance/${name}`, String(value));
          },
          ref: (name, options) => provider.ref(`/tls-secrets-conformance/${name}`, options),
          storeCalls: () => counted.calls.length,
          async denied() {
            await put(`/tls-secrets-conformance/denied`, 'not for this identity');
            const proxy = await deniedByIam(url);
            others.push(proxy);
            return alike(proxy.url).ref(`/tls-secrets-conformance/denied`);
          },
          unreachable: async () => alike(await nobodyListening()).ref(`/tls-secrets-conformance/anything`),
          async close() {
            for (const other of others) await other.close();
            counted.client.destroy();
          },
        };
      },
    },
    { describe, it },
  );

  it('decrypts SecureString by default and reads String and StringList', async () => {
    const ssm = ssmParameterStore({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const [secure, plain, list] = [unique('secure'), unique('plain'), unique('list')];
    await put(secure, 'secure value');
    await put(plain, 'plain value', 'String');
    const cas = await Promise.all([createTestCA({ commonName: 'L1' }), createTestCA({ commonName: 'L2' })]);
    await put(list, cas.map((ca) => ca.certPem.trim()).join(','), 'StringList');
    // moto's stand-in ciphertext is "kms:<key>:<value>": anything but the plaintext means no decryption.
    expect((await ssm.fetch(ssm.ref(secure), signal())).value).toBe('secure value');
    expect((await ssm.fetch(ssm.ref(plain), signal())).value).toBe('plain value');
    const resolver = createResolver({ ca: ssm.ref(list) });
    try {
      expect(pems((await resolver.resolve()).ca)).toEqual(cas.map((ca) => ca.certPem.trim()));
    } finally {
      await resolver.close();
      await ssm.close();
    }
  });

  it('a parameter deleted and created again (version 1 again) with a new value is served, pinned or not: the version is number and write time', async () => {
    const ssm = ssmParameterStore({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('recreated');
    const [before, after] = await Promise.all([
      createTestCA({ commonName: 'before' }),
      createTestCA({ commonName: 'after' }),
    ]);
    await put(name, before.certPem, 'String');
    const resolver = createResolver({ ca: ssm.ref(name) }, { refreshIntervalMs: 3_600_000 });
    try {
      expect(pems((await resolver.resolve()).ca)).toEqual([before.certPem.trim()]);
      const served = resolver.status().fields.find((field) => field.field === 'ca')?.version;
      await admin.send(new DeleteParameterCommand({ Name: name }));
      expect(await put(name, after.certPem, 'String')).toBe('1');
      // The same version number as before: only the write time tells the values apart.
      expect((await ssm.currentVersion(ssm.ref(name), signal()))?.split('@')[0]).toBe(served?.split('@')[0]);
      const refreshed = await resolver.refresh();
      expect(refreshed.errors).toEqual([]);
      expect(refreshed.rotated).toBe(true);
      expect(pems((await resolver.resolve()).ca)).toEqual([after.certPem.trim()]);
    } finally {
      await resolver.close();
    }
    // Pinned to version 1: the same, and a parameter deleted for good is reported, the served value kept.
    const pinned = createResolver({ ca: ssm.ref(`${name}:1`) }, { refreshIntervalMs: 3_600_000 });
    try {
      expect(pems((await pinned.resolve()).ca)).toEqual([after.certPem.trim()]);
      await admin.send(new DeleteParameterCommand({ Name: name }));
      await put(name, before.certPem, 'String');
      expect((await pinned.refresh()).rotated).toBe(true);
      expect(pems((await pinned.resolve()).ca)).toEqual([before.certPem.trim()]);
      await admin.send(new DeleteParameterCommand({ Name: name }));
      const gone = await pinned.refresh();
      expect(gone.errors.map((error) => error.code)).toEqual(['NOT_FOUND']);
      expect(pinned.status().stale).toBe(true);
      expect(pems((await pinned.resolve()).ca)).toEqual([before.certPem.trim()]);
    } finally {
      await pinned.close();
      await ssm.close();
    }
  });

  it('pins reads to a version number or a label; the probe follows a moved label', async () => {
    const counted = countingClient(url);
    const ssm = ssmParameterStore({ client: counted.client });
    const name = unique('sel');
    await put(name, 'one');
    await put(name, 'two');
    await put(name, 'three');
    await admin.send(new LabelParameterVersionCommand({ Name: name, ParameterVersion: 1, Labels: ['blue'] }));
    const refs = {
      latest: ssm.ref(name),
      first: ssm.ref(`${name}:1`),
      blue: ssm.ref(`${name}:blue`),
    };
    // Versions are the number and when it was written (`3@<epoch ms>`); the probe agrees with the read.
    const read = async (ref: (typeof refs)[keyof typeof refs]) => {
      const result = await ssm.fetch(ref, signal());
      const probed = await ssm.currentVersion(ref, signal());
      expect(probed).toBe(result.version);
      return [result.value, probed?.split('@')[0]];
    };
    expect(await read(refs.latest)).toEqual(['three', '3']);
    expect(await read(refs.first)).toEqual(['one', '1']);
    expect(await read(refs.blue)).toEqual(['one', '1']);
    counted.reset();
    // A pinned version is checked too (a parameter deleted and created again reuses its numbers): one call.
    expect(await ssm.currentVersion(refs.first, signal())).toMatch(/^1@\d+$/);
    expect(counted.calls).toHaveLength(1);

    await admin.send(new LabelParameterVersionCommand({ Name: name, ParameterVersion: 2, Labels: ['blue'] }));
    expect(await ssm.currentVersion(refs.blue, signal())).toMatch(/^2@\d+$/);
    expect((await ssm.fetch(refs.blue, signal())).value).toBe('two');

    // All three selectors of one parameter in one fetchMany: never two of them in one GetParameters call.
    counted.reset();
    const results = await ssm.fetchMany([refs.latest, refs.first, refs.blue, ssm.ref(unique('x'))], signal());
    expect(results.map((r) => (r instanceof Error ? r.constructor.name : r.value))).toEqual([
      'three',
      'one',
      'two',
      'SecretNotFoundError',
    ]);
    expect(counted.batchSizes.every((size) => size <= 2)).toBe(true);
    await ssm.close();
    counted.client.destroy();
  });

  it('a name and its ARN with different selectors in one fetchMany each get their own version', async () => {
    const ssm = ssmParameterStore({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('arn');
    await put(name, 'first');
    await put(name, 'second');
    const arn = `arn:aws:ssm:${REGION}:123456789012:parameter${name}`;
    const results = await ssm.fetchMany(
      [ssm.ref(`${name}:1`), ssm.ref(`${arn}:2`), ssm.ref(arn), ssm.ref(unique('other'))],
      signal(),
    );
    expect(
      results.map((r) => (r instanceof Error ? r.constructor.name : [r.value, r.version?.split('@')[0]])),
    ).toEqual([['first', '1'], ['second', '2'], ['second', '2'], 'SecretNotFoundError']);
    await ssm.close();
  });

  it('a missing parameter, version or label is a SecretNotFoundError, single or batched', async () => {
    const ssm = ssmParameterStore({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('nf');
    await put(name, 'present');
    const missing = [ssm.ref(unique('absent')), ssm.ref(`${name}:9`), ssm.ref(`${name}:nolabel`)];
    for (const ref of missing) {
      const error = await ssm.fetch(ref, signal()).catch((e: unknown) => e);
      expect(error, ref.id).toBeInstanceOf(SecretNotFoundError);
      expect((error as Error).message).toContain(ref.id);
    }
    const batched = await ssm.fetchMany([ssm.ref(name), ...missing], signal());
    expect(batched.map((r) => (r instanceof Error ? r.constructor.name : r.value))).toEqual([
      'present',
      'SecretNotFoundError',
      'SecretNotFoundError',
      'SecretNotFoundError',
    ]);
    await ssm.close();
  });

  it('a config file names it as type aws-ssm, selectors in the shorthand id', async () => {
    const name = unique('cfg');
    const ca = await createTestCA({ commonName: 'from config' });
    await put(name, 'older');
    await put(name, ca.certPem);
    await put(name, 'newest, not a certificate');
    vi.stubEnv('AWS_ACCESS_KEY_ID', CREDENTIALS.accessKeyId);
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', CREDENTIALS.secretAccessKey);
    const configured = await createResolverFromConfig({
      providers: { ssm: { type: 'aws-ssm', region: REGION, endpoint: url } },
      tls: { ca: `ssm:${name}:2` },
    });
    try {
      expect(pems((await configured.resolver.resolve()).ca)).toEqual(pems(ca.certPem));
      await expect(
        createResolverFromConfig({
          providers: { ssm: { type: 'aws-ssm', region: REGION, endpoint: url, versionStage: 'x' } as never },
          tls: { ca: `ssm:${name}` },
        }),
      ).rejects.toThrow(/providers\.ssm\.versionStage: unknown field/);
    } finally {
      await configured.close();
      vi.unstubAllEnvs();
    }
  });

  it('a batch denied by IAM falls back to GetParameter and is not tried again by that provider', async () => {
    const counted = countingClient(url, { denyBatch: true });
    const ssm = ssmParameterStore({ client: counted.client });
    const names = [unique('d'), unique('d'), unique('d')];
    for (const name of names) await put(name, `value of ${name}`);
    const refs = names.map((name) => ssm.ref(name));
    const first = await ssm.fetchMany(refs, signal());
    expect(first.map((r) => (r instanceof Error ? r : r.value))).toEqual(names.map((n) => `value of ${n}`));
    expect(counted.count('GetParameters')).toBe(1);
    expect(counted.count('GetParameter')).toBe(3);
    counted.reset();
    await ssm.fetchMany(refs, signal());
    expect(counted.calls).toEqual(['GetParameter', 'GetParameter', 'GetParameter']);
    await ssm.close();
    counted.client.destroy();
  });

  describe('SDK call counts through createResolver', () => {
    const names: string[] = [];
    let caPems: string[] = [];
    const clients: SSMClient[] = [];

    beforeAll(async () => {
      const cas = await Promise.all(
        Array.from({ length: 25 }, (_, i) => createTestCA({ commonName: `SSM CA ${i}` })),
      );
      caPems = cas.map((ca) => ca.certPem);
      const prefix = unique('bulk');
      for (const [i, pem] of caPems.entries()) {
        names.push(`${prefix}/ca-${i}`);
        await put(`${prefix}/ca-${i}`, pem);
      }
    });
    afterAll(() => {
      for (const client of clients) client.destroy();
    });

    for (const n of [1, 9, 10, 11, 25]) {
      it(`${n} references over ${n} parameters cost ${Math.ceil(n / 10)} call(s) cold, 0 warm`, async () => {
        const c = countingClient(url);
        clients.push(c.client);
        const ssm = ssmParameterStore({ client: c.client });
        const resolver = createResolver({ ca: names.slice(0, n).map((name) => ssm.ref(name)) });
        try {
          const options = await resolver.resolve();
          expect(pems(options.ca)).toEqual(pems(caPems.slice(0, n)));
          expect(c.calls).toHaveLength(Math.ceil(n / 10));
          // Every name asked for once; a lone leftover goes through GetParameter (the narrower IAM action).
          const singles = c.count('GetParameter');
          expect(c.batchSizes.reduce((sum, size) => sum + size, 0) + singles).toBe(n);
          expect(c.batchSizes.every((size) => size >= 2 && size <= 10)).toBe(true);
          c.reset();
          expect(await resolver.resolve()).toBe(options);
          expect(c.calls).toEqual([]);
        } finally {
          await resolver.close();
          await ssm.close();
        }
      });
    }

    it('after a new version, refresh() costs one probe and one read; probes do not decrypt', async () => {
      const c = countingClient(url);
      clients.push(c.client);
      const decrypts: boolean[] = [];
      c.client.middlewareStack.add(
        (next) => async (args) => {
          decrypts.push((args.input as { WithDecryption?: boolean }).WithDecryption === true);
          return next(args);
        },
        { step: 'initialize', name: 'seeDecryption' },
      );
      const ssm = ssmParameterStore({ client: c.client });
      const name = unique('rot');
      await put(name, caPems[0] as string);
      const resolver = createResolver({ ca: ssm.ref(name) });
      try {
        await resolver.resolve();
        c.reset();
        decrypts.splice(0);
        expect((await resolver.refresh()).rotated).toBe(false);
        expect(c.calls).toEqual(['GetParameter']);
        expect(decrypts).toEqual([false]);
        c.reset();
        decrypts.splice(0);
        await put(name, caPems[1] as string);
        expect((await resolver.refresh()).rotated).toBe(true);
        expect(c.calls).toEqual(['GetParameter', 'GetParameter']);
        expect(decrypts).toEqual([false, true]);
        expect(pems((await resolver.resolve()).ca)).toEqual(pems(caPems[1]));
      } finally {
        await resolver.close();
        await ssm.close();
      }
    });
  });

  describe('errors moto cannot produce (fault proxy in front of moto)', () => {
    let proxy: FaultProxy;
    beforeAll(async () => {
      proxy = await startFaultProxy(url);
    });
    afterAll(() => proxy.close());
    afterEach(() => proxy.setFault({ kind: 'none' }));

    const awsJson = (status: number, type: string, message: string): ProxyFault => ({
      kind: 'respond',
      status,
      body: JSON.stringify({ __type: type, message }),
      headers: { 'Content-Type': 'application/x-amz-json-1.1' },
    });
    const cases: [string, ProxyFault, boolean, RegExp][] = [
      [
        'InvalidKeyId',
        awsJson(400, 'InvalidKeyId', 'The query key ID is not valid.'),
        false,
        /KMS key .*InvalidKeyId.*kms:Decrypt/,
      ],
      [
        'KMSAccessDeniedException',
        awsJson(400, 'KMSAccessDeniedException', 'kms:Decrypt denied'),
        false,
        /KMS could not decrypt.*KMSAccessDeniedException.*kms:Decrypt/,
      ],
      [
        'KMSDisabledException',
        awsJson(400, 'KMSDisabledException', 'key is disabled'),
        false,
        /KMS could not decrypt.*KMSDisabledException.*enabled/,
      ],
      [
        'AccessDeniedException naming KMS',
        awsJson(
          400,
          'AccessDeniedException',
          'User: arn:aws:iam::123456789012:user/app is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:123456789012:key/abc',
        ),
        false,
        /KMS refused to decrypt.*kms:Decrypt/,
      ],
      [
        'AccessDeniedException',
        awsJson(400, 'AccessDeniedException', 'not authorized to perform: ssm:GetParameter'),
        false,
        /access denied.*IAM policy/,
      ],
      ['ThrottlingException', awsJson(400, 'ThrottlingException', 'Rate exceeded'), true, /throttling/],
    ];
    for (const [label, fault, transient, reason] of cases) {
      it(`${label}: a FetchError, transient ${transient}, never "not found", saying why`, async () => {
        const name = unique('kms');
        await put(name, 'sealed value');
        const ssm = ssmParameterStore({
          region: REGION,
          endpoint: proxy.url,
          credentials: CREDENTIALS,
          maxAttempts: 1,
        });
        try {
          await proxy.setFault(fault);
          const single = await ssm.fetch(ssm.ref(name), signal()).catch((e: unknown) => e);
          const batched = await ssm.fetchMany([ssm.ref(name), ssm.ref(unique('other'))], signal());
          for (const error of [single, batched[0], batched[1]]) {
            expect(error).toBeInstanceOf(FetchError);
            expect(error).not.toBeInstanceOf(SecretNotFoundError);
            expect((error as FetchError).transient).toBe(transient);
            expect((error as FetchError).message).toMatch(reason);
            expect((error as FetchError).message).toContain('aws-ssm:/tls-secrets-test/');
            const shown = inspect(error, { showHidden: true, depth: Infinity });
            expect(shown).not.toContain('sealed value');
            expect(shown).not.toContain(CREDENTIALS.secretAccessKey);
          }
          // Healthy again: the same provider reads the value.
          await proxy.setFault({ kind: 'none' });
          expect((await ssm.fetch(ssm.ref(name), signal())).value).toBe('sealed value');
        } finally {
          await ssm.close();
        }
      });
    }

    it('a resolver keeps its bundle through a KMS failure and reports it', async () => {
      const name = unique('lkg');
      const ca = (await createTestCA({ commonName: 'kept' })).certPem;
      await put(name, ca);
      const ssm = ssmParameterStore({ region: REGION, endpoint: proxy.url, credentials: CREDENTIALS });
      const resolver = createResolver({ ca: ssm.ref(name) });
      try {
        const first = await resolver.resolve();
        await put(name, (await createTestCA({ commonName: 'new' })).certPem);
        await proxy.setFault(awsJson(400, 'InvalidKeyId', 'The query key ID is not valid.'));
        const result = await resolver.refresh();
        expect(result.rotated).toBe(false);
        expect(result.errors.map((e) => e.message).join()).toMatch(/InvalidKeyId/);
        expect(await resolver.resolve()).toBe(first);
      } finally {
        await resolver.close();
        await ssm.close();
      }
    });
  });
});
