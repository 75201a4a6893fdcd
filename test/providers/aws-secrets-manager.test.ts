/**
 * The AWS Secrets Manager provider through the real SDK: against moto for everything moto does, against a tiny
 * loopback server speaking the awsJson1_1 error format for what moto cannot produce (throttling, 5xx, access
 * denied, timeouts). SDK calls are counted with a client middleware.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, createServer as createTlsServer, type TLSSocket, type TlsOptions } from 'node:tls';
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  RotateSecretCommand,
  SecretsManagerClient,
  SecretsManagerServiceException,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { providerConformance } from 'tls-secrets/testing';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { ConfigurationError, FetchError, SecretNotFoundError } from '../../src/errors.js';
import { createResolver } from '../../src/index.js';
import { transformValue } from '../../src/transform.js';
import { createTestCA, toPfx } from '../fixtures/ca.js';
import { closeServer, listen, readAll } from '../helpers/tls.js';
import { awsOptionsSuite, CREDENTIALS, deniedByIam, nobodyListening, REGION } from './aws-options.js';

const endpoint = inject('motoEndpoint');
if (!endpoint) {
  console.warn(
    `[aws-secrets-manager] moto tests SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`,
  );
}

const signal = () => new AbortController().signal;
const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
/** A PEM field as the resolver hands it out (a list, each ending in a newline), compared by content. */
const pems = (value: unknown) => [value].flat().map((pem) => String(pem).trim());

/** A real client whose commands are counted by name (`GetSecretValue`, `BatchGetSecretValue`, …). */
function countingClient(url: string, options: { denyBatch?: boolean } = {}) {
  const client = new SecretsManagerClient({ endpoint: url, region: REGION, credentials: CREDENTIALS });
  const calls: string[] = [];
  const batchSizes: number[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = String(context.commandName).replace(/Command$/, '');
      calls.push(command);
      const ids = (args.input as { SecretIdList?: string[] }).SecretIdList;
      if (ids) batchSizes.push(ids.length);
      // What an identity without secretsmanager:BatchGetSecretValue gets; moto has no IAM.
      if (options.denyBatch && command === 'BatchGetSecretValue') {
        throw new SecretsManagerServiceException({
          name: 'AccessDeniedException',
          $fault: 'client',
          $metadata: { httpStatusCode: 400 },
          message: 'not authorized to perform: secretsmanager:BatchGetSecretValue',
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
    reset: () => calls.splice(0),
  };
}

awsOptionsSuite({
  label: 'awsSecretsManager',
  create: (options) => awsSecretsManager(options as Parameters<typeof awsSecretsManager>[0]),
  client: () => new SecretsManagerClient({ region: REGION, credentials: CREDENTIALS }),
  endpointVariable: 'AWS_ENDPOINT_URL_SECRETS_MANAGER',
});

describe('awsSecretsManager: references (no I/O)', () => {
  it('gives references to the same secret and version one id, whatever jsonKey or encoding', () => {
    const sm = awsSecretsManager({ region: REGION, credentials: CREDENTIALS });
    const plain = sm.secret('prod/api/tls', { jsonKey: 'key' });
    expect(sm.secret('prod/api/tls', { jsonKey: 'passphrase' }).id).toBe(plain.id);
    expect(sm.secret('prod/api/tls', { versionStage: 'AWSCURRENT', encoding: 'base64' }).id).toBe(plain.id);
    expect(sm.ref('prod/api/tls').id).toBe(plain.id);
    const previous = sm.secret('prod/api/tls', { versionStage: 'AWSPREVIOUS' });
    const pinned = sm.secret('prod/api/tls', { versionId: 'a1b2c3d4-5678-90ab-cdef-EXAMPLE11111' });
    expect(new Set([plain.id, previous.id, pinned.id]).size).toBe(3);
    expect(sm.secret('prod/api/tls', { versionStage: 'AWSPREVIOUS' }).id).toBe(previous.id);
    expect(plain.options).toEqual({ jsonKey: 'key' });
  });

  it('refuses bad secret ids and versions when the reference is made', () => {
    const sm = awsSecretsManager({ region: REGION, credentials: CREDENTIALS });
    expect(() => sm.secret('')).toThrow(ConfigurationError);
    expect(() => sm.secret('a?b')).toThrow(ConfigurationError);
    expect(() => sm.secret('x', { versionId: 'short' })).toThrow(ConfigurationError);
    expect(() => sm.secret('x', { versionStage: '' })).toThrow(ConfigurationError);
  });
});

/** A loopback stand-in for the errors moto cannot produce: answers every call per `reply`. */
async function fakeAws(reply: (target: string, req: IncomingMessage, res: ServerResponse) => void) {
  const targets: string[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '').replace('secretsmanager.', '');
      targets.push(target);
      reply(target, req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    targets,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function awsError(res: ServerResponse, status: number, type: string) {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
  res.end(JSON.stringify({ __type: type, message: `${type} from the stand-in` }));
}

describe('awsSecretsManager: errors moto cannot produce (loopback stand-in)', () => {
  const cases: [string, number, boolean, number][] = [
    // [error, HTTP status, transient, attempts with the default maxAttempts of 3]
    ['ThrottlingException', 400, true, 3],
    ['InternalServiceError', 500, true, 3],
    ['AccessDeniedException', 400, false, 1],
    ['DecryptionFailure', 400, false, 1],
    // Expired credentials: the default chain fetches fresh ones on the next call, so it is worth trying again.
    ['ExpiredTokenException', 400, true, 1],
  ];
  for (const [type, status, transient, attempts] of cases) {
    it(`${type} becomes a FetchError with transient ${transient} after ${attempts} attempt(s)`, async () => {
      const fake = await fakeAws((_target, _req, res) => awsError(res, status, type));
      const sm = awsSecretsManager({ region: REGION, endpoint: fake.url, credentials: CREDENTIALS });
      try {
        const error = await sm.fetch(sm.secret('prod/api/tls'), signal()).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(FetchError);
        expect((error as FetchError).transient).toBe(transient);
        expect((error as FetchError).message).toContain(type);
        expect((error as FetchError).message).toContain('aws-secrets-manager:prod/api/tls');
        expect(((error as FetchError).cause as Error).name).toBe(type);
        expect(fake.targets).toEqual(Array(attempts).fill('GetSecretValue'));
      } finally {
        await sm.close();
        await fake.close();
      }
    });
  }

  it('a denied batch falls back to single reads, and is not tried again by that provider', async () => {
    const fake = await fakeAws((target, _req, res) => {
      if (target === 'BatchGetSecretValue') return awsError(res, 400, 'AccessDeniedException');
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(
        JSON.stringify({ Name: 'n', VersionId: 'v1', SecretString: 'value', VersionStages: ['AWSCURRENT'] }),
      );
    });
    const sm = awsSecretsManager({
      region: REGION,
      endpoint: fake.url,
      credentials: CREDENTIALS,
      minBatchSize: 2,
    });
    try {
      const refs = [sm.secret('a'), sm.secret('b'), sm.secret('c')];
      const first = await sm.fetchMany(refs, signal());
      expect(first?.map((r) => (r instanceof Error ? r : r.value))).toEqual(['value', 'value', 'value']);
      expect(fake.targets.filter((t) => t === 'BatchGetSecretValue')).toHaveLength(1);
      fake.targets.splice(0);
      await sm.fetchMany(refs, signal());
      expect(fake.targets).toEqual(['GetSecretValue', 'GetSecretValue', 'GetSecretValue']);
    } finally {
      await sm.close();
      await fake.close();
    }
  });

  it.each([
    // Throttling as the SDK's retry classification knows it: by name, and by HTTP 429 whatever the name.
    ['ThrottlingException', 400],
    ['TooManyRequestsException', 400],
    ['SomethingNew', 429],
  ])(
    'a batch throttled with %s (HTTP %i) is tried once and its secrets are read one by one at once',
    async (type, status) => {
      const fake = await fakeAws((target, _req, res) => {
        if (target === 'BatchGetSecretValue') return awsError(res, status, type);
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(
          JSON.stringify({
            Name: 'n',
            VersionId: 'v1',
            SecretString: 'value',
            VersionStages: ['AWSCURRENT'],
          }),
        );
      });
      // The SDK's default 3 attempts: a throttled batch must not use them.
      const sm = awsSecretsManager({
        region: REGION,
        endpoint: fake.url,
        credentials: CREDENTIALS,
        minBatchSize: 2,
      });
      try {
        const results = await sm.fetchMany([sm.secret('a'), sm.secret('b')], signal());
        expect(results.map((r) => (r instanceof Error ? r : r.value))).toEqual(['value', 'value']);
        expect(fake.targets).toEqual(['BatchGetSecretValue', 'GetSecretValue', 'GetSecretValue']);
      } finally {
        await sm.close();
        await fake.close();
      }
    },
  );

  it('a throttled batch gives every reference in it a transient FetchError', async () => {
    const fake = await fakeAws((_target, _req, res) => awsError(res, 400, 'ThrottlingException'));
    const sm = awsSecretsManager({
      region: REGION,
      endpoint: fake.url,
      credentials: CREDENTIALS,
      maxAttempts: 1,
    });
    try {
      const results = await sm.fetchMany([sm.secret('a'), sm.secret('b')], signal());
      expect(results).toHaveLength(2);
      for (const [i, result] of results.entries()) {
        expect(result).toBeInstanceOf(FetchError);
        expect((result as FetchError).transient).toBe(true);
        expect((result as FetchError).message).toContain(['a', 'b'][i]);
      }
    } finally {
      await sm.close();
      await fake.close();
    }
  });

  it('times out a silent server per attempt, and stops at once when the signal aborts', async () => {
    const fake = await fakeAws(() => undefined);
    const sm = awsSecretsManager({
      region: REGION,
      endpoint: fake.url,
      credentials: CREDENTIALS,
      maxAttempts: 1,
      requestTimeoutMs: 200,
    });
    try {
      let started = Date.now();
      const timedOut = await sm.fetch(sm.secret('slow'), signal()).catch((e: unknown) => e);
      expect(timedOut).toBeInstanceOf(FetchError);
      expect((timedOut as FetchError).transient).toBe(true);
      expect((timedOut as FetchError).message).toContain('timed out');
      expect(Date.now() - started).toBeLessThan(3_000);

      // The default 5 s attempt timeout cannot be what ends this one.
      const patient = awsSecretsManager({ region: REGION, endpoint: fake.url, credentials: CREDENTIALS });
      const controller = new AbortController();
      started = Date.now();
      setTimeout(() => controller.abort(), 50);
      const aborted = await patient.fetch(patient.secret('slow'), controller.signal).catch((e: unknown) => e);
      expect(aborted).toBeInstanceOf(FetchError);
      expect((aborted as FetchError).message).toContain('aborted');
      expect(Date.now() - started).toBeLessThan(1_500);
      await patient.close();
    } finally {
      await sm.close();
      await fake.close();
    }
  });

  it('an unreachable endpoint is a transient FetchError', async () => {
    const fake = await fakeAws(() => undefined);
    const url = fake.url;
    await fake.close();
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS, maxAttempts: 1 });
    const error = await sm.fetch(sm.secret('x'), signal()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FetchError);
    expect((error as FetchError).transient).toBe(true);
    await sm.close();
  });
});

describe.skipIf(!endpoint)('awsSecretsManager against moto', () => {
  const url = endpoint;
  let admin: SecretsManagerClient;

  beforeAll(() => {
    admin = new SecretsManagerClient({ endpoint: url, region: REGION, credentials: CREDENTIALS });
  });
  afterAll(() => {
    admin?.destroy();
  });

  /** Creates the secret, or adds a new AWSCURRENT version; returns the new VersionId. */
  async function put(name: string, value: string | Uint8Array): Promise<string> {
    const body = typeof value === 'string' ? { SecretString: value } : { SecretBinary: value };
    try {
      return (await admin.send(new CreateSecretCommand({ Name: name, ...body }))).VersionId ?? '';
    } catch (err) {
      if (!(err instanceof ResourceExistsException)) throw err;
      return (await admin.send(new PutSecretValueCommand({ SecretId: name, ...body }))).VersionId ?? '';
    }
  }

  providerConformance(
    {
      name: 'aws-secrets-manager (moto)',
      capabilities: {
        batch: true,
        watch: 'the service sends no notifications; the resolver probes versions',
        probe: true,
        deny: true,
        unreachable: true,
        abort: true,
        binary: true,
        closeEndsFetch: true,
      },
      async setup() {
        const counted = countingClient(url);
        const provider = awsSecretsManager({ client: counted.client });
        const others: { close(): Promise<void> }[] = [];
        const alike = (endpoint: string) => {
          const other = awsSecretsManager({
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
            await put(`${name}`, value);
          },
          ref: (name, options) => provider.secret(`${name}`, options),
          storeCalls: () => counted.calls.length,
          async denied() {
            await put(`denied`, 'not for this identity');
            const proxy = await deniedByIam(url);
            others.push(proxy);
            return alike(proxy.url).secret(`denied`);
          },
          unreachable: async () => alike(await nobodyListening()).secret(`anything`),
          async close() {
            for (const other of others) await other.close();
            counted.client.destroy();
          },
        };
      },
    },
    { describe, it },
  );

  it('reads SecretString as text and SecretBinary as bytes, with the VersionId as version', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const ca = await createTestCA();
    const text = unique('pem');
    const binary = unique('bin');
    const textVersion = await put(text, ca.certPem);
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    const binaryVersion = await put(binary, bytes);
    const [t, b] = await Promise.all([
      sm.fetch(sm.secret(text), signal()),
      sm.fetch(sm.secret(binary), signal()),
    ]);
    expect(t).toEqual({ value: ca.certPem, version: textVersion });
    expect(b.value).toBeInstanceOf(Uint8Array);
    expect([...(b.value as Uint8Array)]).toEqual([...bytes]);
    expect(b.version).toBe(binaryVersion);
    await sm.close();
  });

  it('takes the endpoint from AWS_ENDPOINT_URL_SECRETS_MANAGER and credentials from the default chain', async () => {
    const name = unique('env');
    await put(name, 'from env');
    vi.stubEnv('AWS_ENDPOINT_URL_SECRETS_MANAGER', url);
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDENV');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'env-secret');
    vi.stubEnv('AWS_REGION', REGION);
    try {
      const sm = awsSecretsManager();
      expect((await sm.fetch(sm.secret(name), signal())).value).toBe('from env');
      await sm.close();
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('one fetch serves several jsonKey references to the same JSON secret', async () => {
    const counted = countingClient(url);
    const sm = awsSecretsManager({ client: counted.client });
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'json.test' });
    const name = unique('json');
    await put(name, JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem, note: 'unused' }));
    const resolver = createResolver({
      key: sm.secret(name, { jsonKey: 'key' }),
      cert: sm.secret(name, { jsonKey: 'cert' }),
    });
    try {
      const options = await resolver.resolve();
      expect(pems(options.cert)).toEqual(pems(leaf.certPem));
      expect(counted.calls).toEqual(['GetSecretValue']);
      const missing = sm.secret(name, { jsonKey: 'absent' });
      const raw = await sm.fetch(missing, signal());
      expect(() => transformValue(missing, raw.value)).toThrow(/no key "absent"/);
    } finally {
      await resolver.close();
      await sm.close();
      counted.client.destroy();
    }
  });

  it('a PFX stored as SecretBinary with its passphrase in a JSON secret serves TLS', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'pfx.test', dnsNames: ['localhost'] });
    const passphrase = `pw-${randomUUID()}`;
    const pfxName = unique('pfx');
    const tlsName = unique('tls');
    await put(pfxName, toPfx(leaf, passphrase));
    await put(tlsName, JSON.stringify({ passphrase }));
    const resolver = createResolver({
      pfx: sm.secret(pfxName),
      passphrase: sm.secret(tlsName, { jsonKey: 'passphrase' }),
    });
    const server = createTlsServer((await resolver.resolve()) as TlsOptions, (socket) =>
      socket.end('hello over pfx'),
    );
    try {
      const port = await listen(server);
      const socket: TLSSocket = connect({ port, host: '127.0.0.1', servername: 'localhost', ca: ca.certPem });
      const received = await readAll(socket);
      expect(received).toBe('hello over pfx');
      expect(socket.getPeerCertificate().subject.CN).toBe('pfx.test');
      expect(socket.authorized).toBe(true);
    } finally {
      await closeServer(server);
      await resolver.close();
      await sm.close();
    }
  });

  it('pins reads to a VersionStage or a VersionId', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('pin');
    const v1 = await put(name, 'one');
    const v2 = await put(name, 'two');
    const v3 = (
      await admin.send(
        new PutSecretValueCommand({ SecretId: name, SecretString: 'three', VersionStages: ['STAGING'] }),
      )
    ).VersionId as string;
    const refs = {
      current: sm.secret(name),
      previous: sm.secret(name, { versionStage: 'AWSPREVIOUS' }),
      staging: sm.secret(name, { versionStage: 'STAGING' }),
      first: sm.secret(name, { versionId: v1 }),
      firstAsPrevious: sm.secret(name, { versionId: v1, versionStage: 'AWSPREVIOUS' }),
    };
    const read = async (ref: (typeof refs)[keyof typeof refs]) => {
      const result = await sm.fetch(ref, signal());
      return [result.value, result.version, await sm.currentVersion(ref, signal())];
    };
    expect(await read(refs.current)).toEqual(['two', v2, v2]);
    expect(await read(refs.previous)).toEqual(['one', v1, v1]);
    expect(await read(refs.staging)).toEqual(['three', v3, v3]);
    expect(await read(refs.first)).toEqual(['one', v1, v1]);
    expect(await read(refs.firstAsPrevious)).toEqual(['one', v1, v1]);

    // Moving AWSCURRENT to the staged version is a rotation: the probe reports it before any read.
    await admin.send(
      new UpdateSecretVersionStageCommand({
        SecretId: name,
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: v3,
        RemoveFromVersionId: v2,
      }),
    );
    expect(await sm.currentVersion(refs.current, signal())).toBe(v3);
    expect(await sm.currentVersion(refs.previous, signal())).toBe(v2);
    expect(await sm.currentVersion(refs.first, signal())).toBe(v1);
    expect((await sm.fetch(refs.current, signal())).value).toBe('three');
    await sm.close();
  });

  it('a missing secret, stage or version is a SecretNotFoundError', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('nf');
    await put(name, 'present');
    for (const ref of [
      sm.secret(unique('absent')),
      sm.secret(name, { versionStage: 'NO_SUCH_STAGE' }),
      sm.secret(name, { versionId: randomUUID() }),
    ]) {
      const error = await sm.fetch(ref, signal()).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SecretNotFoundError);
      expect((error as Error).message).toContain(ref.id);
    }
    expect(
      await sm.currentVersion(sm.secret(name, { versionStage: 'NO_SUCH_STAGE' }), signal()),
    ).toBeUndefined();
    await sm.close();
  });

  it('a secret scheduled for deletion is a permanent FetchError saying so, single or batched', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('del');
    const other = unique('kept');
    await put(name, 'doomed');
    await put(other, 'kept');
    await admin.send(new DeleteSecretCommand({ SecretId: name, RecoveryWindowInDays: 7 }));
    const ref = sm.secret(name);
    const checks = [
      await sm.fetch(ref, signal()).catch((e: unknown) => e),
      await sm.currentVersion(ref, signal()).catch((e: unknown) => e),
      (await sm.fetchMany([ref, sm.secret(other)], signal()))[0],
    ];
    for (const error of checks) {
      expect(error).toBeInstanceOf(FetchError);
      expect((error as FetchError).transient).toBe(false);
      expect((error as FetchError).message).toMatch(/scheduled for deletion/);
      expect((error as FetchError).message).toContain(name);
    }
    await sm.close();
  });

  it('batch results keep the order of the references, with per-secret errors', async () => {
    const counted = countingClient(url);
    const sm = awsSecretsManager({ client: counted.client, minBatchSize: 2 });
    const [a, b] = [unique('a'), unique('b')];
    const va = await put(a, 'A');
    await put(b, 'B1');
    const vb2 = await put(b, 'B2');
    const refs = [
      sm.secret(b),
      sm.secret(unique('missing')),
      sm.secret(a, { jsonKey: 'x' }),
      sm.secret(b, { versionStage: 'AWSPREVIOUS' }),
      sm.secret(a),
    ];
    const results = await sm.fetchMany(refs, signal());
    expect(results.map((r) => (r instanceof Error ? r.constructor.name : [r.value, r.version]))).toEqual([
      ['B2', vb2],
      'SecretNotFoundError',
      ['A', va],
      ['B1', expect.any(String)],
      ['A', va],
    ]);
    // Three current secrets in one batch, the AWSPREVIOUS read alone.
    expect(counted.count('BatchGetSecretValue')).toBe(1);
    expect(counted.count('GetSecretValue')).toBe(1);
    await sm.close();
    counted.client.destroy();
  });

  it('a batch denied by IAM falls back to GetSecretValue and is not retried for the provider', async () => {
    const counted = countingClient(url, { denyBatch: true });
    const sm = awsSecretsManager({ client: counted.client, minBatchSize: 2 });
    const names = [unique('d'), unique('d'), unique('d')];
    for (const name of names) await put(name, `value of ${name}`);
    const refs = names.map((name) => sm.secret(name));
    const first = await sm.fetchMany(refs, signal());
    expect(first.map((r) => (r instanceof Error ? r : r.value))).toEqual(names.map((n) => `value of ${n}`));
    expect(counted.count('BatchGetSecretValue')).toBe(1);
    expect(counted.count('GetSecretValue')).toBe(3);
    counted.reset();
    await sm.fetchMany(refs, signal());
    expect(counted.calls).toEqual(['GetSecretValue', 'GetSecretValue', 'GetSecretValue']);
    await sm.close();
    counted.client.destroy();
  });

  it('reports the NextRotationDate from DescribeSecret so the resolver checks just after it', async () => {
    const sm = awsSecretsManager({ region: REGION, endpoint: url, credentials: CREDENTIALS });
    const name = unique('rot');
    const v1 = await put(name, 'before rotation');
    const ref = sm.secret(name);
    expect(await sm.currentVersion(ref, signal())).toBe(v1);
    // Without a Lambda moto rotates at once; RotateImmediately=false keeps the value in the new version.
    await admin.send(
      new RotateSecretCommand({
        SecretId: name,
        RotateImmediately: false,
        RotationRules: { AutomaticallyAfterDays: 7 },
      }),
    );
    const probe = await sm.currentVersion(ref, signal());
    if (typeof probe !== 'object') throw new Error('expected a probe with changesAt');
    expect(probe.version).not.toBe(v1);
    expect((await sm.fetch(ref, signal())).version).toBe(probe.version);
    const inDays = ((probe.changesAt?.getTime() ?? 0) - Date.now()) / 86_400_000;
    expect(inDays).toBeGreaterThan(6.9);
    expect(inDays).toBeLessThanOrEqual(7);
    // A pinned version never rotates.
    expect(await sm.currentVersion(sm.secret(name, { versionId: v1 }), signal())).toBe(v1);
    await sm.close();
  });

  describe('SDK call counts through createResolver', () => {
    const counted = { current: undefined as ReturnType<typeof countingClient> | undefined };
    const names: string[] = [];
    let caPems: string[] = [];

    beforeAll(async () => {
      const cas = await Promise.all(
        Array.from({ length: 45 }, (_, i) => createTestCA({ commonName: `CA ${i}` })),
      );
      caPems = cas.map((ca) => ca.certPem);
      const prefix = unique('bulk');
      for (const [i, pem] of caPems.entries()) {
        names.push(`${prefix}/ca-${i}`);
        await put(`${prefix}/ca-${i}`, pem);
      }
    });
    afterEach(() => {
      counted.current?.client.destroy();
    });

    it('45 secrets resolve in exactly 3 BatchGetSecretValue calls; a warm resolve makes none', async () => {
      const c = countingClient(url);
      counted.current = c;
      const sm = awsSecretsManager({ client: c.client });
      const resolver = createResolver({ ca: names.map((name) => sm.secret(name)) });
      try {
        const options = await resolver.resolve();
        expect(pems(options.ca)).toEqual(pems(caPems));
        expect(c.calls).toEqual(['BatchGetSecretValue', 'BatchGetSecretValue', 'BatchGetSecretValue']);
        expect(c.batchSizes.sort((a, b) => a - b)).toEqual([5, 20, 20]);
        c.reset();
        expect(await resolver.resolve()).toBe(options);
        expect(c.calls).toEqual([]);
      } finally {
        await resolver.close();
        await sm.close();
      }
    });

    it('after PutSecretValue, refresh() costs one DescribeSecret and one GetSecretValue', async () => {
      const c = countingClient(url);
      counted.current = c;
      const sm = awsSecretsManager({ client: c.client });
      const name = names[0] as string;
      const resolver = createResolver({ ca: sm.secret(name) });
      try {
        await resolver.resolve();
        expect(c.calls).toEqual(['GetSecretValue']);
        c.reset();
        const unchanged = await resolver.refresh();
        expect(unchanged.rotated).toBe(false);
        expect(c.calls).toEqual(['DescribeSecret']);
        c.reset();
        const replacement = (await createTestCA({ commonName: 'rotated CA' })).certPem;
        await put(name, replacement);
        const result = await resolver.refresh();
        expect(result.rotated).toBe(true);
        expect(c.calls.sort()).toEqual(['DescribeSecret', 'GetSecretValue']);
        expect(pems((await resolver.resolve()).ca)).toEqual(pems(replacement));
      } finally {
        await resolver.close();
        await sm.close();
      }
    });
  });
});
