/**
 * The Vault provider against a real Vault-API server: the run's OpenBao 2.7.2 dev server (test/setup/bao.ts,
 * `inject('vaultAddr')`), or a real HashiCorp Vault when VAULT_ADDR and VAULT_TOKEN are set. Policies are
 * enforced there, so denial, least privilege, periodic tokens and renewal caps are the server's own answers.
 * Faults come from test/helpers/fault-proxy.ts in front of that server; the sealed case seals a server of
 * its own (startBao()), never the shared one. Kubernetes login goes to real OpenBao, which reviews the JWT
 * against a small TokenReview API served here over HTTPS: Kubernetes itself is not what is tested.
 */
import { createSign, generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { inspect } from 'node:util';
import nodeVault from 'node-vault';
import { providerConformance } from 'tls-secrets/testing';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { type VaultClient, vault } from '../../providers/vault/index.js';
import {
  ClosedError,
  ConfigurationError,
  createResolver,
  FetchError,
  type FetchResult,
  SecretNotFoundError,
  type TlsSecretsError,
} from '../../src/index.js';
import { createTestCA } from '../fixtures/ca.js';
import { startBao } from '../helpers/bao.js';
import { startFaultProxy, vaultFaults } from '../helpers/fault-proxy.js';
import { closeServer, listen, sleep } from '../helpers/tls.js';

const url = inject('vaultAddr');
const rootToken = inject('vaultToken');
const NO_VAULT = url === '';
/** Shown in the names of the suites that need the server, so a skip says why. */
const ON = NO_VAULT ? `(skipped: ${inject('vaultServer')})` : '(real server)';
const IS_OPENBAO = inject('vaultServer').startsWith('OpenBao');

/** Everything this run creates lives under names with this prefix, so runs never collide on a shared server. */
const RUN = `tlss-${randomBytes(4).toString('hex')}`;
const KV1 = `${RUN}-kv1`;
/** A KV v2 mount two segments deep, as teams often have (`team/kv`). */
const NESTED = `${RUN}-team/kv`;
const PKI = `${RUN}-pki`;
const PKI_EMPTY = `${RUN}-pki-empty`;
const APPROLE = `${RUN}-approle`;
const K8S = `${RUN}-k8s`;
const NAMESPACE = `${RUN}-ns`;
/** ACL policies: what the application needs (read its KV paths, issue from its role), and variants of it. */
const POLICY = RUN;
const DATA_ONLY = `${RUN}-data-only`;

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

/**
 * A token made by the root token, carrying `policies` and `default` (which grants lookup-self and
 * renew-self, as for any application token), unless `noDefault`.
 */
async function tokenWith(
  policies: string[],
  extra: Record<string, unknown> = {},
  noDefault = false,
): Promise<string> {
  const created = await api('POST', 'auth/token/create', {
    policies,
    no_default_policy: noDefault,
    ...extra,
  });
  return String(created.auth?.client_token);
}

/** What the server says of a token now: its TTL, or undefined once the server no longer knows it. */
async function tokenTtl(token: string): Promise<number | undefined> {
  const response = await fetch(`${url}/v1/auth/token/lookup`, {
    method: 'POST',
    headers: { 'X-Vault-Token': rootToken, 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
  });
  const body = (await response.json()) as { data?: { ttl?: number } };
  return response.ok ? body.data?.ttl : undefined;
}

/** Polls `check` every 20 ms until it holds; fails the test with `what` after `timeoutMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A node-vault client that records every call the provider makes, and the tokens logins hand out. */
function countingClient(endpoint = url) {
  const inner = nodeVault({ endpoint });
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
  if (NO_VAULT) return;
  await api('POST', `sys/mounts/${KV1}`, { type: 'kv', options: { version: '1' } });
  await api('POST', `sys/mounts/${NESTED}`, { type: 'kv', options: { version: '2' } });
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
  // Least privilege for the application: read its own KV paths (data, and metadata for version probes),
  // issue from its one PKI role. Nothing else: no list, no other mount, no sys/.
  await api('PUT', `sys/policies/acl/${POLICY}`, {
    policy: [
      `path "secret/data/${RUN}/*" { capabilities = ["read"] }`,
      `path "secret/metadata/${RUN}/*" { capabilities = ["read"] }`,
      `path "${PKI}/issue/web" { capabilities = ["update"] }`,
    ].join('\n'),
  });
  await api('PUT', `sys/policies/acl/${DATA_ONLY}`, {
    policy: `path "secret/data/${RUN}/*" { capabilities = ["read"] }`,
  });
  await api('POST', `sys/auth/${APPROLE}`, { type: 'approle' });
  await api('POST', `auth/${APPROLE}/role/app`, {
    token_policies: POLICY,
    token_ttl: '1h',
    token_max_ttl: '2h',
  });
  // No policy of its own: its tokens carry only `default`, which grants nothing under secret/.
  await api('POST', `auth/${APPROLE}/role/denied`, { token_ttl: '1h' });
  appRoleId = String((await api('GET', `auth/${APPROLE}/role/app/role-id`)).data?.role_id);
  deniedRoleId = String((await api('GET', `auth/${APPROLE}/role/denied/role-id`)).data?.role_id);
});

afterEach(() => {
  vi.unstubAllEnvs();
});

afterAll(async () => {
  if (NO_VAULT) return;
  const quietly = (method: string, path: string) => api(method, path).catch(() => undefined);
  for (const path of written) await quietly('DELETE', `secret/metadata/${path}`);
  for (const mount of [KV1, NESTED, PKI, PKI_EMPTY]) await quietly('DELETE', `sys/mounts/${mount}`);
  for (const mount of [APPROLE, K8S]) await quietly('DELETE', `sys/auth/${mount}`);
  if (IS_OPENBAO) {
    await api('DELETE', 'sys/mounts/kv', undefined, NAMESPACE).catch(() => undefined);
    await quietly('DELETE', `sys/namespaces/${NAMESPACE}`);
  }
  for (const policy of [POLICY, DATA_ONLY]) await quietly('DELETE', `sys/policies/acl/${policy}`);
});

describe.skipIf(NO_VAULT)(`vault provider ${ON}`, () => runConformance());

function runConformance() {
  providerConformance(
    {
      name: `vault ${ON}`,
      capabilities: {
        batch: 'Vault has no batch read',
        watch: 'Vault sends no notifications; the resolver probes versions',
        probe: true,
        deny: true,
        unreachable: true,
        abort: true,
        binary: 'KV values are JSON strings (binary values are stored base64)',
        closeEndsFetch: true,
      },
      async setup() {
        const { client, calls } = countingClient();
        const provider = vault({ client, auth: { token: rootToken } });
        const others: { close(): Promise<void> }[] = [];
        return {
          provider,
          put: (name, value) => putKv(`${RUN}/conformance/${name}`, { value: String(value) }),
          ref: (name, options) =>
            provider.kv(`secret/${RUN}/conformance/${name}`, {
              field: options?.jsonKey ?? 'value',
              ...(options?.encoding ? { encoding: options.encoding } : {}),
            }),
          storeCalls: () => calls.length,
          // A token whose policy reads secret/<run>/* only, asking for a secret that exists outside it.
          async denied() {
            await putKv(`${RUN}-outside/denied`, { value: 'not for this token' });
            const limited = vault({ endpoint: url, auth: { token: await tokenWith([POLICY]) } });
            others.push(limited);
            return limited.kv(`secret/${RUN}-outside/denied`, { field: 'value' });
          },
          async unreachable() {
            const server = tls.createServer();
            const port = await listen(server);
            await closeServer(server);
            const gone = vault({ endpoint: `http://127.0.0.1:${port}`, auth: { token: 'not-used' } });
            return gone.kv('secret/anything', { field: 'value' });
          },
          async close() {
            for (const other of others) await other.close();
          },
        };
      },
    },
    { describe, it },
  );
}

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

  it('loads the TLS material for the connection to Vault at creation: a key that is not one fails there', async () => {
    const ca = await createTestCA();
    const [client, other] = await Promise.all([ca.issue(), ca.issue()]);
    const endpoint = 'https://vault:8200';
    const auth = { token: 't' };
    const refusal = (tls: { ca?: string; cert?: string; key?: string }) => {
      try {
        vault({ endpoint, auth, tls });
      } catch (err) {
        return err as Error;
      }
      return undefined;
    };
    for (const tls of [
      { cert: client.certPem, key: 'not a key' },
      { cert: client.certPem, key: other.keyPem },
      { ca: 'not a certificate' },
    ]) {
      const error = refusal(tls);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error?.message).toMatch(/does not load/);
      expect(inspect(error, { showHidden: true, depth: Number.POSITIVE_INFINITY })).not.toContain(
        'PRIVATE KEY',
      );
    }
    expect(refusal({ ca: ca.certPem, cert: client.certPem, key: client.keyPem })).toBeUndefined();
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

  it.skipIf(NO_VAULT)(`never shows its token through inspect, JSON or errors ${ON}`, async () => {
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

describe.skipIf(NO_VAULT)(`vault provider: KV ${ON}`, () => {
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
      { refreshIntervalMs: 3_600_000 },
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
      expect(resolver.status().fields.map((f) => f.version?.split('@')[0])).toEqual(['2', '2']);
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

  it('detects a KV v2 mount two segments deep, and reads and probes under it', async () => {
    await api('POST', `${NESTED}/data/app/tls`, { data: { value: 'nested' } });
    const { client, calls } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    try {
      const ref = v.kv(`${NESTED}/app/tls`, { field: 'value' });
      const nested = await v.fetch(ref, signal());
      expect(nested).toEqual({ value: { value: 'nested' }, version: expect.stringMatching(/^1@/) });
      expect(await v.currentVersion?.(ref, signal())).toBe(nested.version);
      expect(calls).toEqual([
        'GET auth/token/lookup-self',
        `GET sys/internal/ui/mounts/${NESTED}/app/tls`,
        `GET ${NESTED}/data/app/tls`,
        `GET ${NESTED}/metadata/app/tls`,
      ]);
    } finally {
      await v.close();
    }
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
    const first = await v.fetch(pinned, signal());
    const second = await v.fetch(latest, signal());
    expect(first).toEqual({ value: { value: 'one' }, version: expect.stringMatching(/^1@/) });
    expect(second).toEqual({ value: { value: 'two' }, version: expect.stringMatching(/^2@/) });
    const before = calls.length;
    expect(await v.currentVersion?.(pinned, signal())).toBe(first.version);
    expect(calls.length).toBe(before);
    expect(await v.currentVersion?.(latest, signal())).toBe(second.version);
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

describe.skipIf(NO_VAULT)(`vault provider: PKI ${ON}`, () => {
  it('issues key, cert and ca with one request and serves them in a real TLS handshake', async () => {
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    const refs = v.pki(PKI, 'web', {
      commonName: 'svc.test.internal',
      altNames: ['localhost'],
      ipSans: ['127.0.0.1'],
      ttl: '1h',
    });
    const resolver = createResolver({ ...refs }, { refreshIntervalMs: 3_600_000 });
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

describe.skipIf(NO_VAULT)(`vault provider: authentication ${ON}`, () => {
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

  it('logs in with an AppRole role that needs no secret id (bind_secret_id=false, bound to loopback)', async () => {
    await api('POST', `auth/${APPROLE}/role/no-secret`, {
      bind_secret_id: false,
      secret_id_bound_cidrs: '127.0.0.1/32',
      token_policies: POLICY,
      token_ttl: '1h',
    });
    const roleId = String((await api('GET', `auth/${APPROLE}/role/no-secret/role-id`)).data?.role_id);
    await putKv(`${RUN}/approle/no-secret`, { value: 'role id only' });
    const { client, logins } = countingClient();
    const v = vault({ client, auth: { appRole: { roleId, mount: APPROLE } } });
    try {
      expect(
        (await v.fetch(v.kv(`secret/${RUN}/approle/no-secret`, { field: 'value' }), signal())).value,
      ).toEqual({ value: 'role id only' });
      expect(logins).toHaveLength(1);
    } finally {
      await v.close();
    }
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

  // The token-lifetime tests wait for the server's clock (TTLs of seconds): they run side by side.
  it.concurrent('renews a short-TTL renewable token ahead of its TTL, and stops at close()', async () => {
    const token = await tokenWith([POLICY], { ttl: '3s', renewable: true });
    await putKv(`${RUN}/renew/x`, { value: 'kept' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    const ref = v.kv(`secret/${RUN}/renew/x`, { field: 'value' });
    const started = Date.now();
    await v.fetch(ref, signal());
    expect(count('GET auth/token/lookup-self')).toBe(1);
    // Two renewals take the token past the 3 s it was created with.
    await until('two renewals', () => count('POST auth/token/renew-self') >= 2);
    expect(Date.now() - started).toBeGreaterThan(3_000);
    expect((await v.fetch(ref, signal())).value).toEqual({ value: 'kept' });
    await v.close();
    const atClose = count('POST auth/token/renew-self');
    // Without renewals the server lets the token expire within its TTL: wait for that, not for a while.
    await until('the token to expire', async () => (await tokenTtl(token)) === undefined);
    expect(count('POST auth/token/renew-self')).toBe(atClose);
    expect(await failure(v.fetch(ref, signal()))).toBeInstanceOf(ClosedError);
  });

  it.concurrent('keeps a periodic token alive past its period, renewing to the period each time', async () => {
    const token = await tokenWith([POLICY], { period: '3s' });
    await putKv(`${RUN}/renew/periodic`, { value: 'periodic' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    const ref = v.kv(`secret/${RUN}/renew/periodic`, { field: 'value' });
    const started = Date.now();
    try {
      await v.fetch(ref, signal());
      // Renewals come every 2/3 of the 3 s period (the first after at most 2 s): four take it past two periods,
      // which only renewals back to the full period can do.
      await until('four renewals', () => count('POST auth/token/renew-self') >= 4);
      expect(Date.now() - started).toBeGreaterThan(6_000);
      // Vault reports whole seconds: just before a renewal a live token can read 0. That it is alive is what
      // the read below shows; the TTL shows it was renewed to the period, never beyond.
      const ttl = await tokenTtl(token);
      expect(ttl).toBeGreaterThanOrEqual(0);
      expect(ttl).toBeLessThanOrEqual(3);
      expect((await v.fetch(ref, signal())).value).toEqual({ value: 'periodic' });
      // Each renewal is of the period again, never capped: no lookup, no fallback.
      expect(count('GET auth/token/lookup-self')).toBe(1);
    } finally {
      await v.close();
    }
  });

  it.concurrent('a static token at its explicit_max_ttl runs out: a non-transient denial, not a not-found', async () => {
    const token = await tokenWith([POLICY], { ttl: '2s', explicit_max_ttl: '4s', renewable: true });
    await putKv(`${RUN}/renew/capped`, { value: 'capped' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    const ref = v.kv(`secret/${RUN}/renew/capped`, { field: 'value' });
    try {
      await v.fetch(ref, signal());
      await until('the token to expire', async () => (await tokenTtl(token)) === undefined);
      // Renewed while renewing helped, then left to run out: Vault caps renewals at explicit_max_ttl.
      expect(count('POST auth/token/renew-self')).toBeGreaterThanOrEqual(1);
      const err = await failure(v.fetch(ref, signal()));
      expect(err).toBeInstanceOf(FetchError);
      expect(err).not.toBeInstanceOf(SecretNotFoundError);
      expect((err as FetchError).transient).toBe(false);
      expect(err.message).toMatch(/denied permission/);
    } finally {
      await v.close();
    }
  });

  for (const cap of ['token_max_ttl', 'token_explicit_max_ttl'] as const) {
    it.concurrent(`logs in anew when renewal reaches the ${cap} of an AppRole token`, async () => {
      const role = `short-${cap.replace(/_/g, '-')}`;
      await api('POST', `auth/${APPROLE}/role/${role}`, {
        token_policies: POLICY,
        // The first renewal (at 2 s) comes back capped at what is left of the 4 s: a new login follows.
        token_ttl: '3s',
        [cap]: '4s',
      });
      const roleId = String((await api('GET', `auth/${APPROLE}/role/${role}/role-id`)).data?.role_id);
      const secretId = await newSecretId(role);
      await putKv(`${RUN}/renew/approle`, { value: 'short-lived' });
      const { client, logins, count } = countingClient();
      const v = vault({ client, auth: { appRole: { roleId, secretId, mount: APPROLE } } });
      const ref = v.kv(`secret/${RUN}/renew/approle`, { field: 'value' });
      try {
        await v.fetch(ref, signal());
        expect(logins).toHaveLength(1);
        const [first] = logins;
        if (!first) throw new Error('no login');
        // Renewal reaches the cap; the provider logs in anew in the background, and the server then forgets
        // the first token.
        await until('a second login', () => logins.length >= 2);
        await until('the first token to expire', async () => (await tokenTtl(first)) === undefined);
        expect(count('POST auth/token/renew-self')).toBeGreaterThanOrEqual(1);
        // Once a renewal comes back capped, renewing again would extend nothing: each token is renewed once.
        expect(count('POST auth/token/renew-self')).toBeLessThanOrEqual(logins.length);
        expect((await v.fetch(ref, signal())).value).toEqual({ value: 'short-lived' });
        // The background login kept a live token ready: the fetch found no expired token to replace.
        expect(count(`GET secret/data/${RUN}/renew/approle`)).toBe(2);
      } finally {
        await v.close();
      }
    });
  }

  it('a token TTL beyond what one timer can wait (~24.8 days) neither renews in a loop nor warns', async (context) => {
    // Tuning the token store's max TTL is server-wide: a server of its own, never the shared one.
    const bao = await startBao();
    if (typeof bao === 'string') return context.skip(`no server of its own to tune: ${bao}`);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const own = async (path: string, body: unknown) => {
        const response = await fetch(`${bao.url}/v1/${path}`, {
          method: 'POST',
          headers: { 'X-Vault-Token': bao.rootToken, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
        const text = await response.text();
        if (!response.ok) throw new Error(`${path}: ${response.status} ${text}`);
        return (text ? JSON.parse(text) : {}) as ApiReply;
      };
      await own('sys/mounts/auth/token/tune', { max_lease_ttl: '2000h' });
      await own('sys/policies/acl/app', { policy: 'path "secret/data/app/*" { capabilities = ["read"] }' });
      await own('secret/data/app/tls', { data: { value: 'long' } });
      // 1,500 h: renewal is due at 1,000 h (~41.7 days), past setTimeout's 2^31-1 ms.
      const created = await own('auth/token/create', { ttl: '1500h', policies: ['app'] });
      const { client, count } = countingClient(bao.url);
      const v = vault({ client, auth: { token: String(created.auth?.client_token) } });
      try {
        const ref = v.kv('secret/app/tls', { field: 'value', kvVersion: 2, mount: 'secret' });
        expect((await v.fetch(ref, signal())).value).toEqual({ value: 'long' });
        // An overflowing timer fires after 1 ms: by the end of a second round trip it would have renewed.
        await v.fetch(ref, signal());
        await new Promise((resolve) => setImmediate(resolve));
        expect(count('GET auth/token/lookup-self')).toBe(1);
        expect(count('POST auth/token/renew-self')).toBe(0);
        expect(warnings).not.toContain('TimeoutOverflowWarning');
      } finally {
        await v.close();
      }
    } finally {
      process.off('warning', onWarning);
      await bao.close();
    }
  });

  it('never renews a root token', async () => {
    await putKv(`${RUN}/renew/root`, { value: 'r' });
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token: rootToken } });
    await v.fetch(v.kv(`secret/${RUN}/renew/root`, { field: 'value' }), signal());
    await v.fetch(v.kv(`secret/${RUN}/renew/root`, { field: 'value' }), signal());
    expect(count('GET auth/token/lookup-self')).toBe(1);
    // The root token has no TTL, so nothing was scheduled: a renewal could only come from this very tick.
    expect(count('POST auth/token/renew-self')).toBe(0);
    await v.close();
  });

  it('logs in with a Kubernetes service-account JWT that real OpenBao reviews through the TokenReview API', async () => {
    const reviewer = await startTokenReview();
    const dir = await mkdtemp(join(tmpdir(), 'tlss-k8s-'));
    try {
      await api('POST', `sys/auth/${K8S}`, { type: 'kubernetes' });
      await api('POST', `auth/${K8S}/config`, {
        kubernetes_host: reviewer.url,
        kubernetes_ca_cert: reviewer.caPem,
        // Outside a pod: no local service-account token or CA to fall back on.
        disable_local_ca_jwt: true,
      });
      await api('POST', `auth/${K8S}/role/web`, {
        bound_service_account_names: 'web',
        bound_service_account_namespaces: 'apps',
        token_policies: POLICY,
        token_ttl: '1h',
      });
      const jwtPath = join(dir, 'token');
      const first = reviewer.issue('apps', 'web');
      await writeFile(jwtPath, `${first}\n`);
      await putKv(`${RUN}/k8s/x`, { value: 'k' });
      const { client, calls, logins } = countingClient();
      const v = vault({ client, auth: { kubernetes: { role: 'web', jwtPath, mount: K8S } } });
      try {
        const ref = v.kv(`secret/${RUN}/k8s/x`, { field: 'value' });
        expect((await v.fetch(ref, signal())).value).toEqual({ value: 'k' });
        expect(calls).toContain(`POST auth/${K8S}/login`);
        // OpenBao called the API with the login JWT as bearer, and asked about that same JWT.
        expect(reviewer.reviews).toEqual([{ bearer: first, token: first }]);

        // The kubelet rotates the file; the next login reads it again.
        const second = reviewer.issue('apps', 'web');
        await writeFile(jwtPath, `${second}\n`);
        await api('POST', 'auth/token/revoke', { token: logins[0] });
        expect((await v.fetch(ref, signal())).value).toEqual({ value: 'k' });
        expect(reviewer.reviews.at(-1)).toEqual({ bearer: second, token: second });
      } finally {
        await v.close();
      }

      // A JWT the API does not vouch for: OpenBao answers 403, the login fails for good.
      const forged = join(dir, 'forged');
      await writeFile(forged, reviewer.issue('apps', 'web', { reviewed: false }));
      const refused = vault({
        endpoint: url,
        auth: { kubernetes: { role: 'web', jwtPath: forged, mount: K8S } },
      });
      const denied = await failure(
        refused.fetch(refused.kv(`secret/${RUN}/k8s/x`, { field: 'value' }), signal()),
      );
      expect(denied).toBeInstanceOf(FetchError);
      expect((denied as FetchError).transient).toBe(false);
      expect(denied.message).toMatch(/Kubernetes login failed/);
      expect(inspect(denied, { depth: Number.POSITIVE_INFINITY })).toMatch(/403/);
      await refused.close();

      // A service account the role is not bound to: refused by OpenBao itself.
      const other = join(dir, 'other');
      await writeFile(other, reviewer.issue('apps', 'intruder'));
      const unbound = vault({
        endpoint: url,
        auth: { kubernetes: { role: 'web', jwtPath: other, mount: K8S } },
      });
      const notBound = await failure(
        unbound.fetch(unbound.kv(`secret/${RUN}/k8s/x`, { field: 'value' }), signal()),
      );
      expect(notBound).toBeInstanceOf(FetchError);
      expect((notBound as FetchError).transient).toBe(false);
      await unbound.close();

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
      await reviewer.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The part of the Kubernetes API that Vault's Kubernetes auth calls: `POST
 * /apis/authentication.k8s.io/v1/tokenreviews` over HTTPS (its CA goes into `kubernetes_ca_cert`). It vouches
 * for the service-account JWTs it issued itself (RS256-signed, with the claims a real one carries), and
 * records who asked about which token.
 */
async function startTokenReview() {
  const ca = await createTestCA();
  const leaf = await ca.issue({
    commonName: 'kubernetes',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  /** JWT → the service account it stands for; absent or false: not vouched for. */
  const vouched = new Map<string, { namespace: string; name: string; uid: string } | false>();
  const reviews: { bearer: string; token: string }[] = [];
  const server = createHttpsServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (req.method !== 'POST' || req.url !== '/apis/authentication.k8s.io/v1/tokenreviews') {
        res.writeHead(404).end();
        return;
      }
      const review = JSON.parse(body) as { spec?: { token?: string } };
      const token = review.spec?.token ?? '';
      reviews.push({ bearer, token });
      // The API authenticates its caller first: the bearer (here the JWT itself) must be one it knows.
      if (!vouched.get(bearer)) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 401 }));
        return;
      }
      const account = vouched.get(token);
      const status = account
        ? {
            authenticated: true,
            user: {
              username: `system:serviceaccount:${account.namespace}:${account.name}`,
              uid: account.uid,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${account.namespace}`],
            },
          }
        : { authenticated: false, error: 'token not valid' };
      res.writeHead(201, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', status }));
    });
  });
  const port = await listen(server);
  const sign = (claims: object) => {
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const unsigned = `${part({ alg: 'RS256', typ: 'JWT', kid: 'test' })}.${part(claims)}`;
    const signature = createSign('RSA-SHA256').update(unsigned).sign(privateKey).toString('base64url');
    return `${unsigned}.${signature}`;
  };
  return {
    url: `https://127.0.0.1:${port}`,
    caPem: ca.certPem,
    reviews,
    /** A legacy service-account token for `namespace/name`, vouched for by the API unless `reviewed: false`. */
    issue(namespace: string, name: string, options: { reviewed?: boolean } = {}) {
      const uid = randomUUID();
      const jwt = sign({
        iss: 'kubernetes/serviceaccount',
        sub: `system:serviceaccount:${namespace}:${name}`,
        'kubernetes.io/serviceaccount/namespace': namespace,
        'kubernetes.io/serviceaccount/service-account.name': name,
        'kubernetes.io/serviceaccount/service-account.uid': uid,
        'kubernetes.io/serviceaccount/secret.name': `${name}-token-${uid.slice(0, 5)}`,
        jti: randomUUID(),
      });
      vouched.set(jwt, options.reviewed === false ? false : { namespace, name, uid });
      return jwt;
    },
    close: () => closeServer(server as unknown as tls.Server),
  };
}

describe.skipIf(NO_VAULT || !IS_OPENBAO)(
  `vault provider: namespaces ${NO_VAULT || IS_OPENBAO ? ON : '(skipped: namespaces need OpenBao or Vault Enterprise)'}`,
  () => {
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
  },
);

describe.skipIf(NO_VAULT)(`vault provider: policies ${ON}`, () => {
  it('a path the policy lacks is a non-transient denial, never a not-found, whether it exists or not', async () => {
    await putKv(`${RUN}-outside/exists`, { value: 'not yours' });
    const token = await tokenWith([POLICY]);
    const v = vault({ endpoint: url, auth: { token } });
    try {
      // Inside the policy, a missing secret is a real not-found.
      const missing = await failure(
        v.fetch(v.kv(`secret/${RUN}/policy/absent`, { field: 'value' }), signal()),
      );
      expect(missing).toBeInstanceOf(SecretNotFoundError);
      for (const path of [`secret/${RUN}-outside/exists`, `secret/${RUN}-outside/absent`]) {
        // With the mount given (no detection), the read itself is refused: 403 for both, so nothing leaks.
        const denied = await failure(
          v.fetch(v.kv(path, { field: 'value', kvVersion: 2, mount: 'secret' }), signal()),
        );
        expect(denied).toBeInstanceOf(FetchError);
        expect(denied).not.toBeInstanceOf(SecretNotFoundError);
        expect((denied as FetchError).transient).toBe(false);
        expect(denied.message).toMatch(/Vault denied permission \(read secret\/data\//);
        expect(inspect(denied, { depth: Number.POSITIVE_INFINITY })).toMatch(
          /Vault HTTP 403:[\s\S]*permission denied/,
        );
      }
    } finally {
      await v.close();
    }
    // A token with no capability anywhere under the mount (a policy name that grants nothing, plus
    // `default`) cannot even have it detected: the lookup is refused first, and the error says what to set.
    const stranger = vault({
      endpoint: url,
      auth: { token: await tokenWith([`${RUN}-no-such-policy`]) },
    });
    try {
      const detected = await failure(
        stranger.fetch(stranger.kv(`secret/${RUN}/policy/absent`, { field: 'value' }), signal()),
      );
      expect(detected).toBeInstanceOf(FetchError);
      expect(detected).not.toBeInstanceOf(SecretNotFoundError);
      expect((detected as FetchError).transient).toBe(false);
      expect(detected.message).toMatch(
        /cannot detect the KV mount of secret\/.*: no such mount, or the token has no capability/,
      );
    } finally {
      await stranger.close();
    }
  });

  it('a token Vault does not know (made up, or revoked) is named as the likely fault, not the mount', async () => {
    const revoked = await tokenWith([POLICY]);
    await api('POST', 'auth/token/revoke', { token: revoked });
    for (const token of [`hvs.${randomUUID()}`, revoked]) {
      // With the mount detected, and with it given (the read itself is refused).
      for (const options of [{}, { kvVersion: 2 as const, mount: 'secret' }]) {
        const v = vault({ endpoint: url, auth: { token } });
        try {
          const refused = await failure(
            v.fetch(v.kv(`secret/${RUN}/app/tls`, { field: 'value', ...options }), signal()),
          );
          expect(refused).toBeInstanceOf(FetchError);
          expect((refused as FetchError).transient).toBe(false);
          expect(refused.message).toMatch(/the token is most likely invalid, expired or revoked/);
          expect(refused.message).not.toMatch(/set the kvVersion/);
          // The token is not in the message (nor in the cause: the canary suite scans those).
          expect(inspect(refused, { showHidden: true, depth: Number.POSITIVE_INFINITY })).not.toContain(
            token,
          );
        } finally {
          await v.close();
        }
      }
    }
    // A token that worked and is revoked while in use: the next read names it too.
    const inUse = await tokenWith([POLICY]);
    await api('POST', `secret/data/${RUN}/app/in-use`, { data: { value: 'v1' } });
    const v = vault({ endpoint: url, auth: { token: inUse } });
    try {
      const ref = v.kv(`secret/${RUN}/app/in-use`, { field: 'value' });
      expect((await v.fetch(ref, signal())).value).toBeDefined();
      await api('POST', 'auth/token/revoke', { token: inUse });
      const refused = await failure(v.fetch(ref, signal()));
      expect(refused.message).toMatch(
        /Vault denied permission, .*the token is most likely invalid, expired or revoked/,
      );
    } finally {
      await v.close();
    }
    // A token made without the default policy cannot look itself up either: Vault answers it as it answers a
    // token it does not know, and the message says both.
    const noDefault = vault({ endpoint: url, auth: { token: await tokenWith([POLICY], {}, true) } });
    try {
      const denied = await failure(
        noDefault.fetch(
          noDefault.kv(`secret/${RUN}-elsewhere/x`, { field: 'value', kvVersion: 2, mount: 'secret' }),
          signal(),
        ),
      );
      expect(denied.message).toMatch(/or was made without the default policy/);
    } finally {
      await noDefault.close();
    }
    // A valid token that its policy denies a path is not called invalid.
    const limited = vault({ endpoint: url, auth: { token: await tokenWith([POLICY]) } });
    try {
      const denied = await failure(
        limited.fetch(
          limited.kv(`secret/${RUN}-elsewhere/x`, { field: 'value', kvVersion: 2, mount: 'secret' }),
          signal(),
        ),
      );
      expect(denied.message).toMatch(/^Vault denied permission \(read /);
    } finally {
      await limited.close();
    }
  });

  it('a missing mount is a 403 for a non-root token: a non-transient FetchError, not a not-found', async () => {
    const token = await tokenWith([POLICY]);
    const v = vault({ endpoint: url, auth: { token } });
    try {
      const detected = await failure(v.fetch(v.kv(`${RUN}-nomount/app/tls`, { field: 'value' }), signal()));
      expect(detected).toBeInstanceOf(FetchError);
      expect((detected as FetchError).transient).toBe(false);
      expect(detected.message).toMatch(
        new RegExp(`cannot detect the KV mount of ${RUN}-nomount/app/tls: no such mount`),
      );
      const given = await failure(
        v.fetch(
          v.kv(`${RUN}-nomount/app/tls`, { field: 'value', kvVersion: 2, mount: `${RUN}-nomount` }),
          signal(),
        ),
      );
      expect(given).toBeInstanceOf(FetchError);
      expect(given).not.toBeInstanceOf(SecretNotFoundError);
      expect((given as FetchError).transient).toBe(false);
      expect(given.message).toMatch(/denied permission/);
    } finally {
      await v.close();
    }
  });

  it('a token without the default policy cannot look itself up: it is used as it is', async () => {
    await putKv(`${RUN}/policy/bare`, { value: 'bare' });
    const token = await tokenWith([POLICY], { ttl: '1h' }, true);
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    try {
      expect((await v.fetch(v.kv(`secret/${RUN}/policy/bare`, { field: 'value' }), signal())).value).toEqual({
        value: 'bare',
      });
      // lookup-self was refused (403) and taken as "no TTL known", not as a failure of the read.
      expect(count('GET auth/token/lookup-self')).toBe(1);
    } finally {
      await v.close();
    }
  });

  it('a policy without metadata access: the version probe falls back to reading the data', async () => {
    const path = `${RUN}/policy/data-only`;
    await putKv(path, { value: 'one' });
    const token = await tokenWith([DATA_ONLY], {}, true);
    const { client, count } = countingClient();
    const v = vault({ client, auth: { token } });
    const ref = v.kv(`secret/${path}`, { field: 'value', kvVersion: 2, mount: 'secret' });
    const resolver = createResolver({ passphrase: ref }, { refreshIntervalMs: 3_600_000 });
    try {
      expect((await resolver.resolve()).passphrase).toBe('one');
      expect((await resolver.refresh()).rotated).toBe(false);
      expect(count(`GET secret/metadata/${path}`)).toBe(1);
      await putKv(path, { value: 'two' });
      expect((await resolver.refresh()).rotated).toBe(true);
      expect((await resolver.resolve()).passphrase).toBe('two');
      // Refused once, the metadata is not asked again: the refreshes read the data.
      expect(count(`GET secret/metadata/${path}`)).toBe(1);
      expect(resolver.status().fields[0]?.version).toMatch(/^2@/);
    } finally {
      await resolver.close();
      await v.close();
    }
  });

  it('AppRole with a least-privilege policy: reads and probes its KV paths, issues from its role, nothing else', async () => {
    const path = `${RUN}/least/tls`;
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'least.test.internal' });
    await putKv(path, { key: leaf.keyPem, cert: leaf.certPem });
    const secretId = await newSecretId('app');
    const { client, logins } = countingClient();
    const v = vault({ client, auth: { appRole: { roleId: appRoleId, secretId, mount: APPROLE } } });
    const kv = createResolver(
      { key: v.kv(`secret/${path}`, { field: 'key' }), cert: v.kv(`secret/${path}`, { field: 'cert' }) },
      { refreshIntervalMs: 3_600_000 },
    );
    const issued = createResolver(
      { ...v.pki(PKI, 'web', { commonName: 'least.test.internal', ttl: '1h' }) },
      { refreshIntervalMs: 3_600_000 },
    );
    try {
      await kv.resolve();
      expect((await kv.refresh()).rotated).toBe(false);
      const options = await issued.resolve();
      const { authorized } = await handshake(
        { key: options.key, cert: options.cert },
        { ca: options.ca, servername: 'least.test.internal' },
      );
      expect(authorized).toBe(true);
      expect(logins).toHaveLength(1);
      // The same token, one step outside: another PKI role, a KV path outside the prefix, a sys/ path.
      const refusals = [
        () => v.fetch(v.pki(PKI, 'other', { commonName: 'least.test.internal' }).cert, signal()),
        () =>
          v.fetch(
            v.kv(`secret/${RUN}-elsewhere/tls`, { field: 'key', kvVersion: 2, mount: 'secret' }),
            signal(),
          ),
      ];
      for (const refusal of refusals) {
        const err = await failure(refusal());
        expect(err).toBeInstanceOf(FetchError);
        expect(err).not.toBeInstanceOf(SecretNotFoundError);
        expect((err as FetchError).transient).toBe(false);
        expect(err.message).toMatch(/denied permission/);
      }
      // Each refusal tried one fresh login (a 403 may be an expired token), and the role's tokens still fail.
      expect(logins).toHaveLength(3);
      const mounts = await fetch(`${url}/v1/sys/mounts`, { headers: { 'X-Vault-Token': String(logins[0]) } });
      expect(mounts.status).toBe(403);
    } finally {
      await kv.close();
      await issued.close();
      await v.close();
    }
  });
});

describe.skipIf(NO_VAULT)(`vault provider: failures ${ON}`, () => {
  it('an unreachable Vault is a transient FetchError naming the network code', async () => {
    const v = vault({ endpoint: `http://127.0.0.1:${await closedPort()}`, auth: { token: 't' } });
    const err = await failure(v.fetch(v.kv('secret/app', { field: 'f' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(true);
    expect(err.message).toMatch(/cannot reach Vault \(ECONNREFUSED/);
  });

  it('a Vault host that does not resolve is a transient FetchError naming the DNS code', async () => {
    const v = vault({ endpoint: 'http://tls-secrets-nonexistent.invalid:8200', auth: { token: 't' } });
    const err = await failure(v.fetch(v.kv('secret/app', { field: 'f' }), signal()));
    expect(err).toBeInstanceOf(FetchError);
    expect((err as FetchError).transient).toBe(true);
    expect(err.message).toMatch(/cannot reach Vault \((ENOTFOUND|EAI_AGAIN)/);
  });

  it('a really sealed Vault is a transient FetchError, and the same provider reads again once unsealed', async (context) => {
    // Sealing is for a server of its own: the run's shared server (or an operator's) is never sealed.
    const bao = await startBao();
    if (typeof bao === 'string') return context.skip(`no server of its own to seal: ${bao}`);
    try {
      const own = (method: string, path: string, body: unknown) =>
        fetch(`${bao.url}/v1/${path}`, {
          method,
          headers: { 'X-Vault-Token': bao.rootToken, 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        }).then((r) => expect(r.ok).toBe(true));
      await own('POST', 'secret/data/app/tls', { data: { value: 'x' } });
      const v = vault({ endpoint: bao.url, auth: { token: bao.rootToken } });
      const ref = v.kv('secret/app/tls', { field: 'value' });
      expect((await v.fetch(ref, signal())).value).toEqual({ value: 'x' });
      await bao.seal();
      const err = await failure(v.fetch(ref, signal()));
      expect(err).toBeInstanceOf(FetchError);
      expect((err as FetchError).transient).toBe(true);
      expect(err.message).toMatch(/Vault is sealed \(503\)/);
      await bao.unseal();
      // Unsealing may take the server a moment to serve again: poll for the read, with a deadline.
      let value: unknown;
      await until('a read after unseal', () =>
        v.fetch(ref, signal()).then(
          (result) => {
            value = result.value;
            return true;
          },
          () => false,
        ),
      );
      expect(value).toEqual({ value: 'x' });
      await v.close();
    } finally {
      await bao.close();
    }
  });

  it('429, 500, 502, a standby 503 and 412 (through a fault proxy) are transient FetchErrors, and the next read succeeds', async () => {
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    const proxy = await startFaultProxy(url);
    const v = vault({ endpoint: proxy.url, auth: { token: rootToken } });
    try {
      const ref = v.kv(`secret/${RUN}/faults/x`, { field: 'value' });
      await v.fetch(ref, signal());
      for (const [fault, message] of [
        [vaultFaults.rateLimited, /rate limit exceeded \(429\)/],
        [vaultFaults.internal, /server error \(500\)/],
        [vaultFaults.badGateway, /server error \(502\)/],
        // Answers a single dev server never gives: a standby node, and Enterprise's 412 retry request.
        [vaultFaults.standby, /Vault is unavailable \(503\)/],
        [vaultFaults.notCaughtUp, /server error \(412\)/],
      ] as const) {
        await proxy.setFault({ ...fault, pathPrefix: '/v1/secret/data/' });
        const err = await failure(v.fetch(ref, signal()));
        expect(err).toBeInstanceOf(FetchError);
        expect((err as FetchError).transient).toBe(true);
        expect(err.message).toMatch(message);
        await proxy.setFault({ kind: 'none' });
        expect((await v.fetch(ref, signal())).value).toEqual({ value: 'x' });
      }
      expect(proxy.faulted).toBe(5);
    } finally {
      await v.close();
      await proxy.close();
    }
  });

  it('a hung Vault (through a fault proxy) times out within requestTimeoutMs', async () => {
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    const proxy = await startFaultProxy(url);
    const v = vault({ endpoint: proxy.url, auth: { token: rootToken }, requestTimeoutMs: 300 });
    try {
      await proxy.setFault({ kind: 'hang' });
      const started = Date.now();
      const err = await failure(v.fetch(v.kv(`secret/${RUN}/faults/x`, { field: 'value' }), signal()));
      expect(Date.now() - started).toBeLessThan(2_000);
      expect(err).toBeInstanceOf(FetchError);
      expect((err as FetchError).transient).toBe(true);
      expect(err.message).toMatch(/timed out after 300 ms/);
    } finally {
      await v.close();
      await proxy.close();
    }
  });

  it("the fetch's AbortSignal ends a request at once (hung server behind a fault proxy)", async () => {
    await putKv(`${RUN}/faults/x`, { value: 'x' });
    const proxy = await startFaultProxy(url);
    const v = vault({ endpoint: proxy.url, auth: { token: rootToken } });
    try {
      const ref = v.kv(`secret/${RUN}/faults/x`, { field: 'value' });
      await v.fetch(ref, signal());
      await proxy.setFault({ kind: 'hang' });
      const controller = new AbortController();
      const pending = failure(v.fetch(ref, controller.signal));
      // Abort once the request is really at the server, not on a timer.
      await until('the request to reach the proxy', () => proxy.faulted === 1);
      const abortedAt = Date.now();
      controller.abort(new Error('resolver gave up'));
      const err = await pending;
      expect(Date.now() - abortedAt).toBeLessThan(1_000);
      expect(err).toBeInstanceOf(FetchError);
      expect(err.message).toMatch(/aborted/);
    } finally {
      await v.close();
      await proxy.close();
    }
  });
});
