/**
 * The canary suite: nothing derived from a secret is observable, on any path. Distinct canaries are planted
 * as a private key, a key passphrase, a Vault token, an AppRole secret_id, a Kubernetes JWT, an AWS secret key
 * and an AWS session token (and session ticket keys); every error path reachable on the real stores (moto, OpenBao, an OpenBao of our
 * own to seal) is provoked with a logger and OpenTelemetry attached; and every view is searched for every
 * canary in its raw, hex, base64 and SHA-256 forms (the SHA-256 prefix is the old, unkeyed version form):
 * errors with their whole cause chain, inspect (showHidden, depth Infinity), JSON.stringify, String(),
 * events, status(), logger lines, metric attributes, the CLI's stdout and stderr (check and watch, with and
 * without --json), and this process's own stderr and warnings.
 *
 * It replaced an older canary test that ran Vault against an in-process stand-in and looked for raw values only.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { env } from '../../providers/env.js';
import { file } from '../../providers/file.js';
import { memory } from '../../providers/memory.js';
import { vault } from '../../providers/vault/index.js';
import { connect, createServer, Resolver, type TlsSecretsSpec } from '../../src/index.js';
import { createTestCA, encryptKey, type Issued, randomTicketKeys, type TestCA } from '../fixtures/ca.js';
import { startBao } from '../helpers/bao.js';
import { skewedClock } from '../helpers/clock.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { closeServer, listen } from '../helpers/tls.js';
import { baoApi, setupAppRole } from './bao-api.js';
import { Canaries, canaryValue, Views } from './canaries.js';
import { runCli } from './cli-run.js';

const motoEndpoint = inject('motoEndpoint');
const vaultAddr = inject('vaultAddr');
const vaultToken = inject('vaultToken');
const NO_MOTO = !motoEndpoint;
const NO_BAO = !vaultAddr;
if (NO_MOTO) console.warn(`[canary] AWS parts SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);
if (NO_BAO) console.warn('[canary] Vault parts SKIPPED: no OpenBao server');

/** Short timeouts: every failure path settles well inside the suite's budget on a loaded machine. */
const BACKOFF_CAP_MS = 60_000;
const OPTIONS = {
  refreshIntervalMs: 3_600_000,
  retryInitialDelayMs: BACKOFF_CAP_MS,
  retryMaxDelayMs: BACKOFF_CAP_MS,
  fetchTimeoutMs: 800,
} as const;
/** Real timers, a `now` that provoke() moves past each backoff step. */
const clock = skewedClock();
const RUN = randomBytes(3).toString('hex');

const canaries = new Canaries();
const views = new Views();
const passphrase = canaries.plant('passphrase', canaryValue('keypass'));
const wrongPassphrase = canaries.plant('passphrase', canaryValue('wrongpass'));
const vaultCanaryToken = canaries.plant('vault token', canaryValue('vaulttoken'));
const secretId = canaries.plant('approle secret_id', canaryValue('secretid'));
const jwt = canaries.plant('kubernetes jwt', canaryValue('k8sjwt'));
const awsSecretKey = canaries.plant('aws secret key', canaryValue('awssecret'));
const awsSessionToken = canaries.plant('aws session token', canaryValue('awssession'));
const awsCredentials = {
  accessKeyId: 'ASIACANARY',
  secretAccessKey: awsSecretKey,
  sessionToken: awsSessionToken,
};

let ca: TestCA;
let leaf: Issued;
/** The leaf's key, encrypted under the canary passphrase: what every store holds. */
let encryptedKey: string;
let dir: string;
const cleanups: (() => Promise<unknown>)[] = [];
const scenarios: string[] = [];

/** This process's stderr and warnings, for the whole suite: the library must add nothing to them. */
const processStderr: string[] = [];
const processWarnings: unknown[] = [];
const originalStderrWrite = process.stderr.write.bind(process.stderr);
const onWarning = (warning: unknown) => processWarnings.push(warning);

beforeAll(async () => {
  ca = await createTestCA();
  leaf = await ca.issue({ commonName: 'localhost' });
  canaries.plantKey(leaf.keyPem);
  encryptedKey = encryptKey(leaf.keyPem, passphrase);
  canaries.plantKey(encryptedKey);
  canaries.digest('private key', JSON.stringify({ key: encryptedKey, pass: passphrase }));
  canaries.digestKv('passphrase', { pass: passphrase });
  dir = await mkdtemp(join(tmpdir(), 'tls-secrets-canary-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  process.on('warning', onWarning);
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    processStderr.push(String(chunk));
    return (originalStderrWrite as (...args: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
});

afterAll(async () => {
  process.stderr.write = originalStderrWrite;
  process.off('warning', onWarning);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/** A resolver watched on every channel, closed at the end. */
async function observed(label: string, spec: TlsSecretsSpec): Promise<Resolver> {
  const resolver = new Resolver(spec, OPTIONS, { clock });
  await views.observe(resolver, label);
  cleanups.push(() => resolver.close());
  return resolver;
}

/** Provokes one failure: what refresh() (or the cold resolve()) throws is recorded with the events it causes. */
async function provoke(label: string, run: () => Promise<unknown>): Promise<unknown> {
  scenarios.push(label);
  // Past the backoff step of the failure provoked before: the resolver must reach the store again, or a
  // provocation would only replay the last error.
  clock.advance(BACKOFF_CAP_MS + 1_000);
  const result = await views.attempt(label, run);
  // refresh() reports failures in `errors` rather than throwing: each is scanned with its whole cause chain.
  const errors = (result as { errors?: unknown } | undefined)?.errors;
  if (Array.isArray(errors))
    for (const [i, error] of errors.entries()) views.value(`${label} errors[${i}]`, error);
  return result;
}

async function handshakeWith(server: Resolver, label: string, serial = leaf.serial): Promise<void> {
  const tlsServer = createServer(server, {}, (socket) => socket.end('ok'));
  const port = await listen(tlsServer);
  try {
    const client = await observed(`${label} client`, { ca: ca.certPem });
    const socket = await connect(client, { host: '127.0.0.1', port, servername: 'localhost' });
    expect(socket.getPeerCertificate().serialNumber).toBe(serial);
    socket.destroy();
  } finally {
    await closeServer(tlsServer);
  }
}

describe('canaries never show, on any view', () => {
  it('memory, file and env: bad PEM, wrong passphrase, truncated JSON, missing values, expiry', async () => {
    const tickets = randomTicketKeys();
    canaries.plantBytes('ticket keys', tickets);
    const store = memory({
      bundle: JSON.stringify({ key: encryptedKey, pass: passphrase }),
      cert: leaf.certPem,
      tickets,
    });
    const keyFile = join(dir, 'server.key');
    await writeFile(keyFile, encryptedKey);
    const files = file({ baseDir: dir, watch: false });
    cleanups.push(() => files.close());
    const variables: NodeJS.ProcessEnv = { TLS_PASS: passphrase };
    const vars = env({ env: variables });

    const fromMemory = await observed('memory', {
      key: {
        pem: store.ref('bundle', { jsonKey: 'key' }),
        passphrase: store.ref('bundle', { jsonKey: 'pass' }),
      },
      cert: store.ref('cert'),
      ticketKeys: store.ref('tickets'),
    });
    const fromFiles = await observed('file+env', {
      key: { pem: files.ref('server.key'), passphrase: vars.ref('TLS_PASS') },
      cert: store.ref('cert'),
    });
    await fromMemory.resolve();
    await fromFiles.resolve();
    await handshakeWith(fromMemory, 'memory');

    const good = JSON.stringify({ key: encryptedKey, pass: passphrase });
    const other = await ca.issue({ commonName: 'localhost' });
    canaries.plantKey(other.keyPem);
    const bad: [string, string][] = [
      ['memory: wrong passphrase', JSON.stringify({ key: encryptedKey, pass: wrongPassphrase })],
      [
        'memory: bad PEM',
        JSON.stringify({
          key: `-----BEGIN PRIVATE KEY-----\n${passphrase}\n-----END PRIVATE KEY-----`,
          pass: passphrase,
        }),
      ],
      ['memory: truncated JSON', good.slice(0, good.length / 2)],
      [
        'memory: unencrypted key for the wrong certificate',
        JSON.stringify({ key: other.keyPem, pass: passphrase }),
      ],
    ];
    for (const [label, value] of bad) {
      store.set('bundle', value);
      await provoke(label, () => fromMemory.refresh());
    }
    store.set('bundle', good);
    store.set('cert', `-----BEGIN CERTIFICATE-----\n${passphrase}\n-----END CERTIFICATE-----\n`);
    await provoke('memory: bad certificate PEM', () => fromMemory.refresh());
    store.set('cert', leaf.certPem);
    store.delete('cert');
    await provoke('memory: missing key', () => fromMemory.refresh());
    store.set('cert', leaf.certPem);
    store.set('tickets', Buffer.concat([tickets, tickets]).subarray(0, 40));
    await provoke('memory: ticket keys of the wrong length', () => fromMemory.refresh());
    store.set('tickets', tickets);

    // A rotation to a new key under a new passphrase: rotate events, logger lines and status show it.
    const rotatedPassphrase = canaries.plant('passphrase', canaryValue('rotatedpass'));
    const rotatedBundle = JSON.stringify({
      key: encryptKey(other.keyPem, rotatedPassphrase),
      pass: rotatedPassphrase,
    });
    canaries.digest('passphrase', rotatedBundle);
    store.set('bundle', rotatedBundle);
    store.set('cert', other.certPem);
    await provoke('memory: rotation', () => fromMemory.refresh());
    await handshakeWith(fromMemory, 'memory rotated', other.serial);

    variables.TLS_PASS = wrongPassphrase;
    await provoke('env: wrong passphrase', () => fromFiles.refresh());
    delete variables.TLS_PASS;
    await provoke('env: unset variable', () => fromFiles.refresh());
    variables.TLS_PASS = passphrase;
    await writeFile(keyFile, encryptedKey.slice(0, encryptedKey.length / 2));
    await provoke('file: truncated PEM', () => fromFiles.refresh());
    await rm(keyFile);
    await provoke('file: missing file', () => fromFiles.refresh());
    await writeFile(keyFile, encryptedKey);
    await fromFiles.refresh();

    // A certificate that expires while the store serves garbage: expiring, expired, then the typed error.
    const short = await ca.issue({
      commonName: 'localhost',
      // On the skewed clock's time, which provoke() has moved forward.
      notBefore: new Date(clock.now() - 1_000),
      notAfter: new Date(clock.now() + 1_500),
    });
    const shortStore = memory({
      key: encryptKey(short.keyPem, passphrase),
      pass: passphrase,
      cert: short.certPem,
    });
    canaries.plantKey(short.keyPem);
    const shortLived = await observed('short-lived', {
      key: { pem: shortStore.ref('key'), passphrase: shortStore.ref('pass') },
      cert: shortStore.ref('cert'),
    });
    const expired = new Promise((resolve) => shortLived.once('expired', resolve));
    await shortLived.resolve();
    shortStore.set('key', passphrase);
    await expired;
    await provoke('memory: expired certificate, store serving garbage', () => shortLived.resolve());

    for (const [label, resolver] of [
      ['memory', fromMemory],
      ['file+env', fromFiles],
      ['short-lived', shortLived],
    ] as const) {
      await views.snapshot(resolver, label);
    }
    views.value('memory provider', store);
    views.value('file provider', files);
    views.value('env provider', vars);
  });

  describe.skipIf(NO_MOTO)('AWS Secrets Manager on moto, with temporary credentials', () => {
    const name = `canary-${RUN}`;

    it('404, 5xx and 4xx bodies that echo the request, timeouts, refused, truncated JSON, bad material', async () => {
      const admin = new SecretsManagerClient({
        endpoint: motoEndpoint,
        region: 'us-east-1',
        credentials: awsCredentials,
      });
      await admin.send(
        new CreateSecretCommand({
          Name: name,
          SecretString: JSON.stringify({ key: encryptedKey, pass: passphrase }),
        }),
      );
      const proxy = await startFaultProxy(motoEndpoint);
      cleanups.push(() => proxy.close());
      const aws = awsSecretsManager({
        endpoint: proxy.url,
        region: 'us-east-1',
        credentials: awsCredentials,
        maxAttempts: 1,
        requestTimeoutMs: 600,
      });
      cleanups.push(() => aws.close());
      const resolver = await observed('aws', {
        key: { pem: aws.secret(name, { jsonKey: 'key' }), passphrase: aws.secret(name, { jsonKey: 'pass' }) },
        cert: leaf.certPem,
      });
      await resolver.resolve();
      await handshakeWith(resolver, 'aws');

      const echo = (status: number, body: (request: string) => string) =>
        proxy.setFault({
          kind: 'echo',
          status,
          headers: { 'Content-Type': 'application/x-amz-json-1.1' },
          body,
        });
      const faults: [string, () => Promise<void>][] = [
        [
          'aws: 500 echoing the request',
          () => echo(500, (r) => JSON.stringify({ __type: 'InternalFailure', message: r })),
        ],
        [
          'aws: 503 echoing the request',
          () => echo(503, (r) => JSON.stringify({ __type: 'ServiceUnavailable', message: r })),
        ],
        [
          'aws: 403 echoing the request',
          () => echo(403, (r) => JSON.stringify({ __type: 'AccessDeniedException', message: r })),
        ],
        ['aws: 400 with the request as plain text', () => echo(400, (r) => r)],
        [
          'aws: 200 with truncated JSON holding the request',
          () => echo(200, (r) => JSON.stringify({ ARN: r }).slice(0, -9)),
        ],
        ['aws: hung store (timeout)', () => proxy.setFault({ kind: 'hang' })],
        ['aws: connection refused', () => proxy.setFault({ kind: 'refused' })],
      ];
      for (const [label, fault] of faults) {
        await fault();
        await provoke(label, () => resolver.refresh());
      }
      await proxy.setFault({ kind: 'none' });

      const put = (SecretString: string) =>
        admin.send(new PutSecretValueCommand({ SecretId: name, SecretString }));
      await put(JSON.stringify({ key: encryptedKey, pass: wrongPassphrase }));
      await provoke('aws: wrong passphrase', () => resolver.refresh());
      await put(JSON.stringify({ key: encryptedKey, pass: passphrase }).slice(0, 60));
      await provoke('aws: truncated JSON secret', () => resolver.refresh());
      await put(JSON.stringify({ key: encryptedKey, pass: passphrase }));
      admin.destroy();

      const missing = await observed('aws missing', { cert: aws.secret(`${name}-missing`) });
      await provoke('aws: 404 ResourceNotFoundException', () => missing.resolve());
      await views.snapshot(resolver, 'aws');
      await views.snapshot(missing, 'aws missing');
      views.value('aws provider', aws);
    });
  });

  describe.skipIf(NO_BAO)('Vault on real OpenBao: token, AppRole and Kubernetes auth', () => {
    const api = baoApi(vaultAddr, vaultToken);
    const approle = `canary-approle-${RUN}`;
    const k8s = `canary-k8s-${RUN}`;
    const kv1 = `canary-kv1-${RUN}`;

    it('403, 404, 5xx and 400 logins that echo the request, timeouts, truncated JSON, bad material', async () => {
      await api('POST', 'auth/token/create', { id: vaultCanaryToken, policies: ['default'], ttl: '10m' });
      const role = await setupAppRole(api, approle, `canary-${RUN}`, [`${kv1}/*`]);
      const roleId = role.roleId;
      await api('POST', `auth/${approle}/role/canary/custom-secret-id`, { secret_id: secretId });
      await api('POST', `sys/auth/${k8s}`, { type: 'kubernetes' });
      await api('POST', `auth/${k8s}/config`, {
        kubernetes_host: 'https://127.0.0.1:1',
        disable_local_ca_jwt: true,
        kubernetes_ca_cert: ca.certPem,
      });
      await api('POST', `auth/${k8s}/role/canary`, {
        bound_service_account_names: ['*'],
        bound_service_account_namespaces: ['*'],
        token_policies: ['default'],
      });
      await api('POST', `sys/mounts/${kv1}`, { type: 'kv', options: { version: '1' } });
      await api('POST', `${kv1}/app`, { pass: passphrase });
      await api('POST', `secret/data/canary-${RUN}/tls`, { data: { key: encryptedKey, pass: passphrase } });
      await writeFile(join(dir, 'k8s-token'), jwt);
      const proxy = await startFaultProxy(vaultAddr);
      cleanups.push(() => proxy.close());
      cleanups.push(() => api('DELETE', `sys/auth/${approle}`));
      cleanups.push(() => api('DELETE', `sys/auth/${k8s}`));
      cleanups.push(() => api('DELETE', `sys/mounts/${kv1}`));
      const byAppRole = vault({
        name: 'vault-approle',
        endpoint: proxy.url,
        auth: { appRole: { roleId, secretId, mount: approle } },
        requestTimeoutMs: 600,
      });
      const byToken = vault({ name: 'vault-token', endpoint: proxy.url, auth: { token: vaultCanaryToken } });
      const byK8s = vault({
        name: 'vault-k8s',
        endpoint: proxy.url,
        auth: { kubernetes: { role: 'canary', jwtPath: join(dir, 'k8s-token'), mount: k8s } },
      });
      for (const v of [byAppRole, byToken, byK8s]) cleanups.push(() => v.close());
      const path = `secret/canary-${RUN}/tls`;
      const resolver = await observed('vault', {
        key: { pem: byAppRole.kv(path, { field: 'key' }), passphrase: byAppRole.kv(path, { field: 'pass' }) },
        cert: leaf.certPem,
      });
      await resolver.resolve();
      await handshakeWith(resolver, 'vault');
      // The passphrase from KV v1: its version is derived from the map, and shown in status and events.
      const kv1Pass = await observed('vault kv1', {
        key: {
          pem: byAppRole.kv(path, { field: 'key' }),
          passphrase: byAppRole.kv(`${kv1}/app`, { field: 'pass' }),
        },
        cert: leaf.certPem,
      });
      await kv1Pass.resolve();
      expect(kv1Pass.status().fields.find((f) => f.field === 'key.passphrase')?.version).toBeDefined();
      const denied = await observed('vault token', { cert: byToken.kv(path, { field: 'pass' }) });
      await provoke('vault: 403 for a token without the policy (real server)', () => denied.resolve());
      const k8sResolver = await observed('vault k8s', { cert: byK8s.kv(path, { field: 'pass' }) });
      await provoke('vault: Kubernetes login refused (real server)', () => k8sResolver.resolve());
      const missing = await observed('vault missing', {
        cert: byAppRole.kv(`secret/canary-${RUN}/none`, { field: 'x' }),
      });
      await provoke('vault: 404 (real server)', () => missing.resolve());

      const echo = (status: number, body: (request: string) => string) =>
        proxy.setFault({ kind: 'echo', status, headers: { 'Content-Type': 'application/json' }, body });
      const errorsOf = (r: string) => JSON.stringify({ errors: [`1 error occurred: ${r}`, r] });
      const faults: [string, () => Promise<void>][] = [
        ['vault: 500 echoing the request', () => echo(500, errorsOf)],
        ['vault: 503 echoing the request', () => echo(503, errorsOf)],
        ['vault: 403 echoing the request', () => echo(403, errorsOf)],
        ['vault: 400 echoing the request', () => echo(400, errorsOf)],
        [
          'vault: 200 with truncated JSON holding the request',
          () => echo(200, (r) => errorsOf(r).slice(0, -9)),
        ],
        ['vault: hung store (timeout)', () => proxy.setFault({ kind: 'hang' })],
        ['vault: connection refused', () => proxy.setFault({ kind: 'refused' })],
      ];
      for (const [label, fault] of faults) {
        await fault();
        await provoke(label, () => resolver.refresh());
        await provoke(`${label}, Kubernetes login`, () => k8sResolver.resolve());
        await provoke(`${label}, token auth`, () => denied.resolve());
      }
      // A login that fails while the proxy echoes: the AppRole body (secret_id) is in the answer.
      await echo(400, errorsOf);
      const fresh = vault({
        name: 'vault-approle-2',
        endpoint: proxy.url,
        auth: { appRole: { roleId, secretId, mount: approle } },
      });
      cleanups.push(() => fresh.close());
      const freshResolver = await observed('vault login', { cert: fresh.kv(path, { field: 'pass' }) });
      await provoke('vault: 400 AppRole login echoing the request', () => freshResolver.resolve());
      await proxy.setFault({ kind: 'none' });

      await api('POST', `secret/data/canary-${RUN}/tls`, {
        data: { key: encryptedKey, pass: wrongPassphrase },
      });
      await provoke('vault: wrong passphrase', () => resolver.refresh());
      await api('POST', `secret/data/canary-${RUN}/tls`, {
        data: {
          key: `-----BEGIN ENCRYPTED PRIVATE KEY-----\n${passphrase}\n-----END ENCRYPTED PRIVATE KEY-----`,
          pass: passphrase,
        },
      });
      await provoke('vault: bad PEM', () => resolver.refresh());

      for (const [label, r] of [
        ['vault', resolver],
        ['vault kv1', kv1Pass],
        ['vault token', denied],
        ['vault k8s', k8sResolver],
        ['vault missing', missing],
        ['vault login', freshResolver],
      ] as const) {
        await views.snapshot(r, label);
      }
      for (const v of [byAppRole, byToken, byK8s, fresh]) views.value(`provider ${v.name}`, v);
    });

    it('sealed: an OpenBao of our own, sealed for real', async () => {
      const bao = await startBao();
      if (typeof bao === 'string') throw new Error(`cannot start an OpenBao of our own: ${bao}`);
      cleanups.push(() => bao.close());
      const own = baoApi(bao.url, bao.rootToken);
      await own('POST', 'auth/token/create', { id: vaultCanaryToken, policies: ['root'], ttl: '10m' });
      await own('POST', 'secret/data/tls', { data: { key: encryptedKey, pass: passphrase } });
      const v = vault({ name: 'vault-sealed', endpoint: bao.url, auth: { token: vaultCanaryToken } });
      cleanups.push(() => v.close());
      const resolver = await observed('vault sealed', {
        key: { pem: v.kv('secret/tls', { field: 'key' }), passphrase: v.kv('secret/tls', { field: 'pass' }) },
        cert: leaf.certPem,
      });
      await resolver.resolve();
      await bao.seal();
      const sealed = await provoke('vault: sealed (real seal)', () => resolver.refresh());
      expect(String((sealed as { errors?: unknown[] }).errors?.[0])).toMatch(/sealed/);
      await views.snapshot(resolver, 'vault sealed');
    });
  });

  it('the CLI: check and watch, with and without --json, on file/env, Vault and AWS configs', async () => {
    await writeFile(join(dir, 'cli.key'), encryptedKey);
    await writeFile(join(dir, 'cli.crt'), leaf.certPem);
    const configs: Record<string, object> = {
      file: {
        providers: { certs: { type: 'file', watch: false }, vars: { type: 'env' } },
        tls: { key: { pem: 'certs:cli.key', passphrase: 'vars:TLS_CANARY_PASS' }, cert: 'certs:cli.crt' },
      },
    };
    if (!NO_BAO) {
      configs.vault = {
        providers: { v: { type: 'vault', endpoint: vaultAddr }, certs: { type: 'file', watch: false } },
        tls: {
          key: { pem: 'certs:cli.key', passphrase: `v:secret/canary-${RUN}/tls#pass` },
          cert: 'certs:cli.crt',
        },
      };
    }
    let awsProxy: FaultProxy | undefined;
    if (!NO_MOTO) {
      awsProxy = await startFaultProxy(motoEndpoint);
      cleanups.push(() => awsProxy?.close() ?? Promise.resolve());
      await awsProxy.setFault({
        kind: 'echo',
        status: 500,
        headers: { 'Content-Type': 'application/x-amz-json-1.1' },
        body: (r) => JSON.stringify({ __type: 'InternalFailure', message: r }),
      });
      configs.aws = {
        providers: {
          a: { type: 'aws-secrets-manager', region: 'us-east-1', endpoint: awsProxy.url, maxAttempts: 1 },
        },
        tls: {
          key: { pem: `a:canary-${RUN}#key`, passphrase: `a:canary-${RUN}#pass` },
          cert: { literal: leaf.certPem },
        },
      };
    }
    const paths: Record<string, string> = {};
    for (const [name, config] of Object.entries(configs)) {
      paths[name] = join(dir, `cli-${name}.json`);
      await writeFile(paths[name], JSON.stringify(config));
    }
    const childEnv = {
      TLS_CANARY_PASS: passphrase,
      VAULT_TOKEN: vaultCanaryToken,
      AWS_ACCESS_KEY_ID: awsCredentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: awsSecretKey,
      AWS_SESSION_TOKEN: awsSessionToken,
    };
    const ready = /ready generation|"event":"ready"/;
    const failed = /error [A-Z_]+:|"event":"error"/;
    const jobs: [string, Promise<Awaited<ReturnType<typeof runCli>>>][] = [];
    const job = (label: string, args: string[], extra: { env?: NodeJS.ProcessEnv; until?: RegExp } = {}) => {
      scenarios.push(`cli ${label}`);
      jobs.push([label, runCli(args, { ...extra, env: { ...childEnv, ...extra.env } })]);
    };
    // Bad configs: a literal passphrase written as a plain reference string, a YAML tag the library does not resolve.
    paths.literal = join(dir, 'cli-literal.json');
    await writeFile(
      paths.literal,
      JSON.stringify({
        providers: { certs: { type: 'file' } },
        tls: {
          key: { pem: 'certs:cli.key', passphrase: `${passphrase}:${wrongPassphrase}` },
          cert: 'certs:cli.crt',
        },
      }),
    );
    paths.yaml = join(dir, 'cli-tag.yaml');
    await writeFile(
      paths.yaml,
      `providers:\n  certs: { type: file }\ntls:\n  key:\n    pem: certs:cli.key\n    passphrase: !env ${passphrase}\n  cert: certs:cli.crt\n`,
    );
    job('check bad config (literal passphrase)', ['check', paths.literal]);
    job('check bad config --json (YAML tag)', ['check', paths.yaml, '--json']);
    job('watch bad config (YAML tag)', ['watch', paths.yaml]);
    const filePath = paths.file ?? '';
    job('check file', ['check', filePath]);
    job('check file --json, wrong passphrase', ['check', filePath, '--json'], {
      env: { TLS_CANARY_PASS: wrongPassphrase },
    });
    job('watch file', ['watch', filePath], { until: ready });
    job('watch file --json, wrong passphrase', ['watch', filePath, '--json'], {
      env: { TLS_CANARY_PASS: wrongPassphrase },
      until: failed,
    });
    if (paths.vault) {
      // The canary token has the default policy only: the real server answers 403.
      job('check vault (403)', ['check', paths.vault]);
      job('check vault --json (403)', ['check', paths.vault, '--json']);
      job('watch vault --json (403)', ['watch', paths.vault, '--json'], { until: failed });
    }
    if (paths.aws) {
      job('check aws (500 echoing the request)', ['check', paths.aws]);
      job('check aws --json (500 echoing the request)', ['check', paths.aws, '--json']);
      job('watch aws (500 echoing the request)', ['watch', paths.aws], { until: failed });
    }
    const runs = await Promise.all(jobs.map(async ([label, run]) => [label, await run] as const));
    for (const [label, run] of runs) {
      views.text(`cli ${label} stdout`, run.stdout);
      views.text(`cli ${label} stderr`, run.stderr);
    }
    const codes = Object.fromEntries(runs.map(([label, run]) => [label, run.code]));
    expect(codes['check file'], JSON.stringify(runs[0])).toBe(0);
    expect(codes['check file --json, wrong passphrase']).toBe(1);
    for (const [label, run] of runs) {
      if (label.includes('bad config')) expect(run.code, label).toBe(2);
      else if (label.startsWith('watch')) expect(run.stderr, label).toMatch(/SIGINT, stopping/);
      else if (label !== 'check file') expect(run.code, label).toBe(1);
    }
  });

  it('zero hits: every view, every canary, every form', () => {
    views.text('this process stderr', processStderr.join(''));
    views.value('this process warnings', processWarnings);
    const hits = views.scan(canaries);
    const comparisons = views.views.length * canaries.needles.length;
    console.info(
      `[canary] ${scenarios.length} scenarios; ${views.views.length} views (${views.errors} errors with their causes, ` +
        `${views.events} events, ${views.logLines} logger lines, ${views.metricRecords} metric records) x ` +
        `${canaries.kinds.size} canaries (${[...canaries.kinds].join(', ')}) x ${canaries.forms} forms = ` +
        `${canaries.needles.length} needles, ${comparisons} comparisons: ${hits.length} hits`,
    );
    if (hits.length > 0) {
      const byCanary = new Map<string, number>();
      for (const hit of hits) {
        const key = hit.slice(0, hit.indexOf(' in '));
        byCanary.set(key, (byCanary.get(key) ?? 0) + 1);
      }
      console.info(`[canary] hits by canary and form: ${JSON.stringify(Object.fromEntries(byCanary))}`);
    }
    expect(hits).toEqual([]);
    expect(canaries.kinds.size).toBe(8);
    expect(views.errors).toBeGreaterThan(20);
    expect(views.logLines).toBeGreaterThan(10);
    expect(views.metricRecords).toBeGreaterThan(10);
    // The AWS SDK warns about Node 20 through process.emitWarning itself; the library emits nothing.
    const own = processWarnings.filter(
      (w) =>
        (w as Error).name !== 'NodeVersionSupportWarning' &&
        !String((w as Error).message).includes('AWS SDK'),
    );
    expect(own).toEqual([]);
  });
});
