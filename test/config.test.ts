/**
 * The config layer as a new user meets it: strict types with paths, nothing to resolve refused, TLS option
 * mistakes named as such, secrets never quoted, and a third-party provider adapter used from a real config
 * file, in process and through `tls-secrets check --adapter`.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResolverFromConfig, registerProviderAdapter, type TlsSecretsConfig } from '../config/index.js';
import { makeCerts } from '../examples/check/make-certs.js';
import { memory } from '../providers/memory.js';
import { ConfigurationError, createResolver } from '../src/index.js';
import { internal } from '../src/resolver/index.js';
import plainDirAdapter from './fixtures/plain-dir-adapter.js';

const root = fileURLToPath(new URL('..', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tls-secrets-config-'));
  await makeCerts(join(dir, 'certs'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusal(config: unknown): Promise<ConfigurationError> {
  const error = await createResolverFromConfig(config as TlsSecretsConfig).then(
    (configured) => configured.close().then(() => undefined),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConfigurationError);
  return error as ConfigurationError;
}

const mem = { m: { type: 'memory', values: { cert: 'c', key: 'k' } } };

describe('strict config types, by path', () => {
  it.each([
    ['tls: {} (nothing to resolve)', { providers: mem, tls: {} }, 'config tls: names nothing to resolve'],
    ['a missing tls', { providers: mem }, 'config tls: is required'],
    [
      'a typo next to valid fields',
      { providers: mem, tls: { key: 'm:key', cert: 'm:cert', cas: 'm:cert' } },
      'config tls.cas: unknown field (did you mean "ca"?)',
    ],
    [
      'kee for key',
      { providers: mem, tls: { kee: 'm:key', cert: 'm:cert' } },
      'config tls.kee: unknown field (did you mean "key"?)',
    ],
    [
      'verifyChain: "no"',
      { providers: mem, tls: { cert: 'm:cert' }, options: { verifyChain: 'no' } },
      'config options.verifyChain: expected true or false, got string "no"',
    ],
    [
      'pollIntervalMs: "100"',
      { providers: { f: { type: 'file', pollIntervalMs: '100' } }, tls: { cert: 'f:c.pem' } },
      'config providers.f.pollIntervalMs: expected a number, got string "100"',
    ],
    [
      'a vault requestTimeoutMs as a string',
      { providers: { vault: { type: 'vault', requestTimeoutMs: '100' } }, tls: { cert: 'vault:a#b' } },
      'config providers.vault.requestTimeoutMs: expected a number, got string "100"',
    ],
    [
      'an old option name',
      { providers: mem, tls: { cert: 'm:cert' }, options: { refreshInterval: 5 } },
      'config options.refreshInterval: unknown field (did you mean "refreshIntervalMs"?)',
    ],
    [
      'an unknown provider type',
      { providers: { m: { type: 'memroy' } }, tls: { cert: 'm:cert' } },
      'config providers.m.type: expected one of memory, env, file, aws-secrets-manager, aws-ssm, vault (did you mean "memory"?)',
    ],
    [
      'an unknown reference key',
      { providers: mem, tls: { cert: { provider: 'm', id: 'cert', jsonkey: 'x' } } },
      'config tls.cert.jsonkey: unknown field (did you mean "jsonKey"?)',
    ],
    [
      'a reference without its id',
      { providers: mem, tls: { cert: { provider: 'm' } } },
      'config tls.cert.id: is required',
    ],
    [
      'a vault reference mixing kinds',
      {
        providers: { v: { type: 'vault', auth: { token: 't' } } },
        tls: { cert: { provider: 'v', kv: 'a', field: 'b', pkiCa: 'pki' } },
      },
      'config tls.cert: a vault reference needs exactly one of kv (with field), pki (with part), pkiCa, pkiCrl (got kv, pkiCa)',
    ],
    [
      'minVersion: "TLSv9"',
      { providers: mem, tls: { cert: 'm:cert', minVersion: 'TLSv9' } },
      'config tls.minVersion: expected one of "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", got string "TLSv9"',
    ],
    [
      'ciphers Node does not know',
      { providers: mem, tls: { cert: 'm:cert', ciphers: 'NO-SUCH-CIPHER' } },
      "config tls.ciphers: option ciphers is not accepted by Node's TLS (ERR_SSL_NO_CIPHER_MATCH)",
    ],
    [
      'pskIdentity without psk',
      { providers: mem, tls: { cert: 'm:cert', pskIdentity: 'client' } },
      'config tls: pskIdentity is given without psk',
    ],
    [
      'a resolver option out of range',
      { providers: mem, tls: { cert: 'm:cert' }, options: { jitter: 2 } },
      'config options: option jitter must be within 0..1',
    ],
    [
      'a function-valued option',
      { providers: mem, tls: { cert: 'm:cert', checkServerIdentity: 'x' } },
      'config tls.checkServerIdentity: takes a function or an object: pass it in code, not in a file',
    ],
    [
      'a wrong type of a pass-through option',
      { providers: mem, tls: { cert: 'm:cert', rejectUnauthorized: 'false' } },
      'config tls.rejectUnauthorized: expected true or false, got string "false"',
    ],
    // JSON.parse makes `__proto__` an own key, as a config file would: an unknown field like any other.
    [
      'a __proto__ key in tls',
      JSON.parse('{"providers":{"m":{"type":"memory"}},"tls":{"cert":"m:cert","__proto__":{"x":1}}}'),
      'config tls.__proto__: unknown field',
    ],
    [
      'a __proto__ key in options',
      JSON.parse(
        '{"providers":{"m":{"type":"memory"}},"tls":{"cert":"m:cert"},"options":{"__proto__":{"x":1}}}',
      ),
      'config options.__proto__: unknown field',
    ],
    [
      'a constructor key in a provider',
      { providers: { m: { type: 'memory', constructor: 1 } }, tls: { cert: 'm:cert' } },
      'config providers.m.constructor: unknown field',
    ],
  ])('refuses %s', async (_what, config, message) => {
    expect((await refusal(config)).message).toContain(message);
  });

  it('passes the socket options tls.connect hands to net through from a file (requestOCSP, family, localAddress)', async () => {
    const configured = await createResolverFromConfig({
      providers: mem,
      tls: {
        cert: 'm:cert',
        requestOCSP: true,
        family: 4,
        localAddress: '127.0.0.1',
        autoSelectFamily: false,
      },
    } as unknown as TlsSecretsConfig);
    try {
      expect(configured.resolver[internal].passThrough()).toMatchObject({
        requestOCSP: true,
        family: 4,
        localAddress: '127.0.0.1',
        autoSelectFamily: false,
      });
    } finally {
      await configured.close();
    }
  });

  it('names a wrong-typed secret by path and type, never by value', async () => {
    const canary = `CANARY-${Date.now()}-s3cr3t`;
    const cases: [unknown, string][] = [
      [
        { providers: { m: { type: 'memory', values: { k: 42 } } }, tls: { cert: 'm:k' } },
        'providers.m.values.k: expected a string, got number',
      ],
      [
        { providers: { m: { type: 'memory', values: { k: [canary] } } }, tls: { cert: 'm:k' } },
        'providers.m.values.k: expected a string, got an array',
      ],
      [
        { providers: { v: { type: 'vault', auth: canary } }, tls: { cert: 'v:a#b' } },
        'providers.v.auth: expected an object, got string',
      ],
      [
        { providers: { v: { type: 'vault', auth: { token: 7 } } }, tls: { cert: 'v:a#b' } },
        'providers.v.auth.token: expected a string, got number',
      ],
      [
        {
          providers: { v: { type: 'vault', auth: { token: canary, appRole: { roleId: 'r' } } } },
          tls: { cert: 'v:a#b' },
        },
        'providers.v.auth: expected exactly one of token, appRole, kubernetes, got 2',
      ],
      [
        { providers: mem, tls: { cert: 'm:cert', passphrase: { literal: 42 } } },
        'tls.passphrase.literal: expected a string, got number',
      ],
      [
        { providers: mem, tls: { cert: 'm:cert', pskIdentity: canary.length } },
        'tls.pskIdentity: expected a string, got number',
      ],
    ];
    for (const [config, message] of cases) {
      const error = await refusal(config);
      expect(error.message).toContain(message);
      expect(error.message).not.toContain(canary);
      expect(error.message).not.toContain('42');
    }
  });

  it('the same resolver options table guards code: unknown options and spec keys are refused, by name', () => {
    const m = memory({ c: 'x' });
    expect(() => createResolver({ cert: m.ref('c') }, { refreshIntervall: 5 } as never)).toThrow(
      /unknown option "refreshIntervall" \(did you mean "refreshIntervalMs"\?\)/,
    );
    expect(() => createResolver({ cert: m.ref('c') }, { verifyChain: 'no' } as never)).toThrow(
      'option verifyChain must be true or false, got string',
    );
    // What was given, by type (a number by value): "must be >= 0" alone did not say a string was the fault.
    expect(() => createResolver({ cert: m.ref('c') }, { startBudgetMs: '30000' } as never)).toThrow(
      'option startBudgetMs must be a number of milliseconds, 0 or more, got string',
    );
    // Object's own names are unknown options and keys too, not Object.prototype's members.
    expect(() => createResolver({ cert: m.ref('c') }, { constructor: 1 } as never)).toThrow(
      'unknown option "constructor"',
    );
    expect(() => createResolver({ cert: m.ref('c') }, { retryInitialDelayMs: -1 })).toThrow(
      'option retryInitialDelayMs must be a positive number of milliseconds, got -1',
    );
    expect(() => createResolver({ cert: m.ref('c'), cas: m.ref('c') } as never)).toThrow(
      /unknown key "cas" \(did you mean "ca"\?\)/,
    );
    expect(() => createResolver({ cert: m.ref('c'), minVersion: 'TLSv9' as never })).toThrow(
      expect.objectContaining({ name: 'ConfigurationError', field: 'minVersion' }),
    );
    // Plain pass-through TLS options are a spec's business, not a typo.
    const resolver = createResolver({
      cert: m.ref('c'),
      servername: 'svc.internal',
      minVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_256_GCM_SHA384',
      ALPNProtocols: ['h2'],
      sessionTimeout: 300,
    });
    void resolver.close();
  });
});

describe('a third-party provider adapter', () => {
  it('is used from a config file, in process, with its own types checked by path', async () => {
    const config = join(dir, 'plain.json');
    await writeFile(
      config,
      JSON.stringify({
        providers: { mine: { type: 'plain-dir', dir: 'certs' } },
        tls: { key: 'mine:server.key', cert: { provider: 'mine', file: 'server.crt' }, ca: 'mine:ca.pem' },
      }),
    );
    const configured = await createResolverFromConfig(config, { adapters: [plainDirAdapter] });
    try {
      const resolved = await configured.resolver.resolve();
      expect(resolved.secureContext).toBeDefined();
      expect(configured.resolver.status().fields.map((field) => field.source)).toEqual([
        'mine:server.key',
        'mine:server.crt',
        'mine:ca.pem',
      ]);
    } finally {
      await configured.close();
    }
    const typo = join(dir, 'plain-typo.json');
    await writeFile(
      typo,
      JSON.stringify({ providers: { mine: { type: 'plain-dir', dri: 'certs' } }, tls: { cert: 'mine:x' } }),
    );
    await expect(createResolverFromConfig(typo, { adapters: [plainDirAdapter] })).rejects.toThrow(
      `config ${typo}: providers.mine.dri: unknown field (did you mean "dir"?)`,
    );
    // Without the adapter, the type is unknown, and the message says which types are.
    await expect(createResolverFromConfig(config)).rejects.toThrow(
      /providers\.mine\.type: expected one of memory/,
    );
  });

  it('registers once and cannot replace a built-in type', () => {
    registerProviderAdapter(plainDirAdapter);
    registerProviderAdapter(plainDirAdapter);
    expect(() => registerProviderAdapter({ ...plainDirAdapter })).toThrow(/already registered/);
    expect(() => registerProviderAdapter({ ...plainDirAdapter, type: 'vault' })).toThrow(/built in/);
  });

  it('works through `tls-secrets check --adapter <module>`, and check says what a read does', async () => {
    const config = join(dir, 'plain-cli.json');
    await writeFile(
      config,
      JSON.stringify({
        providers: { mine: { type: 'plain-dir', dir: 'certs' } },
        tls: {
          key: 'mine:server.key',
          cert: 'mine:server.crt',
          ca: { provider: 'mine', file: 'audited.pem' },
        },
      }),
    );
    await copyFile(join(dir, 'certs', 'ca.pem'), join(dir, 'certs', 'audited.pem'));
    const adapter = join(root, 'test', 'fixtures', 'plain-dir-adapter.ts');
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
      (resolve, reject) => {
        const child = spawn(
          process.execPath,
          ['--import', 'tsx', join(root, 'cli', 'main.ts'), 'check', config, '--adapter', adapter],
          { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => {
          stdout += chunk.toString();
        });
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        child.once('error', reject);
        child.once('close', (code) => resolve({ code, stdout, stderr }));
      },
    );
    // What the read does besides reading is said first (as for a Vault PKI reference: it issues).
    expect(run.stderr).toBe('tls-secrets: note: tls.ca: logs an audit record on every read\n');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^cert\s+mine:server\.crt\s.*CN=localhost/m);
    expect(run.stdout).toContain(`OK: ${config} resolves and validates`);
  });
});

describe('effects', () => {
  it('a vault PKI reference says it issues a certificate, before anything is fetched', async () => {
    const configured = await createResolverFromConfig({
      providers: { v: { type: 'vault', endpoint: 'http://127.0.0.1:1', auth: { token: 'unused' } } },
      tls: {
        key: { provider: 'v', pki: { mount: 'pki', role: 'web', commonName: 'svc.internal' }, part: 'key' },
        cert: { provider: 'v', pki: { mount: 'pki', role: 'web', commonName: 'svc.internal' }, part: 'cert' },
      },
    });
    try {
      expect(configured.effects).toEqual([
        'tls.key, tls.cert: issues a new certificate from pki/issue/web on every fetch',
      ]);
    } finally {
      await configured.close();
    }
  });
});
