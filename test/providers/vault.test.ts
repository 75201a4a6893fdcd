/**
 * The Vault provider against the in-process Vault stand-in, or against a real Vault dev server when
 * VAULT_ADDR and VAULT_TOKEN are set (see docs/providers/vault.md). Both are seeded over the same HTTP API;
 * only the tests that need the stand-in's fault switches are skipped on a real server.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { inspect } from 'node:util';
import nodeVault from 'node-vault';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type VaultClient, vault } from '../../providers/vault/index.js';
import {
  ConfigurationError,
  createResolver,
  FetchError,
  type FetchResult,
  SecretNotFoundError,
  type TlsSecretsError,
} from '../../src/index.js';
import { createTestCA } from '../fixtures/ca.js';
import { closeServer, listen, sleep } from '../helpers/tls.js';
import { startVaultStandin, type VaultStandin } from '../vault-standin/index.js';
import { runProviderConformance } from './conformance.js';

const REAL = Boolean(process.env.VAULT_ADDR && process.env.VAULT_TOKEN);
const STANDIN_ONLY = 'stand-in only (fault switches)';

/** Everything this run creates lives under names with this prefix, so runs never collide on a real server. */
const RUN = `tlss-${randomBytes(4).toString('hex')}`;
const KV1 = `${RUN}-kv1`;
const PKI = `${RUN}-pki`;
const PKI_EMPTY = `${RUN}-pki-empty`;
const APPROLE = `${RUN}-approle`;
const K8S = `${RUN}-k8s`;
const NAMESPACE = `${RUN}-ns`;

let url = '';
let rootToken = '';
let standin: VaultStandin | undefined;
let appRoleId = '';
let deniedRoleId = '';
const written = new Set<string>();

interface ApiReply {
  data?: Record<string, unknown> | null;
  auth?: { client_token: string } | null;
}

/** Seeds and inspects the server over plain HTTP with the root token, as an operator would. */
async function api(method: string, path: string, body?: unknown, namespace?: string): Promise<ApiReply> {
  const response = await fetch(`${url}/v1/${path}`, {
    method,
    headers: {
      'X-Vault-Token': rootToken,
      'Content-Type': 'application/json',
      ...(namespace ? { 'X-Vault-Namespace': namespace } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`seeding ${method} ${path} failed: ${response.status} ${text}`);
  return text ? (JSON.parse(text) as ApiReply) : {};
}

async function putKv(path: string, data: Record<string, string>): Promise<void> {
  written.add(path);
  await api('POST', `secret/data/${path}`, { data });
}

async function newSecretId(role: string): Promise<string> {
  const reply = await api('POST', `auth/${APPROLE}/role/${role}/secret-id`);
  return String(reply.data?.secret_id);
}

/** A node-vault client that records every call the provider makes, and the tokens logins hand out. */
function countingClient() {
  const inner = nodeVault({ endpoint: url });
  inner.token = '';
  const calls: string[] = [];
  const logins: string[] = [];
  const client: VaultClient = {
    get token() {
      return inner.token;
    },
    set token(value) {
      inner.token = value ?? '';
    },
    // Not async: the provider relies on the request (and its token header) starting synchronously.
    read(path, options) {
      calls.push(`GET ${path}`);
      return inner.read(path, options);
    },
    write(path, data, options) {
      calls.push(`POST ${path}`);
      const pending: Promise<ApiReply> = inner.write(path, data, options);
      return /\/login$/.test(path)
        ? pending.then((reply) => {
            if (reply.auth) logins.push(reply.auth.client_token);
            return reply;
          })
        : pending;
    },
  };
  const count = (call: string) => calls.filter((c) => c === call).length;
  return { client, calls, logins, count };
}

const signal = () => new AbortController().signal;
const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: unknown) => err as TlsSecretsError,
  );

/** A port on which nothing listens. */
async function closedPort(): Promise<number> {
  const server = createNetServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Serves `server` options on loopback and connects a client; returns what the client saw. */
async function handshake(serverOptions: tls.TlsOptions, clientOptions: tls.ConnectionOptions) {
  const server = tls.createServer(serverOptions, (socket) => socket.end());
  const port = await listen(server);
  try {
    const socket = tls.connect({ host: '127.0.0.1', port, ...clientOptions });
    await once(socket, 'secureConnect');
    const result = { authorized: socket.authorized, peer: socket.getPeerCertificate() };
    socket.destroy();
    return result;
  } finally {
    await closeServer(server);
  }
}

beforeAll(async () => {
  if (REAL) {
    url = String(process.env.VAULT_ADDR).replace(/\/+$/, '');
    rootToken = String(process.env.VAULT_TOKEN);
  } else {
    standin = await startVaultStandin();
    url = standin.url;
    rootToken = standin.rootToken;
  }
  await api('POST', `sys/mounts/${KV1}`, { type: 'kv', options: { version: '1' } });
  await api('POST', `sys/mounts/${PKI}`, { type: 'pki', config: { max_lease_ttl: '87600h' } });
  await api('POST', `sys/mounts/${PKI_EMPTY}`, { type: 'pki' });
  await api('POST', `${PKI}/root/generate/internal`, {
    common_name: `${RUN} root`,
    ttl: '8760h',
    key_type: 'ec',
  });
  await api('POST', `${PKI}/roles/web`, {
    allowed_domains: 'test.internal,localhost',
    allow_subdomains: true,
    allow_bare_domains: true,
    allow_localhost: true,
    allow_ip_sans: true,
    key_type: 'ec',
    key_bits: 256,
    max_ttl: '72h',
  });
  // The stand-in does not evaluate policies (but for deny-all); a real Vault needs one for the AppRole token.
  if (REAL) {
    await api('PUT', `sys/policies/acl/${RUN}`, {
      policy: [
        `path "secret/data/${RUN}/*" { capabilities = ["read"] }`,
        `path "secret/metadata/${RUN}/*" { capabilities = ["read"] }`,
      ].join('\n'),
    });
  }
  await api('POST', `sys/auth/${APPROLE}`, { type: 'approle' });
  await api('POST', `auth/${APPROLE}/role/app`, {
    token_policies: RUN,
    token_ttl: '1h',
    token_max_ttl: '2h',
  });
  await api('POST', `auth/${APPROLE}/role/denied`, { token_policies: 'deny-all', token_ttl: '1h' });
  appRoleId = String((await api('GET', `auth/${APPROLE}/role/app/role-id`)).data?.role_id);
  deniedRoleId = String((await api('GET', `auth/${APPROLE}/role/denied/role-id`)).data?.role_id);
});

afterEach(() => {
  standin?.resetFaults();
  vi.unstubAllEnvs();
});

afterAll(async () => {
  if (standin) {
    await standin.close();
    return;
  }
  if (!url) return;
  const quietly = (method: string, path: string) => api(method, path).catch(() => undefined);
  for (const path of written) await quietly('DELETE', `secret/metadata/${path}`);
  for (const mount of [KV1, PKI, PKI_EMPTY]) await quietly('DELETE', `sys/mounts/${mount}`);
  await quietly('DELETE', `sys/auth/${APPROLE}`);
  await api('DELETE', 'sys/mounts/kv', undefined, NAMESPACE).catch(() => undefined);
  await quietly('DELETE', `sys/namespaces/${NAMESPACE}`);
  await quietly('DELETE', `sys/policies/acl/${RUN}`);
});

runProviderConformance(REAL ? 'vault (real server)' : 'vault (stand-in)', async () => {
  const { client, calls } = countingClient();
  const provider = vault({ client, auth: { token: rootToken } });
  return {
    provider,
    put: (name, value) => putKv(`${RUN}/conformance/${name}`, { value }),
    ref: (name, options) =>
      provider.kv(`secret/${RUN}/conformance/${name}`, {
        field: options?.jsonKey ?? 'value',
        ...(options?.encoding ? { encoding: options.encoding } : {}),
      }),
    storeCalls: () => calls.length,
    close: () => provider.close(),
  };
});

describe('vault provider: options', () => {
  it('refuses bad options at creation with a ConfigurationError', () => {
    const auth = { token: 't' };
    expect(() => vault({ endpoint: 'ftp://vault:8200', auth })).toThrow(ConfigurationError);
    expect(() => vault({ endpoint: 'not a url', auth })).toThrow(/not a URL/);
    expect(() => vault({ endpoint: 'http://vault:8200', tls: { ca: 'x' }, auth })).toThrow(/https/);
    expect(() => vault({ endpoint: 'https://vault:8200', tls: { cert: 'x' }, auth })).toThrow(/go together/);
    expect(() => vault({ endpoint: 'http://vault:8200', requestTimeoutMs: 0, auth })).toThrow(
      /requestTimeoutMs/,
    );
    expect(() => vault({ endpoint: 'http://vault:8200', auth: { appRole: { roleId: '' } } })).toThrow(
      /roleId/,
    );
    expect(() =>
      vault({ endpoint: 'http://vault:8200', auth: { kubernetes: { role: 'r', mount: '/' } } }),
    ).toThrow(ConfigurationError);
  });

  it('the auth union refuses two methods at once, in types and at run time', () => {
    expect(() =>
      vault({
        endpoint: 'http://vault:8200',
        // @ts-expect-error token and appRole are exclusive
        auth: { token: 't', appRole: { roleId: 'r', secretId: 's' } },
      }),
    ).toThrow(/exactly one of token, appRole, kubernetes/);
    expect(() =>
      vault({
        client: nodeVault({ endpoint: 'http://vault:8200' }),
        // @ts-expect-error an injected client excludes endpoint
        endpoint: 'http://vault:8200',
        auth: { token: 't' },
      }),
    ).toThrow(/either `client` or `endpoint`/);
  });

  it('takes its token from VAULT_TOKEN and refuses to start with no credentials at all', () => {
    vi.stubEnv('VAULT_TOKEN', '');
    expect(() => vault({ endpoint: 'http://vault:8200' })).toThrow(/no credentials/);
    vi.stubEnv('VAULT_TOKEN', 'from-env');
    expect(() => vault({ endpoint: 'http://vault:8200' })).not.toThrow();
  });

  it('checks reference arguments when the reference is made', () => {
    const v = vault({ endpoint: 'http://vault:8200', auth: { token: 't' } });
    // @ts-expect-error field is required
    expect(() => v.kv('secret/app', {})).toThrow(/needs a field/);
    expect(() => v.kv('secret/../app', { field: 'f' })).toThrow(/not a valid Vault path/);
    expect(() => v.kv('secret/app', { field: 'f', version: 0 })).toThrow(/positive integer/);
    expect(() => v.kv('kv/app', { field: 'f', kvVersion: 1, version: 2 })).toThrow(/no versions/);
    expect(() => v.kv('secret/app', { field: 'f', mount: 'other' })).toThrow(/inside mount/);
    expect(() => v.pki('pki', 'web', { commonName: '' })).toThrow(/commonName/);
    expect(() => v.pki('pki', 'web', { commonName: 'a', ttl: 'tomorrow' })).toThrow(/duration/);
    expect(() => v.pki('pki', 'web', { commonName: 'a', altNames: ['a,b'] })).toThrow(/commas/);
  });

  it('shares one id among the fields of one path, and separates versions and paths', () => {
    const v = vault({ endpoint: 'http://vault:8200', auth: { token: 't' } });
    const key = v.kv('secret/app/tls', { field: 'key' });
    const cert = v.kv('secret/app/tls', { field: 'cert' });
    expect(key.id).toBe(cert.id);
    expect(key.options.jsonKey).toBe('key');
    expect(v.kv('secret/app/tls', { field: 'key', version: 2 }).id).not.toBe(key.id);
    expect(v.kv('secret/app/other', { field: 'key' }).id).not.toBe(key.id);
    const issued = v.pki('pki', 'web', { commonName: 'svc.internal', ttl: '24h' });
    expect(new Set([issued.key.id, issued.cert.id, issued.ca.id]).size).toBe(1);
    expect(v.pki('pki', 'web', { commonName: 'other.internal' }).key.id).not.toBe(issued.key.id);
  });

  it('never shows its token through inspect, JSON or errors', async () => {
    const token = `hvs.${randomBytes(12).toString('hex')}`;
    const v = vault({ endpoint: url, auth: { token } });
    expect(inspect(v)).toContain(url);
    expect(inspect(v)).not.toContain(token);
    expect(JSON.stringify(v)).not.toContain(token);
    const err = await failure(v.fetch(v.kv(`secret/${RUN}/nothing`, { field: 'f', kvVersion: 2 }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect(err.message).toMatch(/denied permission/);
    for (const shown of [err.message, inspect(err, { depth: 5 }), JSON.stringify(err)])
      expect(shown).not.toContain(token);
  });
});

describe('vault provider: KV', () => {
  it('reads every field of one path with one request, and probes metadata on refresh', async () => {
    const ca = await createTestCA();
    const first = await ca.issue({
      commonName: 'kv.test.internal',
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const path = `${RUN}/kv/tls`;
    await putKv(path, { key: first.keyPem, cert: first.certPem });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const resolver = createResolver(
      { key: v.kv(`secret/${path}`, { field: 'key' }), cert: v.kv(`secret/${path}`, { field: 'cert' }) },
      { refreshInterval: 3_600_000 },
    );
    try {
      const options = await resolver.resolve();
      expect(count(`GET secret/data/${path}`)).toBe(1);
      const { authorized, peer } = await handshake(
        { key: options.key, cert: options.cert },
        { ca: ca.certPem, servername: 'localhost' },
      );
      expect(authorized).toBe(true);
      expect(peer.serialNumber).toBe(first.serial.toUpperCase());

      const unchanged = await resolver.refresh();
      expect(unchanged.rotated).toBe(false);
      expect(count(`GET secret/metadata/${path}`)).toBe(1);
      expect(count(`GET secret/data/${path}`)).toBe(1);

      const second = await ca.issue({ commonName: 'kv.test.internal', dnsNames: ['localhost'] });
      await putKv(path, { key: second.keyPem, cert: second.certPem });
      const changed = await resolver.refresh();
      expect(changed.rotated).toBe(true);
      expect(count(`GET secret/data/${path}`)).toBe(2);
      expect(resolver.status().fields.map((f) => f.version)).toEqual(['2', '2']);
      const after = await handshake(
        { key: (await resolver.resolve()).key, cert: (await resolver.resolve()).cert },
        { ca: ca.certPem, servername: 'localhost' },
      );
      expect(after.peer.serialNumber).toBe(second.serial.toUpperCase());
      // The mount was detected once and kept.
      expect(count(`GET sys/internal/ui/mounts/secret/${path}`)).toBe(1);
    } finally {
      await resolver.close();
      await v.close();
    }
  });

  it('concurrent first reads of several paths under one mount detect the mount once', async () => {
    await putKv(`${RUN}/kv/one`, { value: 'one' });
    await putKv(`${RUN}/kv/two`, { value: 'two' });
    const { client, calls } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    try {
      await Promise.all(
        ['one', 'two'].map((name) => v.fetch(v.kv(`secret/${RUN}/kv/${name}`, { field: 'value' }), signal())),
      );
      expect(calls.filter((call) => call.startsWith('GET sys/internal/ui/mounts/'))).toHaveLength(1);
    } finally {
      await v.close();
    }
  });

  it('decodes a base64 field to bytes for ticketKeys', async () => {
    const keys = randomBytes(48);
    await putKv(`${RUN}/kv/tickets`, { keys: keys.toString('base64') });
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const resolver = createResolver({
      ticketKeys: v.kv(`secret/${RUN}/kv/tickets`, { field: 'keys', encoding: 'base64' }),
    });
    try {
      const options = (await resolver.resolve()) as tls.ConnectionOptions & { ticketKeys?: Buffer };
      expect(Buffer.compare(options.ticketKeys ?? Buffer.alloc(0), keys)).toBe(0);
    } finally {
      await resolver.close();
      await v.close();
    }
  });

  it('detects a KV v1 mount: content-hash versions, no version probe, no pinning', async () => {
    await api('POST', `${KV1}/app/tls`, { value: 'first' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const ref = v.kv(`${KV1}/app/tls`, { field: 'value' });
    const one = await v.fetch(ref, signal());
    expect(one.value).toEqual({ value: 'first' });
    expect(one.version).toMatch(/^[0-9a-f]{16}$/);
    expect(await v.currentVersion?.(ref, signal())).toBeUndefined();
    expect((await v.fetch(ref, signal())).version).toBe(one.version);

    await api('POST', `${KV1}/app/tls`, { value: 'second' });
    const two = await v.fetch(ref, signal());
    expect(two.value).toEqual({ value: 'second' });
    expect(two.version).not.toBe(one.version);
    expect(count(`GET sys/internal/ui/mounts/${KV1}/app/tls`)).toBe(1);

    const pinned = await failure(v.fetch(v.kv(`${KV1}/app/tls`, { field: 'value', version: 1 }), signal()));
    expect(pinned).toBeInstanceOf(FetchError);
    expect((pinned as FetchError).transient).toBe(false);
    expect(pinned.message).toMatch(/version pinning needs KV v2/);
    await v.close();
  });

  it('skips mount detection when kvVersion and mount are given', async () => {
    await api('POST', `${KV1}/app/explicit`, { value: 'x' });
    const { client, calls } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const result = await v.fetch(
      v.kv(`${KV1}/app/explicit`, { field: 'value', kvVersion: 1, mount: KV1 }),
      signal(),
    );
    expect(result.value).toEqual({ value: 'x' });
    expect(calls.filter((c) => c.includes('sys/internal/ui/mounts'))).toEqual([]);
    await v.close();
  });

  it('pins a KV v2 version, and its version probe costs no request', async () => {
    const path = `${RUN}/kv/pinned`;
    await putKv(path, { value: 'one' });
    await putKv(path, { value: 'two' });
    const { client, calls } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const pinned = v.kv(`secret/${path}`, { field: 'value', version: 1 });
    const latest = v.kv(`secret/${path}`, { field: 'value' });
    expect(await v.fetch(pinned, signal())).toEqual({ value: { value: 'one' }, version: '1' });
    expect(await v.fetch(latest, signal())).toEqual({ value: { value: 'two' }, version: '2' });
    const before = calls.length;
    expect(await v.currentVersion?.(pinned, signal())).toBe('1');
    expect(calls.length).toBe(before);
    expect(await v.currentVersion?.(latest, signal())).toBe('2');
    await v.close();
  });

  it('tells a deleted version, a destroyed version and a missing one apart', async () => {
    const path = `${RUN}/kv/lifecycle`;
    for (const value of ['one', 'two', 'three']) await putKv(path, { value });
    await api('POST', `secret/delete/${path}`, { versions: [1] });
    await api('POST', `secret/destroy/${path}`, { versions: [2] });
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const at = (version?: number) =>
      failure(v.fetch(v.kv(`secret/${path}`, { field: 'value', ...(version ? { version } : {}) }), signal()));

    expect((await v.fetch(v.kv(`secret/${path}`, { field: 'value', version: 3 }), signal())).value).toEqual({
      value: 'three',
    });
    const deleted = await at(1);
    expect(deleted).toBeInstanceOf(SecretNotFoundError);
    expect(deleted.message).toMatch(/version deleted/);
    const destroyed = await at(2);
    expect(destroyed).toBeInstanceOf(SecretNotFoundError);
    expect(destroyed.message).toMatch(/version destroyed/);
    const never = await at(9);
    expect(never).toBeInstanceOf(SecretNotFoundError);
    expect(never.message).toMatch(/secret not found/);
    const missing = await failure(v.fetch(v.kv(`secret/${RUN}/kv/absent`, { field: 'value' }), signal()));
    expect(missing).toBeInstanceOf(SecretNotFoundError);
    expect(missing.message).toMatch(/secret not found.*kv\/absent/);

    await api('DELETE', `secret/data/${path}`);
    const latestDeleted = await at();
    expect(latestDeleted).toBeInstanceOf(SecretNotFoundError);
    expect(latestDeleted.message).toMatch(/version deleted/);
    await v.close();
  });
});

describe('vault provider: PKI', () => {
  it('issues key, cert and ca with one request and serves them in a real TLS handshake', async () => {
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const refs = v.pki(PKI, 'web', {
      commonName: 'svc.test.internal',
      altNames: ['localhost'],
      ipSans: ['127.0.0.1'],
      ttl: '1h',
    });
    const resolver = createResolver({ ...refs }, { refreshInterval: 3_600_000 });
    try {
      const options = await resolver.resolve();
      expect(count(`POST ${PKI}/issue/web`)).toBe(1);

      const caPem = (await v.fetch(v.pkiCa(PKI), signal())).value as string;
      expect(caPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
      // The bundle's ca is the issuing CA, once, although Vault lists it in issuing_ca and ca_chain.
      expect(String(options.ca).match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
      expect(String(options.ca).trim()).toBe(caPem.trim());

      const { authorized, peer } = await handshake(
        { key: options.key, cert: options.cert },
        { ca: caPem, servername: 'svc.test.internal' },
      );
      expect(authorized).toBe(true);
      expect(peer.subject.CN).toBe('svc.test.internal');
      const [field] = resolver.status().fields;
      const hex = (serial: string | undefined) => serial?.replace(/:/g, '').toUpperCase().replace(/^0+/, '');
      expect(hex(field?.version)).toBe(hex(peer.serialNumber));
      const hour = Date.now() + 3_600_000;
      expect(Math.abs(new Date(peer.valid_to).getTime() - hour)).toBeLessThan(120_000);
      // Issued bundles cannot be probed: every fetch would issue a new certificate.
      expect(await v.currentVersion?.(refs.cert, signal())).toBeUndefined();
    } finally {
      await resolver.close();
      await v.close();
    }
  });

  it('reports expiresAt from expiration and issues a new certificate at every fetch', async () => {
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const { key } = v.pki(PKI, 'web', {
      commonName: 'svc.test.internal',
      ttl: '2h',
      privateKeyFormat: 'pkcs8',
    });
    const one = await v.fetch(key, signal());
    const two = await v.fetch(key, signal());
    expect(one.version).not.toBe(two.version);
    expect(Math.abs((one.expiresAt?.getTime() ?? 0) - (Date.now() + 7_200_000))).toBeLessThan(120_000);
    expect((one.value as Record<string, string>).private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect((one.value as Record<string, string>).certificate?.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);

    // pem_bundle puts key, leaf and chain into `certificate`: the cert value keeps the certificates only.
    const bundled = await v.fetch(
      v.pki(PKI, 'web', { commonName: 'svc.test.internal', format: 'pem_bundle' }).cert,
      signal(),
    );
    const { certificate, private_key: privateKey } = bundled.value as Record<string, string>;
    expect(certificate?.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(certificate).not.toMatch(/PRIVATE KEY/);
    expect(privateKey).toMatch(/PRIVATE KEY/);
    await v.close();
  });

  it('maps a common name the role does not allow to a non-transient FetchError', async () => {
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const err = await failure(v.fetch(v.pki(PKI, 'web', { commonName: 'evil.example.com' }).cert, signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(false);
    expect(err.message).toMatch(/rejected the request \(400\)/);
    await v.close();
  });

  it('reads the raw CA and CRL, and a mount without a CA is not found', async () => {
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const ca: FetchResult = await v.fetch(v.pkiCa(PKI), signal());
    expect(() => tls.createSecureContext({ ca: ca.value as string })).not.toThrow();
    expect(ca.version).toMatch(/^[0-9a-f]{16}$/);
    const crl = await v.fetch(v.pkiCrl(PKI), signal());
    expect(crl.value).toMatch(/^-----BEGIN X509 CRL-----/);
    const none = await failure(v.fetch(v.pkiCa(PKI_EMPTY), signal()));
    expect(none).toBeInstanceOf(SecretNotFoundError);
    expect(none.message).toMatch(/no CA certificate/);
    await v.close();
  });
});

describe('vault provider: authentication', () => {
  it('logs in with AppRole once for concurrent fetches, and again after its token is revoked', async () => {
    for (const name of ['a', 'b', 'c']) await putKv(`${RUN}/approle/${name}`, { value: name.toUpperCase() });
    const secretId = await newSecretId('app');
    const { client, logins, count } = countingClient();
    const v = vault({ client, auth: { appRole: { roleId: appRoleId, secretId, mount: APPROLE } } });
    const refs = ['a', 'b', 'c'].map((name) => v.kv(`secret/${RUN}/approle/${name}`, { field: 'value' }));
    const results = await Promise.all(refs.map((ref) => v.fetch(ref, signal())));
    expect(results.map((r) => r.value)).toEqual([{ value: 'A' }, { value: 'B' }, { value: 'C' }]);
    expect(logins).toHaveLength(1);

    await api('POST', 'auth/token/revoke', { token: logins[0] });
    const [first] = refs;
    if (!first) throw new Error('no ref');
    expect((await v.fetch(first, signal())).value).toEqual({ value: 'A' });
    expect(logins).toHaveLength(2);
    expect(logins[1]).not.toBe(logins[0]);
    // The failed read, then the same read once more with the new token.
    expect(count(`GET secret/data/${RUN}/approle/a`)).toBe(3);
    expect(inspect(v)).not.toContain(secretId);
    await v.close();
  });

  it('a 403 that survives a fresh login is a non-transient FetchError', async () => {
    await putKv(`${RUN}/approle/a`, { value: 'A' });
    const secretId = await newSecretId('denied');
    const { client, logins } = countingClient();
    const v = vault({ client, auth: { appRole: { roleId: deniedRoleId, secretId, mount: APPROLE } } });
    const ref = v.kv(`secret/${RUN}/approle/a`, { field: 'value', kvVersion: 2, mount: 'secret' });
    const err = await failure(v.fetch(ref, signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(false);
    expect(err.message).toMatch(/denied permission.*approle\/a/);
    expect(logins).toHaveLength(2);
    for (const shown of [err.message, inspect(err, { depth: 5 })]) {
      expect(shown).not.toContain(secretId);
      for (const token of logins) expect(shown).not.toContain(token);
    }
    await v.close();
  });

  it('bad AppRole credentials fail the fetch without echoing them', async () => {
    const secretId = `not-${randomBytes(8).toString('hex')}`;
    const v = vault({ endpoint: url, auth: { appRole: { roleId: appRoleId, secretId, mount: APPROLE } } });
    const err = await failure(v.fetch(v.kv(`secret/${RUN}/approle/a`, { field: 'value' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(false);
    expect(err.message).toMatch(/AppRole login failed/);
    expect(inspect(err, { depth: 5 })).not.toContain(secretId);
    await v.close();
  });

  it('renews a short-TTL renewable token ahead of its TTL, and stops at close()', async () => {
    const created = await api('POST', 'auth/token/create', { ttl: '2s', renewable: true, policies: [RUN] });
    const token = String(created.auth?.client_token);
    await putKv(`${RUN}/renew/x`, { value: 'kept' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    const ref = v.kv(`secret/${RUN}/renew/x`, { field: 'value' });
    await v.fetch(ref, signal());
    expect(count('GET auth/token/lookup-self')).toBe(1);
    await sleep(3_000); // past the 2 s the token was created with
    const renewals = count('POST auth/token/renew-self');
    expect(renewals).toBeGreaterThanOrEqual(1);
    expect((await v.fetch(ref, signal())).value).toEqual({ value: 'kept' });
    await v.close();
    const atClose = count('POST auth/token/renew-self');
    await sleep(1_500);
    expect(count('POST auth/token/renew-self')).toBe(atClose);
    expect(await failure(v.fetch(ref, signal()))).toBeInstanceOf(FetchError);
  });

  it('logs in anew when renewal reaches the max TTL of an AppRole token', async () => {
    await api('POST', `auth/${APPROLE}/role/short`, {
      token_policies: RUN,
      token_ttl: '2s',
      token_max_ttl: '3s',
    });
    const roleId = String((await api('GET', `auth/${APPROLE}/role/short/role-id`)).data?.role_id);
    const secretId = await newSecretId('short');
    await putKv(`${RUN}/renew/approle`, { value: 'short-lived' });
    const { client, logins, count } = countingClient();
    const v = vault({ client, auth: { appRole: { roleId, secretId, mount: APPROLE } } });
    const ref = v.kv(`secret/${RUN}/renew/approle`, { field: 'value' });
    try {
      await v.fetch(ref, signal());
      expect(logins).toHaveLength(1);
      await sleep(3_500); // past the first token's 3 s max TTL
      expect(count('POST auth/token/renew-self')).toBeGreaterThanOrEqual(1);
      expect(logins.length).toBeGreaterThanOrEqual(2);
      // Once a renewal comes back capped, renewing again would extend nothing: each token is renewed once.
      expect(count('POST auth/token/renew-self')).toBeLessThanOrEqual(logins.length);
      expect((await v.fetch(ref, signal())).value).toEqual({ value: 'short-lived' });
      // The background login kept a live token ready: the fetch found no expired token to replace.
      expect(count(`GET secret/data/${RUN}/renew/approle`)).toBe(2);
    } finally {
      await v.close();
    }
  });

  it('never renews a root token', async () => {
    await putKv(`${RUN}/renew/root`, { value: 'r' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    await v.fetch(v.kv(`secret/${RUN}/renew/root`, { field: 'value' }), signal());
    await v.fetch(v.kv(`secret/${RUN}/renew/root`, { field: 'value' }), signal());
    expect(count('GET auth/token/lookup-self')).toBe(1);
    await sleep(300);
    expect(count('POST auth/token/renew-self')).toBe(0);
    await v.close();
  });

  it.skipIf(REAL)(
    'logs in with a Kubernetes service-account token at a named mount (stand-in only: a real Vault needs a Kubernetes API to review the JWT)',
    async () => {
      await api('POST', `sys/auth/${K8S}`, { type: 'kubernetes' });
      await api('POST', `auth/${K8S}/config`, { kubernetes_host: 'https://kubernetes.invalid' });
      await api('POST', `auth/${K8S}/role/web`, {
        bound_service_account_names: 'web',
        bound_service_account_namespaces: 'apps',
        token_policies: RUN,
      });
      const claims = {
        'kubernetes.io/serviceaccount/namespace': 'apps',
        'kubernetes.io/serviceaccount/service-account.name': 'web',
      };
      const jwt = ['{"alg":"RS256"}', JSON.stringify(claims), 'signature']
        .map((part) => Buffer.from(part).toString('base64url'))
        .join('.');
      const dir = await mkdtemp(join(tmpdir(), 'tlss-k8s-'));
      const jwtPath = join(dir, 'token');
      await writeFile(jwtPath, `${jwt}\n`);
      await putKv(`${RUN}/k8s/x`, { value: 'k' });
      const { client, calls } = countingClient();
      const v = vault({ client, auth: { kubernetes: { role: 'web', jwtPath, mount: K8S } } });
      try {
        expect((await v.fetch(v.kv(`secret/${RUN}/k8s/x`, { field: 'value' }), signal())).value).toEqual({
          value: 'k',
        });
        expect(calls).toContain(`POST auth/${K8S}/login`);

        const absent = join(dir, 'absent');
        const missing = vault({
          endpoint: url,
          auth: { kubernetes: { role: 'web', jwtPath: absent, mount: K8S } },
        });
        const err = await failure(
          missing.fetch(missing.kv(`secret/${RUN}/k8s/x`, { field: 'value' }), signal()),
        );
        expect(err).toBeInstanceOf(FetchError);
        expect((err as FetchError).transient).toBe(false);
        expect(err.message).toContain(absent);
        await missing.close();
      } finally {
        await v.close();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('vault provider: namespaces', () => {
  it('sends the namespace with every request', async () => {
    await api('POST', `sys/namespaces/${NAMESPACE}`);
    await api('POST', 'sys/mounts/kv', { type: 'kv', options: { version: '2' } }, NAMESPACE);
    await api('POST', 'kv/data/app/tls', { data: { value: 'in the namespace' } }, NAMESPACE);
    const inside = vault({ endpoint: url, auth: { token: rootToken }, namespace: NAMESPACE });
    expect((await inside.fetch(inside.kv('kv/app/tls', { field: 'value' }), signal())).value).toEqual({
      value: 'in the namespace',
    });
    // Outside the namespace there is no kv/ mount, which Vault will not confirm (403 on detection).
    const outside = vault({ endpoint: url, auth: { token: rootToken } });
    const err = await failure(outside.fetch(outside.kv('kv/app/tls', { field: 'value' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(false);
    expect(err.message).toMatch(/cannot detect the KV mount of kv\/app\/tls/);
    await inside.close();
    await outside.close();
  });
});

describe('vault provider: failures', () => {
  it('an unreachable Vault is a transient FetchError naming the network code', async () => {
    const v = vault({ endpoint: `http://127.0.0.1:${await closedPort()}`, auth: { token: 't' } });
    const err = await failure(v.fetch(v.kv('secret/app', { field: 'f' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(true);
    expect(err.message).toMatch(/cannot reach Vault \(ECONNREFUSED/);
  });

  it.skipIf(REAL)(`a sealed Vault is a transient FetchError (${STANDIN_ONLY})`, async () => {
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    if (standin) standin.faults.sealed = true;
    const err = await failure(v.fetch(v.kv(`secret/${RUN}/faults/x`, { field: 'value' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(true);
    expect(err.message).toMatch(/sealed/);
    await v.close();
  });

  it.skipIf(REAL)(`429 and 500 are transient FetchErrors (${STANDIN_ONLY})`, async () => {
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const ref = v.kv(`secret/${RUN}/faults/x`, { field: 'value' });
    await v.fetch(ref, signal());
    for (const [code, message] of [
      [429, /rate limit/],
      [500, /server error \(500\)/],
      [502, /server error \(502\)/],
    ] as const) {
      if (standin) standin.faults.status = { code, pathPrefix: 'secret/data/', times: 1 };
      const err = await failure(v.fetch(ref, signal()));
      expect(err).toBeInstanceOf(FetchError);
      expect((err as FetchError).transient).toBe(true);
      expect(err.message).toMatch(message);
    }
    expect((await v.fetch(ref, signal())).value).toEqual({ value: 'x' });
    await v.close();
  });

  it.skipIf(REAL)(`a hung Vault times out within requestTimeoutMs (${STANDIN_ONLY})`, async () => {
    const v = vault({ endpoint: url, auth: { token: rootToken }, requestTimeoutMs: 300 });
    if (standin) standin.faults.hang = true;
    const started = Date.now();
    const err = await failure(v.fetch(v.kv(`secret/${RUN}/faults/x`, { field: 'value' }), signal()));
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(true);
    expect(err.message).toMatch(/timed out after 300 ms/);
    await v.close();
  });

  it.skipIf(REAL)(`the fetch's AbortSignal ends a request at once (${STANDIN_ONLY})`, async () => {
    const v = vault({ endpoint: url, auth: { token: rootToken } });
    const ref = v.kv(`secret/${RUN}/faults/x`, { field: 'value' });
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    await v.fetch(ref, signal());
    if (standin) standin.faults.hang = true;
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('resolver gave up')), 100);
    const started = Date.now();
    const err = await failure(v.fetch(ref, controller.signal));
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(err).toBeInstanceOf(FetchError);
    expect(err.message).toMatch(/aborted/);
    await v.close();
  });
});
