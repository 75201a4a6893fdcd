/**
 * Checks the Vault stand-in against the documented wire facts (stores-api.md section A and the Vault
 * sources cited there), with plain fetch, as a client of a real dev-mode Vault would see them.
 */
import 'reflect-metadata';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startVaultStandin, type VaultStandin } from './vault-standin/index.js';

let vault: VaultStandin;

interface CallOptions {
  token?: string | null;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

interface CallResult {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test access to arbitrary JSON bodies
  json: any;
}

async function call(method: string, path: string, options: CallOptions = {}): Promise<CallResult> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? vault.rootToken : options.token;
  if (token !== null) headers['X-Vault-Token'] = token;
  if (options.body !== undefined) headers['Content-Type'] ??= 'application/json';
  const res = await fetch(`${vault.url}/v1/${path}`, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  const text = await res.text();
  let json: unknown = null;
  if (res.headers.get('content-type') === 'application/json' && text) json = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, json };
}

const ENVELOPE_KEYS = [
  'auth',
  'data',
  'lease_duration',
  'lease_id',
  'mount_type',
  'renewable',
  'request_id',
  'warnings',
  'wrap_info',
];
const RFC3339_NANO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

beforeAll(async () => {
  vault = await startVaultStandin();
});

afterAll(async () => {
  await vault.close();
});

afterEach(() => {
  vault.resetFaults();
});

describe('envelope, tokens in headers, methods', () => {
  it('answers a KV v2 write with the full envelope of api/secret.go', async () => {
    const res = await call('POST', 'secret/data/envelope', { body: { data: { a: '1' } } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.json).sort()).toEqual(ENVELOPE_KEYS);
    expect(res.json.request_id).toMatch(UUID);
    expect(res.json).toMatchObject({
      lease_id: '',
      lease_duration: 0,
      renewable: false,
      auth: null,
      wrap_info: null,
    });
    expect(res.json.data).toMatchObject({
      version: 1,
      deletion_time: '',
      destroyed: false,
      custom_metadata: null,
    });
    expect(res.json.data.created_time).toMatch(RFC3339_NANO);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it('accepts Authorization: Bearer, and refuses missing or unknown tokens with 403', async () => {
    const bearer = await call('GET', 'secret/data/envelope', {
      token: null,
      headers: { Authorization: `Bearer ${vault.rootToken}` },
    });
    expect(bearer.status).toBe(200);
    expect(bearer.json.data.data).toEqual({ a: '1' });
    const missing = await call('GET', 'secret/data/envelope', { token: null });
    expect(missing).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
    const unknown = await call('GET', 'secret/data/envelope', { token: 'hvs.nope' });
    expect(unknown).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
  });

  it('treats PUT as POST, and LIST as GET ?list=true', async () => {
    expect((await call('PUT', 'secret/data/dir/one', { body: { data: { n: 1 } } })).status).toBe(200);
    await call('POST', 'secret/data/dir/sub/two', { body: { data: { n: 2 } } });
    const list = await call('LIST', 'secret/metadata/dir');
    const get = await call('GET', 'secret/metadata/dir/?list=true');
    expect(list.status).toBe(200);
    expect(list.json.data.keys).toEqual(['one', 'sub/']);
    expect(get.json.data.keys).toEqual(['one', 'sub/']);
    expect(await call('LIST', 'secret/metadata/no-such-dir')).toMatchObject({
      status: 404,
      json: { errors: [] },
    });
  });

  it('answers unknown mounts with 404 and unsupported operations with 405', async () => {
    const route = await call('GET', 'nowhere/thing');
    expect(route.status).toBe(404);
    expect(route.json.errors[0]).toContain('no handler for route "nowhere/thing"');
    expect((await call('LIST', 'secret/data/envelope')).status).toBe(405);
  });

  it('rejects a body that is not JSON with 400', async () => {
    const res = await fetch(`${vault.url}/v1/secret/data/x`, {
      method: 'POST',
      headers: { 'X-Vault-Token': vault.rootToken },
      body: '{not json',
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errors: string[] }).errors[0]).toMatch(/^failed to parse JSON input/);
  });
});

describe('KV v2', () => {
  it('tells missing, soft-deleted and destroyed versions apart by their 404 bodies', async () => {
    expect(await call('GET', 'secret/data/never-written')).toMatchObject({
      status: 404,
      json: { errors: [] },
    });

    await call('POST', 'secret/data/lifecycle', { body: { data: { v: 'one' } } });
    await call('POST', 'secret/data/lifecycle', { body: { data: { v: 'two' } } });
    expect(await call('GET', 'secret/data/lifecycle?version=7')).toMatchObject({
      status: 404,
      json: { errors: [] },
    });

    expect((await call('DELETE', 'secret/data/lifecycle')).status).toBe(204);
    const deleted = await call('GET', 'secret/data/lifecycle');
    expect(deleted.status).toBe(404);
    expect(Object.keys(deleted.json).sort()).toEqual(ENVELOPE_KEYS);
    expect(deleted.json.data.data).toBeNull();
    expect(deleted.json.data.metadata).toMatchObject({ version: 2, destroyed: false });
    expect(deleted.json.data.metadata.deletion_time).toMatch(RFC3339_NANO);

    const old = await call('GET', 'secret/data/lifecycle?version=1');
    expect(old.status).toBe(200);
    expect(old.json.data.data).toEqual({ v: 'one' });

    expect((await call('POST', 'secret/undelete/lifecycle', { body: { versions: [2] } })).status).toBe(204);
    expect((await call('GET', 'secret/data/lifecycle')).json.data.data).toEqual({ v: 'two' });

    expect((await call('POST', 'secret/destroy/lifecycle', { body: { versions: [1] } })).status).toBe(204);
    const destroyed = await call('GET', 'secret/data/lifecycle?version=1');
    expect(destroyed.status).toBe(404);
    expect(destroyed.json.data).toMatchObject({
      data: null,
      metadata: { version: 1, destroyed: true, deletion_time: '' },
    });
  });

  it('enforces check-and-set with the messages of path_data.go', async () => {
    await call('POST', 'secret/data/cas', { body: { data: { v: 1 } } });
    const mismatch = await call('POST', 'secret/data/cas', { body: { data: { v: 2 }, options: { cas: 0 } } });
    expect(mismatch).toMatchObject({
      status: 400,
      json: { errors: ['check-and-set parameter did not match the current version'] },
    });
    const matched = await call('POST', 'secret/data/cas', { body: { data: { v: 2 }, options: { cas: 1 } } });
    expect(matched.json.data.version).toBe(2);
    expect(await call('POST', 'secret/data/cas', { body: {} })).toMatchObject({
      status: 400,
      json: { errors: ['no data provided'] },
    });
    expect((await call('POST', 'secret/metadata/cas', { body: { cas_required: true } })).status).toBe(204);
    expect(await call('POST', 'secret/data/cas', { body: { data: { v: 3 } } })).toMatchObject({
      status: 400,
      json: { errors: ['check-and-set parameter required for this call'] },
    });
    expect(
      await call('POST', 'secret/data/cas-new', { body: { data: { v: 1 }, options: { cas: 'x' } } }),
    ).toMatchObject({ status: 400, json: { errors: ['error parsing check-and-set parameter'] } });
  });

  it('keeps metadata with string version keys and slides the max_versions window', async () => {
    await call('POST', 'secret/metadata/window', {
      body: { max_versions: 2, custom_metadata: { owner: 'team' } },
    });
    for (const v of [1, 2, 3]) await call('POST', 'secret/data/window', { body: { data: { v } } });
    const meta = await call('GET', 'secret/metadata/window');
    expect(meta.json.data).toMatchObject({
      current_version: 3,
      oldest_version: 2,
      max_versions: 2,
      cas_required: false,
      custom_metadata: { owner: 'team' },
    });
    expect(Object.keys(meta.json.data.versions)).toEqual(['2', '3']);
    expect(meta.json.data.versions['3']).toEqual({
      created_time: expect.stringMatching(RFC3339_NANO),
      deletion_time: '',
      destroyed: false,
    });
    expect(meta.json.data.updated_time).toBe(meta.json.data.versions['3'].created_time);
    expect(await call('GET', 'secret/data/window?version=1')).toMatchObject({
      status: 404,
      json: { errors: [] },
    });
    const read = await call('GET', 'secret/data/window');
    expect(read.json.data.metadata.custom_metadata).toEqual({ owner: 'team' });
  });

  it('answers a v1-style path on a v2 mount with 404 and the versioned-path warning', async () => {
    const res = await call('GET', 'secret/envelope');
    expect(res.status).toBe(404);
    expect(res.json.data).toBeNull();
    expect(res.json.warnings[0]).toMatch(
      /^Invalid path for a versioned K\/V secrets engine\..*'vault kv get'/,
    );
  });

  it('applies a JSON merge patch only with the merge-patch content type', async () => {
    await call('POST', 'secret/data/patched', { body: { data: { a: 1, b: 2 } } });
    const wrongType = await call('PATCH', 'secret/data/patched', { body: { data: { b: null } } });
    expect(wrongType.status).toBe(415);
    const patched = await call('PATCH', 'secret/data/patched', {
      body: { data: { b: null, c: 3 } },
      headers: { 'Content-Type': 'application/merge-patch+json' },
    });
    expect(patched.json.data.version).toBe(2);
    expect((await call('GET', 'secret/data/patched')).json.data.data).toEqual({ a: 1, c: 3 });
  });
});

describe('mounts and KV v1', () => {
  it('mounts KV v1, reads the stored map and takes lease_duration from a ttl key', async () => {
    expect(
      (await call('POST', 'sys/mounts/kv1', { body: { type: 'kv', options: { version: '1' } } })).status,
    ).toBe(204);
    expect((await call('POST', 'kv1/app/db', { body: { password: 'p', ttl: '1h' } })).status).toBe(204);
    await call('POST', 'kv1/app/plain', { body: { user: 'u' } });
    const withTtl = await call('GET', 'kv1/app/db');
    expect(withTtl.json).toMatchObject({
      data: { password: 'p', ttl: '1h' },
      lease_id: '',
      renewable: false,
      lease_duration: 3600,
    });
    // Without a ttl key the advisory duration is the mount default, 768h in dev mode.
    expect((await call('GET', 'kv1/app/plain')).json.lease_duration).toBe(768 * 3600);
    expect((await call('LIST', 'kv1/app')).json.data.keys).toEqual(['db', 'plain']);
    expect((await call('DELETE', 'kv1/app/db')).status).toBe(204);
    expect(await call('GET', 'kv1/app/db')).toMatchObject({ status: 404, json: { errors: [] } });
  });

  it('describes mounts in sys/mounts and in the UI mount lookup used to detect KV versions', async () => {
    const mounts = await call('GET', 'sys/mounts');
    expect(mounts.json.data['secret/']).toMatchObject({ type: 'kv', options: { version: '2' } });
    expect(mounts.json.data['kv1/']).toMatchObject({ type: 'kv', options: { version: '1' } });
    expect(mounts.json.data['sys/'].type).toBe('system');

    const ui = await call('GET', 'sys/internal/ui/mounts/secret/some/deep/key');
    expect(ui.json.data).toMatchObject({ type: 'kv', path: 'secret/', options: { version: '2' } });
    const one = await call('GET', 'sys/mounts/kv1');
    expect(one.json.data).toMatchObject({ type: 'kv', options: { version: '1' } });
    expect((await call('GET', 'sys/internal/ui/mounts/not-mounted/x')).status).toBe(403);
    expect((await call('POST', 'sys/mounts/secret', { body: { type: 'kv' } })).json.errors[0]).toBe(
      'path is already in use at secret/',
    );
  });

  it('scopes state by X-Vault-Namespace, also when the namespace leads the path', async () => {
    const ns = { 'X-Vault-Namespace': 'team-a/' };
    await call('POST', 'sys/mounts/secret', { body: { type: 'kv-v2' }, headers: ns });
    await call('POST', 'secret/data/scoped', { body: { data: { in: 'team-a' } }, headers: ns });
    expect((await call('GET', 'secret/data/scoped', { headers: ns })).json.data.data).toEqual({
      in: 'team-a',
    });
    expect((await call('GET', 'team-a/secret/data/scoped')).json.data.data).toEqual({ in: 'team-a' });
    expect(await call('GET', 'secret/data/scoped')).toMatchObject({ status: 404, json: { errors: [] } });
  });
});

describe('tokens and auth methods', () => {
  it('shows the root token as Vault does: no TTL, no renewable key, path auth/token/root', async () => {
    const res = await call('GET', 'auth/token/lookup-self');
    expect(res.json.data).toMatchObject({
      id: vault.rootToken,
      ttl: 0,
      creation_ttl: 0,
      expire_time: null,
      policies: ['root'],
      path: 'auth/token/root',
    });
    expect(res.json.data).not.toHaveProperty('renewable');
    expect(await call('POST', 'auth/token/renew-self', { body: {} })).toMatchObject({
      status: 400,
      json: { errors: ['lease is not renewable'] },
    });
  });

  it('creates tokens that renew within explicit_max_ttl and really expire', async () => {
    const created = await call('POST', 'auth/token/create', {
      body: { ttl: '1s', renewable: true, policies: ['app'], explicit_max_ttl: '1h' },
    });
    const auth = created.json.auth;
    expect(auth).toMatchObject({
      lease_duration: 1,
      renewable: true,
      policies: ['app', 'default'],
      token_type: 'service',
    });
    const lookup = await call('GET', 'auth/token/lookup-self', { token: auth.client_token });
    expect(lookup.json.data).toMatchObject({ renewable: true, creation_ttl: 1, explicit_max_ttl: 3600 });
    expect(lookup.json.data.expire_time).toMatch(RFC3339_NANO);

    const renewed = await call('POST', 'auth/token/renew-self', {
      token: auth.client_token,
      body: { increment: '2h' },
    });
    expect(renewed.json.auth.client_token).toBe(auth.client_token);
    expect(renewed.json.auth.lease_duration).toBeGreaterThan(3590);
    expect(renewed.json.auth.lease_duration).toBeLessThanOrEqual(3600);
    expect(renewed.json.warnings[0]).toContain('exceeded the effective max_ttl');

    const short = await call('POST', 'auth/token/create', { body: { ttl: 1, policies: ['app'] } });
    const token = short.json.auth.client_token as string;
    expect((await call('GET', 'secret/data/envelope', { token })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await call('GET', 'secret/data/envelope', { token })).toMatchObject({
      status: 403,
      json: { errors: ['permission denied'] },
    });
  });

  it('denies secrets to a deny-all token but lets it look itself up', async () => {
    const created = await call('POST', 'auth/token/create', { body: { policies: ['deny-all'], ttl: '1h' } });
    const token = created.json.auth.client_token as string;
    const denied = await call('GET', 'secret/data/envelope', { token });
    expect(denied.status).toBe(403);
    expect(denied.json.errors[0]).toContain('permission denied');
    expect((await call('GET', 'auth/token/lookup-self', { token })).status).toBe(200);
  });

  it('logs in with AppRole and refuses bad credentials with 400', async () => {
    expect((await call('POST', 'sys/auth/approle', { body: { type: 'approle' } })).status).toBe(204);
    await call('POST', 'auth/approle/role/web', {
      body: { token_ttl: '60s', token_max_ttl: '2m', token_policies: 'web' },
    });
    const roleId = (await call('GET', 'auth/approle/role/web/role-id')).json.data.role_id as string;
    const secret = await call('POST', 'auth/approle/role/web/secret-id', { body: {} });
    expect(secret.json.data).toMatchObject({ secret_id_ttl: 0, secret_id_num_uses: 0 });
    const login = await call('POST', 'auth/approle/login', {
      token: null,
      body: { role_id: roleId, secret_id: secret.json.data.secret_id },
    });
    expect(login.status).toBe(200);
    expect(login.json).toMatchObject({ data: null, lease_duration: 0, lease_id: '' });
    expect(login.json.auth).toMatchObject({
      lease_duration: 60,
      renewable: true,
      token_policies: ['default', 'web'],
      metadata: { role_name: 'web' },
    });
    expect((await call('GET', 'secret/data/envelope', { token: login.json.auth.client_token })).status).toBe(
      200,
    );

    const bad = await call('POST', 'auth/approle/login', {
      token: null,
      body: { role_id: roleId, secret_id: 'x' },
    });
    expect(bad).toMatchObject({ status: 400, json: { errors: ['invalid role or secret ID'] } });
  });

  it('logs in with Kubernetes for a bound service account named in the JWT', async () => {
    await call('POST', 'sys/auth/kubernetes', { body: { type: 'kubernetes' } });
    await call('POST', 'auth/kubernetes/config', {
      body: { kubernetes_host: 'https://kubernetes.default.svc' },
    });
    await call('POST', 'auth/kubernetes/role/app', {
      body: {
        bound_service_account_names: ['app-sa'],
        bound_service_account_namespaces: ['prod'],
        token_ttl: '5m',
        token_policies: ['app'],
      },
    });
    const jwtFor = (name: string) =>
      [
        Buffer.from(JSON.stringify({ alg: 'RS256' })).toString('base64url'),
        Buffer.from(
          JSON.stringify({
            iss: 'kubernetes/serviceaccount',
            'kubernetes.io/serviceaccount/namespace': 'prod',
            'kubernetes.io/serviceaccount/service-account.name': name,
            'kubernetes.io/serviceaccount/service-account.uid': 'uid-1',
          }),
        ).toString('base64url'),
        'signature',
      ].join('.');
    const login = await call('POST', 'auth/kubernetes/login', {
      token: null,
      body: { role: 'app', jwt: jwtFor('app-sa') },
    });
    expect(login.json.auth).toMatchObject({
      lease_duration: 300,
      metadata: { role: 'app', service_account_name: 'app-sa', service_account_namespace: 'prod' },
      policies: ['app', 'default'],
    });
    const other = await call('POST', 'auth/kubernetes/login', {
      token: null,
      body: { role: 'app', jwt: jwtFor('other') },
    });
    expect(other.status).toBe(403);
  });
});

describe('PKI', () => {
  let caPem: string;

  beforeAll(async () => {
    await call('POST', 'sys/mounts/pki', { body: { type: 'pki' } });
    const empty = await fetch(`${vault.url}/v1/pki/ca/pem`);
    expect(empty.status).toBe(204);
    const root = await call('POST', 'pki/root/generate/internal', {
      body: { common_name: 'Stand-in Root', ttl: '48h', key_type: 'ec' },
    });
    expect(root.json.data.expiration).toSatisfy(Number.isInteger);
    await call('POST', 'pki/roles/web', {
      body: { allowed_domains: 'example.com', allow_subdomains: true, max_ttl: '2h', key_type: 'ec' },
    });
    const res = await fetch(`${vault.url}/v1/pki/ca/pem`);
    expect(res.headers.get('content-type')).toBe('application/pem-certificate-chain');
    caPem = await res.text();
  });

  it('serves the CA raw, without a trailing newline, and as JSON and DER', async () => {
    expect(caPem.startsWith('-----BEGIN CERTIFICATE-----')).toBe(true);
    expect(caPem.endsWith('-----END CERTIFICATE-----')).toBe(true);
    const ca = new X509Certificate(caPem);
    expect(ca.subject).toBe('CN=Stand-in Root');
    expect(ca.ca).toBe(true);
    const der = Buffer.from(await (await fetch(`${vault.url}/v1/pki/ca`)).arrayBuffer());
    expect(der.equals(ca.raw)).toBe(true);
    const json = await call('GET', 'pki/cert/ca', { token: null });
    expect(json.json.data).toEqual({ certificate: caPem, revocation_time: 0, revocation_time_rfc3339: '' });
  });

  it('issues a real certificate with the requested names and TTL, signed by the CA', async () => {
    const before = Date.now();
    const res = await call('POST', 'pki/issue/web', {
      body: { common_name: 'app.example.com', alt_names: 'api.example.com', ip_sans: '127.0.0.1', ttl: '1h' },
    });
    expect(res.status).toBe(200);
    const data = res.json.data;
    expect(res.json).toMatchObject({ lease_id: '', lease_duration: 0, renewable: false });
    const cert = new X509Certificate(data.certificate);
    const ca = new X509Certificate(caPem);
    expect(cert.subject).toBe('CN=app.example.com');
    expect(cert.subjectAltName?.split(', ').sort()).toEqual([
      'DNS:api.example.com',
      'DNS:app.example.com',
      'IP Address:127.0.0.1',
    ]);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    const notAfter = Date.parse(cert.validTo);
    expect(Math.abs(notAfter - (before + 3600_000))).toBeLessThan(10_000);
    expect(Number.isInteger(data.expiration)).toBe(true);
    expect(data.expiration).toBe(Math.floor(notAfter / 1000));
    expect(data.serial_number).toBe((cert.serialNumber.toLowerCase().match(/../g) ?? []).join(':'));
    expect(data.issuing_ca).toBe(caPem);
    expect(data.ca_chain).toEqual([caPem]);
    expect(data.private_key_type).toBe('ec');
    expect(data.private_key).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    expect(cert.checkPrivateKey(createPrivateKey(data.private_key))).toBe(true);
  });

  it('honours format and private_key_format', async () => {
    const pkcs8 = await call('POST', 'pki/issue/web', {
      body: { common_name: 'a.example.com', private_key_format: 'pkcs8', ttl: '10m' },
    });
    expect(pkcs8.json.data.private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const der = await call('POST', 'pki/issue/web', {
      body: { common_name: 'b.example.com', format: 'der', ttl: '10m' },
    });
    expect(new X509Certificate(Buffer.from(der.json.data.certificate, 'base64')).subject).toBe(
      'CN=b.example.com',
    );
    const bundle = await call('POST', 'pki/issue/web', {
      body: { common_name: 'c.example.com', format: 'pem_bundle', ttl: '10m' },
    });
    const pem = bundle.json.data.certificate as string;
    expect(pem.indexOf('PRIVATE KEY')).toBeLessThan(pem.indexOf('BEGIN CERTIFICATE'));
    expect(pem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it('caps a TTL above max_ttl with a warning and refuses names outside the role', async () => {
    const capped = await call('POST', 'pki/issue/web', { body: { common_name: 'd.example.com', ttl: '5h' } });
    expect(capped.status).toBe(200);
    expect(capped.json.warnings).toEqual([
      'TTL "5h0m0s" is longer than permitted maxTTL "2h0m0s", so maxTTL is being used',
    ]);
    const lifetime = capped.json.data.expiration - Math.floor(Date.now() / 1000);
    expect(lifetime).toBeGreaterThan(7190);
    expect(lifetime).toBeLessThanOrEqual(7200);
    const refused = await call('POST', 'pki/issue/web', { body: { common_name: 'evil.org' } });
    expect(refused).toMatchObject({
      status: 400,
      json: { errors: ['common name evil.org not allowed by this role'] },
    });
    expect((await call('POST', 'pki/issue/nope', { body: { common_name: 'x.example.com' } })).status).toBe(
      400,
    );
    // leaf_not_after_behavior "err": a leaf may not outlive the 48h root.
    await call('POST', 'pki/roles/long', { body: { allow_any_name: true, key_type: 'ec', max_ttl: '100h' } });
    const tooLong = await call('POST', 'pki/issue/long', {
      body: { common_name: 'long.example.com', ttl: '72h' },
    });
    expect(tooLong.status).toBe(400);
    expect(tooLong.json.errors[0]).toMatch(
      /^cannot satisfy request, as TTL would result in notAfter of .* beyond the expiration of the CA certificate/,
    );
  });

  it('gives leased certificates a non-renewable lease that sys/leases/renew refuses', async () => {
    await call('POST', 'pki/roles/leased', {
      body: { allow_any_name: true, generate_lease: true, key_type: 'ec', ttl: '30m' },
    });
    const res = await call('POST', 'pki/issue/leased', { body: { common_name: 'leased.example.com' } });
    expect(res.json.lease_id).toMatch(/^pki\/issue\/leased\/[A-Za-z0-9]{24}$/);
    expect(res.json.renewable).toBe(false);
    expect(Math.abs(res.json.lease_duration - 1800)).toBeLessThanOrEqual(2);
    expect(
      await call('PUT', 'sys/leases/renew', { body: { lease_id: res.json.lease_id, increment: 60 } }),
    ).toMatchObject({
      status: 400,
      json: { errors: ['lease is not renewable'] },
    });
    expect(
      await call('PUT', 'sys/leases/renew', { body: { lease_id: 'pki/issue/leased/unknown' } }),
    ).toMatchObject({
      status: 400,
      json: { errors: ['lease not found'] },
    });
  });

  it('publishes a real CRL signed by the CA that lists revoked serials', async () => {
    const leaf = await call('POST', 'pki/issue/web', {
      body: { common_name: 'revoked.example.com', ttl: '10m' },
    });
    const serial = leaf.json.data.serial_number as string;
    expect((await call('POST', 'pki/revoke', { body: { serial_number: serial } })).json.data.state).toBe(
      'revoked',
    );
    const res = await fetch(`${vault.url}/v1/pki/crl/pem`);
    expect(res.headers.get('content-type')).toBe('application/x-pem-file');
    const crl = new x509.X509Crl(await res.text());
    const ca = new x509.X509Certificate(caPem);
    expect(await crl.verify({ publicKey: await ca.publicKey.export() })).toBe(true);
    expect(crl.entries.map((e) => e.serialNumber.toLowerCase())).toContain(serial.replace(/:/g, ''));
    const der = Buffer.from(await (await fetch(`${vault.url}/v1/pki/crl`)).arrayBuffer());
    expect(new x509.X509Crl(der).entries).toHaveLength(crl.entries.length);
  });

  it('issues RSA leaves with a PKCS#1 key by default', async () => {
    await call('POST', 'pki/roles/rsa', { body: { allow_any_name: true, key_type: 'rsa', max_ttl: '1h' } });
    const res = await call('POST', 'pki/issue/rsa', { body: { common_name: 'rsa.example.com', ttl: '10m' } });
    expect(res.json.data.private_key_type).toBe('rsa');
    expect(res.json.data.private_key).toMatch(/^-----BEGIN RSA PRIVATE KEY-----/);
  });
});

describe('sys/health and seal', () => {
  it('reports an active node with the documented body fields', async () => {
    const res = await call('GET', 'sys/health', { token: null });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      initialized: true,
      sealed: false,
      standby: false,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      enterprise: false,
    });
    for (const key of [
      'server_time_utc',
      'version',
      'cluster_name',
      'cluster_id',
      'echo_duration_ms',
      'clock_skew_ms',
    ]) {
      expect(res.json).toHaveProperty(key);
    }
    const head = await fetch(`${vault.url}/v1/sys/health`, { method: 'HEAD' });
    expect(head.status).toBe(200);
  });

  it('uses every default status code and its query override', async () => {
    const cases: Array<[NonNullable<VaultStandin['faults']['healthState']>, number, string]> = [
      ['standby', 429, 'standbycode'],
      ['drsecondary', 472, 'drsecondarycode'],
      ['perfstandby', 473, 'performancestandbycode'],
      ['haunhealthy', 474, 'haunhealthycode'],
      ['uninitialized', 501, 'uninitcode'],
      ['removed', 530, 'removedcode'],
    ];
    for (const [state, code, param] of cases) {
      vault.faults.healthState = state;
      expect((await call('GET', 'sys/health', { token: null })).status).toBe(code);
      expect((await call('GET', `sys/health?${param}=299`, { token: null })).status).toBe(299);
    }
    vault.faults.healthState = 'standby';
    expect((await call('GET', 'sys/health?standbyok=true', { token: null })).status).toBe(200);
    vault.faults.healthState = 'perfstandby';
    expect((await call('GET', 'sys/health?perfstandbyok=true', { token: null })).status).toBe(200);
    vault.faults.healthState = undefined;
    expect((await call('GET', 'sys/health?activecode=204', { token: null })).status).toBe(204);
    expect((await call('GET', 'sys/health?sealedcode=abc', { token: null })).status).toBe(400);
  });

  it('answers 503 "Vault is sealed" to everything but health while sealed', async () => {
    vault.faults.sealed = true;
    const health = await call('GET', 'sys/health', { token: null });
    expect(health.status).toBe(503);
    expect(health.json).toMatchObject({ sealed: true, initialized: true });
    expect(health.json).not.toHaveProperty('cluster_id');
    expect((await call('GET', 'sys/health?sealedcode=200', { token: null })).status).toBe(200);
    expect(await call('GET', 'secret/data/envelope')).toMatchObject({
      status: 503,
      json: { errors: ['Vault is sealed'] },
    });
    vault.faults.sealed = false;
    expect((await call('GET', 'secret/data/envelope')).status).toBe(200);
  });
});

describe('fault switches', () => {
  it('injects a status on matching paths for a number of times, then clears itself', async () => {
    vault.faults.status = { code: 502, pathPrefix: 'secret/', times: 2 };
    expect((await call('GET', 'sys/health', { token: null })).status).toBe(200);
    expect((await call('GET', 'secret/data/envelope')).status).toBe(502);
    expect((await call('GET', 'secret/data/envelope')).status).toBe(502);
    expect(vault.faults.status).toBeUndefined();
    expect((await call('GET', 'secret/data/envelope')).status).toBe(200);
    vault.faults.status = { code: 429, errors: ['rate limit quota exceeded'] };
    expect(await call('GET', 'auth/token/lookup-self')).toMatchObject({
      status: 429,
      json: { errors: ['rate limit quota exceeded'] },
    });
  });

  it('adds latency to every response', async () => {
    vault.faults.latencyMs = 150;
    const start = Date.now();
    expect((await call('GET', 'sys/health', { token: null })).status).toBe(200);
    expect(Date.now() - start).toBeGreaterThanOrEqual(140);
  });

  it('hangs requests until the switch is cleared, and logs every request', async () => {
    const before = vault.requestCount((r) => r.path === '/v1/secret/data/hung');
    vault.faults.hang = true;
    await expect(call('GET', 'secret/data/hung', { signal: AbortSignal.timeout(150) })).rejects.toThrow();
    const pending = call('GET', 'secret/data/envelope');
    await new Promise((resolve) => setTimeout(resolve, 50));
    vault.faults.hang = false;
    expect((await pending).status).toBe(200);
    expect(vault.requestCount((r) => r.path === '/v1/secret/data/hung')).toBe(before + 1);
    expect(vault.requests.at(-1)).toMatchObject({ method: 'GET', path: '/v1/secret/data/envelope' });
  });

  it('destroys hung connections on close and leaves no listening handle behind', async () => {
    const tcpHandles = () => process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP')).length;
    const baseline = tcpHandles();
    const other = await startVaultStandin({ rootToken: 'other-root' });
    other.faults.hang = true;
    const hung = fetch(`${other.url}/v1/sys/health`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await other.close();
    await expect(hung).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(tcpHandles()).toBeLessThanOrEqual(baseline);
  });
});
