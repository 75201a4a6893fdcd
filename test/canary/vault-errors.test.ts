/**
 * Leak class 3: Vault error text. A server or a proxy that echoes the request puts the X-Vault-Token header
 * (any request) or the login body (AppRole secret_id, Kubernetes JWT) into the `errors` strings of its
 * answer. On real OpenBao, behind the fault proxy, no view of the resulting errors may show them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { vault } from '../../providers/vault/index.js';
import { FetchError } from '../../src/index.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { baoApi, setupAppRole } from './bao-api.js';
import { Canaries, canaryValue, Views } from './canaries.js';

const vaultAddr = inject('vaultAddr');
const vaultToken = inject('vaultToken');
const NO_BAO = !vaultAddr;
if (NO_BAO) console.warn('[canary vault] SKIPPED: no OpenBao server');

const echo = (status: number): Parameters<FaultProxy['setFault']>[0] => ({
  kind: 'echo',
  status,
  headers: { 'Content-Type': 'application/json' },
  body: (request) => JSON.stringify({ errors: [`could not handle request: ${request}`, request] }),
});

describe.skipIf(NO_BAO)('Vault error text keeps no credential', () => {
  const canaries = new Canaries();
  const run = randomBytes(3).toString('hex');
  const token = canaries.plant('vault token', canaryValue('vaulttoken'));
  const secretId = canaries.plant('approle secret_id', canaryValue('secretid'));
  const jwt = canaries.plant('kubernetes jwt', canaryValue('k8sjwt'));
  const api = baoApi(vaultAddr, vaultToken);
  let proxy: FaultProxy;
  let dir: string;
  let roleId = '';
  beforeAll(async () => {
    proxy = await startFaultProxy(vaultAddr);
    dir = await mkdtemp(join(tmpdir(), 'tls-secrets-vault-canary-'));
    await writeFile(join(dir, 'token'), jwt);
    // A token and a secret_id of our choosing, so that the canaries are what the server really accepts.
    await api('POST', 'auth/token/create', { id: token, policies: ['default'], ttl: '10m' });
    const role = await setupAppRole(api, `canary-approle-${run}`, `canary-${run}`);
    roleId = role.roleId;
    await api('POST', `auth/canary-approle-${run}/role/canary/custom-secret-id`, { secret_id: secretId });
    await api('POST', 'secret/data/canary/app', { data: { cert: 'not a certificate' } });
  });
  afterAll(async () => {
    await proxy?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await api('DELETE', `sys/auth/canary-approle-${run}`).catch(() => undefined);
  });

  it('500, 503, 403 and 400 answers that echo the request, for token, AppRole and Kubernetes auth', async () => {
    const views = new Views();
    const providers = [
      vault({ name: 'by-token', endpoint: proxy.url, auth: { token } }),
      vault({
        name: 'by-approle',
        endpoint: proxy.url,
        auth: { appRole: { roleId, secretId, mount: `canary-approle-${run}` } },
      }),
      vault({
        name: 'by-k8s',
        endpoint: proxy.url,
        auth: { kubernetes: { role: 'canary', jwtPath: join(dir, 'token') } },
      }),
    ];
    try {
      for (const status of [500, 503, 403, 400]) {
        await proxy.setFault(echo(status));
        for (const v of providers) {
          const ref = v.kv('secret/canary/app', { field: 'cert', kvVersion: 2, mount: 'secret' });
          const error = await views.attempt(`${v.name} echo ${status}`, () =>
            v.fetch(ref, AbortSignal.timeout(10_000)),
          );
          expect(error).toBeInstanceOf(FetchError);
          if (v.name === 'by-token') {
            // The text held the token: it is withheld whole, the status still says what happened.
            expect(String(((error as Error).cause as Error).message)).toBe(
              `Vault HTTP ${status}: error text withheld: it echoed a credential`,
            );
          }
        }
      }
      // The AppRole session logged in for real before: now its token is the one echoed.
      await proxy.setFault({ kind: 'none' });
      const approle = providers[1];
      const ref = approle?.kv('secret/canary/app', { field: 'cert', kvVersion: 2, mount: 'secret' });
      if (approle && ref) {
        const fetched = await approle.fetch(ref, AbortSignal.timeout(10_000));
        expect(fetched.value).toEqual({ cert: 'not a certificate' });
        await proxy.setFault(echo(500));
        await views.attempt('by-approle echo 500 after login', () =>
          approle.fetch(ref, AbortSignal.timeout(10_000)),
        );
      }
    } finally {
      await proxy.setFault({ kind: 'none' });
      for (const v of providers) await v.close();
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary vault] ${views.views.length} views x ${canaries.needles.length} needles (${canaries.kinds.size} canaries, ${canaries.forms} forms): ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
  });

  it('echoes split over strings, encoded (base64 and base64url at any offset in a blob, hex, URL, unicode escapes), reversed or spaced out are dropped whole', async () => {
    const views = new Views();
    /** The credentials of the request as the proxy saw them: the token header, the login body's fields. */
    const sent = (request: string): string[] => {
      const headerLine = request.split('\n').find((l) => l.startsWith('x-vault-token: '));
      const body = request.slice(request.indexOf('\n\n') + 2);
      let login: Record<string, unknown> = {};
      try {
        login = JSON.parse(body) as Record<string, unknown>;
      } catch {}
      return [headerLine?.slice('x-vault-token: '.length), login.secret_id, login.jwt, login.role_id].filter(
        (v): v is string => typeof v === 'string' && v !== '',
      );
    };
    const b64 = (t: string) => Buffer.from(t).toString('base64');
    const VARIANTS: Record<string, (credential: string) => string[]> = {
      'split in two': (t) => [`token prefix ${t.slice(0, 16)}`, `${t.slice(16)} suffix`],
      'split in three': (t) => [`a ${t.slice(0, 14)}`, t.slice(14, 28), `${t.slice(28)} z`],
      base64: (t) => [`auth ${b64(t)}`],
      base64url: (t) => [`auth ${Buffer.from(t).toString('base64url')}`],
      // Inside a larger blob the encoding depends on the byte offset (mod 3) the credential falls at.
      'base64 of a request dump, offset 1': (t) => [`debug ${b64(`ab: ${t}\n`)}`],
      'base64 of a request dump, offset 2': (t) => [`debug ${b64(`a ${t}\n`)}`],
      'base64url of a request dump, offset 1': (t) => [
        `debug ${Buffer.from(`ab: ${t}`).toString('base64url')}`,
      ],
      'unicode escapes': (t) => [
        `auth ${[...t].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}`,
      ],
      reversed: (t) => [`auth ${[...t].reverse().join('')}`],
      'hex, upper case': (t) => [`auth ${Buffer.from(t).toString('hex').toUpperCase()}`],
      'URL-encoded': (t) => [`auth=${encodeURIComponent(`${t}/`)}`],
      'spaced out': (t) => [`X-Vault-Token:${t.split('').join(' ')}`],
      'cut to 20 characters': (t) => [`bad token ${t.slice(0, 20)}…`],
    };
    const providers = [
      vault({ name: 'by-token', endpoint: proxy.url, auth: { token } }),
      vault({
        name: 'by-approle',
        endpoint: proxy.url,
        auth: { appRole: { roleId, secretId, mount: `canary-approle-${run}` } },
      }),
      vault({
        name: 'by-k8s',
        endpoint: proxy.url,
        auth: { kubernetes: { role: 'canary', jwtPath: join(dir, 'token') } },
      }),
    ];
    const messages: string[] = [];
    try {
      for (const [variant, build] of Object.entries(VARIANTS)) {
        await proxy.setFault({
          kind: 'echo',
          status: 500,
          headers: { 'Content-Type': 'application/json' },
          body: (request) => JSON.stringify({ errors: sent(request).flatMap(build) }),
        });
        for (const v of providers) {
          const ref = v.kv('secret/canary/app', { field: 'cert', kvVersion: 2, mount: 'secret' });
          const error = await views.attempt(`${v.name} ${variant}`, () =>
            v.fetch(ref, AbortSignal.timeout(10_000)),
          );
          expect.soft(error, `${v.name} ${variant}`).toBeInstanceOf(FetchError);
          const cause = (error as Error).cause;
          // Login failures wrap the login call's error.
          const vaultCause = (cause as Error).cause ?? cause;
          messages.push(String((vaultCause as Error).message));
          expect.soft(String((vaultCause as Error).message), `${v.name} ${variant}`).toMatch(/withheld/);
        }
      }
      // Vault's own words, with no credential in them, are still shown.
      await proxy.setFault({
        kind: 'respond',
        status: 500,
        body: JSON.stringify({ errors: ['internal error', 'storage backend unavailable'] }),
        headers: { 'Content-Type': 'application/json' },
      });
      const own = providers[0];
      const ownRef = own?.kv('secret/canary/app', { field: 'cert', kvVersion: 2, mount: 'secret' });
      if (own && ownRef) {
        const error = await own.fetch(ownRef, AbortSignal.timeout(10_000)).catch((err: unknown) => err);
        expect(((error as Error).cause as Error).message).toBe(
          'Vault HTTP 500: internal error; storage backend unavailable',
        );
      }
    } finally {
      await proxy.setFault({ kind: 'none' });
      for (const v of providers) await v.close();
    }
    // Besides the canary forms: no view holds a credential with its separators removed, nor a 12-character piece.
    const squeeze = (text: string) => text.replace(/[^A-Za-z0-9]/g, '').toLowerCase();
    const pieces: string[] = [];
    for (const credential of [token, secretId, jwt]) {
      for (let at = 0; at + 12 <= credential.length; at += 4)
        pieces.push(credential.slice(at, at + 12).toLowerCase());
    }
    const hits = [
      ...views.scan(canaries),
      ...views.views
        .filter((view) => pieces.some((piece) => squeeze(view.text).includes(piece)))
        .map((view) => `a piece of a credential in ${view.label}`),
    ];
    console.info(
      `[canary vault] split/encoded echoes: ${views.views.length} views x ${canaries.needles.length} needles + ${pieces.length} pieces: ${hits.length} hits`,
    );
    if (process.env.CANARY_VERBOSE) console.info([...new Set(messages)].join('\n'));
    expect(hits).toEqual([]);
  });
});
