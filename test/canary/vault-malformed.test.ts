/**
 * A 200 answer from Vault that did not arrive whole (a proxy cut the body, a load balancer answered with its
 * own page, a body that parses but lacks what Vault documents) says nothing about the secret: only Vault's
 * explicit 404 (and its deleted/destroyed metadata) means not found. Each read path, on real OpenBao behind the
 * fault proxy, gets the real answer cut at several points: it must be a transient FetchError ("Vault sent a
 * malformed answer") naming the ref, never a SecretNotFoundError, never a value, and never quote the body.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { vault } from '../../providers/vault/index.js';
import { FetchError, SecretNotFoundError } from '../../src/index.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { baoApi, setupAppRole } from './bao-api.js';
import { Canaries, canaryValue, Views } from './canaries.js';

const vaultAddr = inject('vaultAddr');
const vaultToken = inject('vaultToken');
const NO_BAO = !vaultAddr;
if (NO_BAO) console.warn('[canary vault malformed] SKIPPED: no OpenBao server');

describe.skipIf(NO_BAO)('a truncated or malformed 200 from Vault is a transient FetchError', () => {
  const run = randomBytes(3).toString('hex');
  const KV1 = `kv1-malformed-${run}`;
  const PKI = `pki-malformed-${run}`;
  const canaries = new Canaries();
  const value = canaries.plant('passphrase', canaryValue('kvvalue'));
  const api = baoApi(vaultAddr, vaultToken);
  let proxy: FaultProxy;
  let appRole: { roleId: string; secretId: string };

  beforeAll(async () => {
    proxy = await startFaultProxy(vaultAddr);
    await api('POST', `sys/mounts/${KV1}`, { type: 'kv', options: { version: '1' } });
    await api('POST', `sys/mounts/${PKI}`, { type: 'pki', config: { max_lease_ttl: '87600h' } });
    await api('POST', `${PKI}/root/generate/internal`, {
      common_name: `${run} root`,
      ttl: '8760h',
      key_type: 'ec',
    });
    await api('POST', `${PKI}/roles/web`, {
      allowed_domains: 'test.internal',
      allow_subdomains: true,
      key_type: 'ec',
      max_ttl: '1h',
    });
    await api('POST', `${KV1}/app/tls`, { cert: value });
    await api('POST', `secret/data/malformed-${run}/tls`, { data: { cert: value } });
    const role = await setupAppRole(api, `approle-malformed-${run}`, `malformed-${run}`);
    appRole = { roleId: role.roleId, secretId: await role.newSecretId() };
  });
  afterAll(async () => {
    await proxy?.close();
    for (const mount of [KV1, PKI]) await api('DELETE', `sys/mounts/${mount}`).catch(() => undefined);
    await api('DELETE', `sys/auth/approle-malformed-${run}`).catch(() => undefined);
    await api('DELETE', `secret/metadata/malformed-${run}/tls`).catch(() => undefined);
  });

  /** The real answer of OpenBao to `method path`, as bytes and content type. */
  const realAnswer = async (method: string, path: string, body?: object) => {
    const response = await fetch(`${vaultAddr}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': vaultToken, 'Content-Type': 'application/json' },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    expect(response.status).toBe(200);
    return { text: await response.text(), type: response.headers.get('content-type') ?? 'application/json' };
  };

  it('KV v1, KV v2 data and metadata, mount detection, PKI issue, raw CA and CRL', async () => {
    const views = new Views();
    const v = vault({ endpoint: proxy.url, auth: { token: vaultToken } });
    const kv1 = v.kv(`${KV1}/app/tls`, { field: 'cert', kvVersion: 1, mount: KV1 });
    const kv2 = v.kv(`secret/malformed-${run}/tls`, { field: 'cert', kvVersion: 2, mount: 'secret' });
    const detected = v.kv(`secret/malformed-${run}/tls`, { field: 'cert' });
    const issued = v.pki(PKI, 'web', { commonName: 'a.test.internal', ttl: '10m' });
    const byAppRole = vault({
      endpoint: proxy.url,
      auth: { appRole: { ...appRole, mount: `approle-malformed-${run}` } },
    });
    const login = { role_id: appRole.roleId, secret_id: appRole.secretId };
    const cases: {
      what: string;
      path: string;
      method?: string;
      body?: object;
      /** Bodies that parse but lack what Vault documents for this call. */
      shapes: string[];
      run: () => Promise<unknown>;
    }[] = [
      {
        what: 'KV v1 read',
        path: `${KV1}/app/tls`,
        shapes: ['{"request_id":"x"}', '{"data":"text"}'],
        run: () => v.fetch(kv1, AbortSignal.timeout(10_000)),
      },
      {
        what: 'KV v2 data read',
        path: `secret/data/malformed-${run}/tls`,
        shapes: [
          '{"data":{}}',
          '{"data":{"data":null,"metadata":{"version":3}}}',
          '{"data":{"data":{"cert":"x"}}}',
        ],
        run: () => v.fetch(kv2, AbortSignal.timeout(10_000)),
      },
      {
        what: 'KV v2 metadata read',
        path: `secret/metadata/malformed-${run}/tls`,
        shapes: ['{"data":{}}', '{"data":{"current_version":2,"versions":{}}}'],
        run: () => v.currentVersion(kv2, AbortSignal.timeout(10_000)),
      },
      {
        what: 'mount detection',
        path: `sys/internal/ui/mounts/secret/malformed-${run}/tls`,
        shapes: ['{"data":{}}'],
        run: () => v.fetch(detected, AbortSignal.timeout(10_000)),
      },
      {
        what: 'PKI issue',
        path: `${PKI}/issue/web`,
        shapes: ['{"data":{}}', '{"data":{"private_key":"x"}}'],
        method: 'POST',
        body: { common_name: 'a.test.internal', ttl: '10m', format: 'pem' },
        run: () => v.fetch(issued.cert, AbortSignal.timeout(10_000)),
      },
      {
        what: 'AppRole login',
        path: `auth/approle-malformed-${run}/login`,
        method: 'POST',
        body: login,
        shapes: ['{"auth":null}', '{"auth":{"lease_duration":60}}'],
        run: () =>
          byAppRole.fetch(
            byAppRole.kv(`secret/malformed-${run}/tls`, { field: 'cert', kvVersion: 2, mount: 'secret' }),
            AbortSignal.timeout(10_000),
          ),
      },
      {
        what: 'raw CA',
        path: `${PKI}/ca/pem`,
        shapes: ['{"data":{}}'],
        run: () => v.fetch(v.pkiCa(PKI), AbortSignal.timeout(10_000)),
      },
      {
        what: 'raw CRL',
        path: `${PKI}/crl/pem`,
        shapes: ['{"data":{}}'],
        run: () => v.fetch(v.pkiCrl(PKI), AbortSignal.timeout(10_000)),
      },
    ];
    const wrong: string[] = [];
    let tried = 0;
    try {
      for (const c of cases) {
        const real = await realAnswer(c.method ?? 'GET', c.path, c.body);
        // A login answer holds a real token: the cut-off body must not be quoted anywhere.
        const minted = real.type.includes('json')
          ? (JSON.parse(real.text) as { auth?: { client_token?: string } }).auth?.client_token
          : undefined;
        if (minted) canaries.plant('vault token', minted);
        const cuts = [
          ['empty', ''],
          ['a quarter', real.text.slice(0, Math.floor(real.text.length / 4))],
          ['half', real.text.slice(0, Math.floor(real.text.length / 2))],
          ['all but the last byte', real.text.slice(0, -1).trimEnd().slice(0, -1)],
          ['an HTML page', '<html><body>upstream reset</body></html>'],
          ...c.shapes.map((shape) => [`JSON ${shape}`, shape] as const),
        ] as const;
        for (const [cut, body] of cuts) {
          tried += 1;
          await proxy.setFault({
            kind: 'respond',
            status: 200,
            body,
            headers: { 'Content-Type': real.type },
            pathPrefix: `/v1/${c.path}`,
          });
          const label = `${c.what}, ${cut}`;
          const result = await views.attempt(label, c.run);
          // A failed login is reported as such, its cause saying why.
          const said = result instanceof Error && /login failed/.test(result.message) ? result.cause : result;
          const ok =
            result instanceof FetchError &&
            !(result instanceof SecretNotFoundError) &&
            result.transient &&
            said instanceof FetchError &&
            /^Vault sent a malformed answer \(/.test(said.message) &&
            (c.what === 'AppRole login' || said.message.includes('ref ')) &&
            !said.message.includes('BEGIN');
          if (!ok) {
            wrong.push(
              `${label}: ${result instanceof Error ? `${result.name} ${String((result as FetchError).transient)} ${result.message}` : `resolved ${typeof result}`}`,
            );
          }
        }
      }
      // Vault's explicit answers keep their meaning: a real 404 is not found.
      await proxy.setFault({ kind: 'none' });
      const missing = v.kv(`${KV1}/app/missing`, { field: 'cert', kvVersion: 1, mount: KV1 });
      await expect(v.fetch(missing, AbortSignal.timeout(10_000))).rejects.toBeInstanceOf(SecretNotFoundError);
      const whole = await v.fetch(kv2, AbortSignal.timeout(10_000));
      expect(whole.value).toEqual({ cert: value });
    } finally {
      await proxy.setFault({ kind: 'none' });
      await v.close();
      await byAppRole.close();
    }
    console.info(
      `[canary vault malformed] ${tried} truncated or malformed answers: ${wrong.length} misdiagnosed`,
    );
    if (wrong.length > 0) console.info(wrong.join('\n'));
    expect(wrong).toEqual([]);
    expect(views.scan(canaries)).toEqual([]);
  });
});
