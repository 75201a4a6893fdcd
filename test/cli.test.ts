/**
 * The declarative config (in process) and the `tls-secrets` CLI (as a child process through tsx): the
 * example configs in examples/check with freshly generated throwaway certificates, and `watch` showing a
 * rotation and a refused bundle live.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID, X509Certificate } from 'node:crypto';
import { copyFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createResolverFromConfig, type TlsSecretsConfig } from '../config/index.js';
import { makeCerts } from '../examples/check/make-certs.js';
import { ConfigurationError } from '../src/errors.js';
import { createTestCA, encryptKey, type TestCA } from './fixtures/ca.js';
import { eventually } from './helpers/tls.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'cli', 'main.ts');

let ca: TestCA;
let dir: string;

beforeAll(async () => {
  ca = await createTestCA();
  dir = await mkdtemp(join(tmpdir(), 'tls-secrets-cli-'));
  await makeCerts(join(dir, 'certs'));
  for (const name of ['good.json', 'bad.json', 'client.yaml']) {
    await copyFile(join(root, 'examples', 'check', name), join(dir, name));
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('createResolverFromConfig', () => {
  it('maps shorthand, object, list, passphrase and literal sources into one validated bundle', async () => {
    const leaf = await ca.issue({ commonName: 'from-config' });
    const other = await createTestCA({ commonName: 'second CA' });
    const configured = await createResolverFromConfig({
      providers: {
        store: {
          type: 'memory',
          values: {
            bundle: JSON.stringify({ key: encryptKey(leaf.keyPem, 'pw'), cert: leaf.certPem }),
            pass: 'pw',
            ca64: Buffer.from(ca.certPem).toString('base64'),
          },
        },
      },
      tls: {
        key: { pem: 'store:bundle#key', passphrase: { provider: 'store', id: 'pass' } },
        cert: { provider: 'store', id: 'bundle', jsonKey: 'cert' },
        ca: [{ provider: 'store', id: 'ca64', encoding: 'base64' }, { literal: other.certPem }],
        servername: 'svc.internal',
        minVersion: 'TLSv1.3',
      },
      options: { refreshIntervalMs: 60_000 },
    });
    try {
      const resolved = await configured.resolver.resolve();
      expect(resolved.servername).toBe('svc.internal');
      expect(resolved.minVersion).toBe('TLSv1.3');
      expect(resolved.ca).toHaveLength(2);
      expect(configured.resolver.status().fields.map((f) => [f.field, f.source])).toEqual([
        ['key', 'store:bundle#key'],
        ['key.passphrase', 'store:pass'],
        ['cert', 'store:bundle#cert'],
        ['ca[0]', 'store:ca64'],
        ['ca[1]', 'literal'],
      ]);
      expect(configured.providers.get('store')?.name).toBe('store');
    } finally {
      await configured.close();
    }
  });

  it('reads env variables through a prefix', async () => {
    const leaf = await ca.issue();
    process.env.TLSS_CFG_KEY = leaf.keyPem;
    process.env.TLSS_CFG_CERT = leaf.certPem;
    const configured = await createResolverFromConfig({
      providers: { env: { type: 'env', prefix: 'TLSS_CFG_' } },
      tls: { key: 'env:KEY', cert: 'env:CERT' },
    });
    try {
      await configured.resolver.resolve();
      expect(configured.resolver.status().fields.map((f) => f.source)).toEqual([
        'env:TLSS_CFG_KEY',
        'env:TLSS_CFG_CERT',
      ]);
    } finally {
      delete process.env.TLSS_CFG_KEY;
      delete process.env.TLSS_CFG_CERT;
      await configured.close();
    }
  });

  const base = { providers: { m: { type: 'memory' } }, tls: { cert: 'm:cert' } } as const;
  it.each([
    [
      'an unknown provider',
      { ...base, tls: { cert: 'nope:cert' } },
      /tls\.cert: names no configured provider \(configured: m\)/,
    ],
    ['a bare string', { ...base, tls: { cert: '-----BEGIN CERTIFICATE-----' } }, /write a literal value as/],
    ['a misspelt top-level key', { ...base, tsl: {} }, /tsl: unknown field \(did you mean "tls"\?\)/],
    [
      'an unknown provider type',
      { ...base, providers: { m: { type: 'consul' } } },
      /providers\.m\.type: expected one of memory, env, file, aws-secrets-manager, aws-ssm, vault/,
    ],
    [
      'a key the provider type lacks',
      { ...base, tls: { cert: { provider: 'm', id: 'c', versionStage: 'X' } } },
      /tls\.cert\.versionStage: unknown field/,
    ],
    ['a secureContext', { ...base, tls: { secureContext: {} } }, /built by the resolver/],
    [
      'a misspelt resolver option',
      { ...base, options: { refreshIntervall: 5 } },
      /options\.refreshIntervall: unknown field \(did you mean "refreshIntervalMs"\?\)/,
    ],
    ['an index in a list', { ...base, tls: { ca: ['m:a', 'm'] } }, /tls\.ca\[1\]: a string must be/],
  ])('refuses %s with a ConfigurationError naming the place', async (_what, config, message) => {
    const attempt = createResolverFromConfig(config as unknown as TlsSecretsConfig);
    await expect(attempt).rejects.toThrow(ConfigurationError);
    await expect(attempt).rejects.toThrow(message);
  });

  it('names the file and never echoes its text when it does not parse', async () => {
    const canary = `CANARY-${Date.now()}`;
    const json = join(dir, 'broken.json');
    const yaml = join(dir, 'broken.yaml');
    await writeFile(json, `{"tls": {"passphrase": {"literal": "${canary}"}`);
    await writeFile(yaml, `tls:\n  passphrase: { literal: ${canary}\n  cert: [\n`);
    for (const path of [json, yaml]) {
      const error = (await createResolverFromConfig(path).then(
        () => undefined,
        (e: unknown) => e,
      )) as Error;
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.message).toContain(path);
      expect(error.message).not.toContain(canary);
    }
  });

  it('names the line and column of a JSON syntax error, on every Node line (20 gives only a position)', async () => {
    const path = join(dir, 'syntax.json');
    // Line 3, column 5: a value with no quotes; the text around it is a secret-looking literal.
    await writeFile(path, '{\n  "tls": {\n    secret-text: 1\n  }\n}\n');
    const error = (await createResolverFromConfig(path).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/line 3, column 5/);
    expect(error.message).not.toContain('secret-text');
    await writeFile(path, '{\n  "tls": {\n');
    const truncated = (await createResolverFromConfig(path).catch((e: unknown) => e)) as Error;
    expect(truncated.message).toMatch(/line 3, column 1/);
  });

  const vaultAddr = inject('vaultAddr');
  const vaultToken = inject('vaultToken');
  it.skipIf(!vaultAddr)(
    `builds the vault provider by name${vaultAddr ? '' : ` (skipped: ${inject('vaultServer')})`}`,
    async () => {
      // The run's real OpenBao (or an operator's Vault): a path of its own, removed afterwards.
      const path = `tlss-cli-${randomUUID().slice(0, 8)}/tls`;
      const operator = (method: string, body?: unknown) =>
        fetch(`${vaultAddr}/v1/secret/${method === 'DELETE' ? 'metadata' : 'data'}/${path}`, {
          method,
          headers: { 'X-Vault-Token': vaultToken, 'Content-Type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      try {
        const leaf = await ca.issue();
        const seeded = await operator('POST', { data: { key: leaf.keyPem, cert: leaf.certPem } });
        expect(seeded.ok).toBe(true);
        const configured = await createResolverFromConfig({
          providers: { v: { type: 'vault', endpoint: vaultAddr, auth: { token: vaultToken } } },
          tls: { key: `v:secret/${path}#key`, cert: { provider: 'v', kv: `secret/${path}`, field: 'cert' } },
        });
        try {
          await configured.resolver.resolve();
          expect(configured.resolver.status().fields.map((f) => f.source)).toEqual([
            expect.stringMatching(/^v:.*\/tls.*#key$/),
            expect.stringMatching(/^v:.*\/tls.*#cert$/),
          ]);
        } finally {
          await configured.close();
        }
      } finally {
        await operator('DELETE');
      }
    },
  );

  const moto = inject('motoEndpoint');
  it.skipIf(!moto)('builds the aws-secrets-manager provider by name (skipped without moto)', async () => {
    const credentials = { AWS_ACCESS_KEY_ID: 'AKIDTEST', AWS_SECRET_ACCESS_KEY: 'test-secret-access-key' };
    const saved = Object.fromEntries(Object.keys(credentials).map((name) => [name, process.env[name]]));
    Object.assign(process.env, credentials);
    const leaf = await ca.issue();
    const name = `cli-config-${Date.now()}`;
    const client = new SecretsManagerClient({
      region: 'us-east-1',
      endpoint: moto,
      credentials: { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-access-key' },
    });
    await client.send(
      new CreateSecretCommand({
        Name: name,
        SecretString: JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem }),
      }),
    );
    client.destroy();
    const configured = await createResolverFromConfig({
      providers: { aws: { type: 'aws-secrets-manager', region: 'us-east-1', endpoint: moto } },
      tls: { key: `aws:${name}#key`, cert: `aws:${name}#cert` },
    });
    try {
      await configured.resolver.resolve();
      const [key, cert] = configured.resolver.status().fields;
      expect(key?.version).toBeDefined();
      expect(cert?.version).toBe(key?.version);
    } finally {
      await configured.close();
      for (const [variable, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[variable];
        else process.env[variable] = value;
      }
    }
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[]): ChildProcess & { output: { stdout: string; stderr: string } } {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { output: { stdout: string; stderr: string } };
  child.output = { stdout: '', stderr: '' };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    child.output.stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    child.output.stderr += chunk;
  });
  return child;
}

function exited(child: ReturnType<typeof start>): Promise<Run> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, ...child.output }));
  });
}

const run = (...args: string[]) => exited(start(args));

describe('tls-secrets check', () => {
  it('prints field, source, version, fingerprint, subject, notAfter and days left, and exits 0', async () => {
    const { code, stdout, stderr } = await run('check', join(dir, 'good.json'));
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const [header, ...lines] = stdout.split('\n');
    expect(header?.split(/\s{2,}/)).toEqual([
      'FIELD',
      'SOURCE',
      'VERSION',
      'SHA-256',
      'SUBJECT',
      'NOT AFTER',
      'DAYS LEFT',
    ]);
    const server = new X509Certificate(
      await import('node:fs').then((fs) => fs.readFileSync(join(dir, 'certs', 'server.crt'))),
    );
    const certLine = lines.find((line) => line.startsWith('cert '));
    expect(certLine).toContain(`certs:${join(dir, 'certs', 'server.crt')}`);
    expect(certLine).toContain(server.fingerprint256.slice(0, 23));
    expect(certLine).toContain('CN=localhost');
    expect(certLine).toMatch(/\s(823|824)$/);
    expect(lines.find((line) => line.startsWith('ca '))).toContain('CN=tls-secrets example CA (THROWAWAY)');
    expect(stdout).toContain('OK: ');
  });

  it('--json gives every column, with the full fingerprint', async () => {
    const { code, stdout } = await run('check', join(dir, 'good.json'), '--json');
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as {
      ok: boolean;
      generation: number;
      fields: {
        field: string;
        fingerprint256: string | null;
        subject: string | null;
        daysLeft: number | null;
      }[];
      problems: unknown[];
    };
    expect(report).toMatchObject({ ok: true, generation: 1, problems: [] });
    const { readFileSync } = await import('node:fs');
    const fingerprint = new X509Certificate(readFileSync(join(dir, 'certs', 'server.crt'))).fingerprint256;
    expect(report.fields.find((f) => f.field === 'cert')).toMatchObject({
      fingerprint256: fingerprint,
      subject: 'CN=localhost',
    });
    expect(report.fields.find((f) => f.field === 'key')).toMatchObject({
      fingerprint256: null,
      daysLeft: null,
    });
  });

  it('reads YAML, with an encrypted key and its passphrase', async () => {
    const { code, stdout } = await run('check', join(dir, 'client.yaml'));
    expect(code).toBe(0);
    expect(stdout).toMatch(/^cert\s.*CN=example-client/m);
  });

  it('exits 1 naming field and reference when the bundle is refused', async () => {
    const { code, stderr } = await run('check', join(dir, 'bad.json'));
    expect(code).toBe(1);
    expect(stderr).toContain('INVALID_MATERIAL');
    expect(stderr).toContain(`field cert, ref certs:${join(dir, 'certs', 'server.crt')}`);
    expect(stderr).toContain('does not match any private key');
  });

  it('exits 1 naming field and reference when a secret is missing, and with --min-days', async () => {
    const missing = join(dir, 'missing.json');
    await writeFile(
      missing,
      JSON.stringify({
        providers: { certs: { type: 'file' } },
        tls: { key: 'certs:certs/server.key', cert: 'certs:certs/server.crt', ca: 'certs:certs/nowhere.pem' },
      }),
    );
    const absent = await run('check', missing, '--json');
    expect(absent.code).toBe(1);
    expect(JSON.parse(absent.stdout)).toMatchObject({
      ok: false,
      problems: [{ code: 'NOT_FOUND', field: 'ca', ref: `certs:${join(dir, 'certs', 'nowhere.pem')}` }],
    });

    const soon = await run('check', join(dir, 'good.json'), '--min-days', '1000');
    expect(soon.code).toBe(1);
    expect(soon.stderr).toMatch(
      /EXPIRES_SOON: certificate CN=localhost expires in 82\d days .*\(field cert, ref certs:/,
    );
  });

  it('one failed store call that served several fields is one problem, listing every field', async () => {
    const shared = join(dir, 'shared-missing.json');
    await writeFile(
      shared,
      JSON.stringify({
        providers: { certs: { type: 'file' } },
        tls: { key: 'certs:certs/bundle.json#key', cert: 'certs:certs/bundle.json#cert' },
      }),
    );
    const json = await run('check', shared, '--json');
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as {
      problems: { code: string; field: string; fields?: string[] }[];
    };
    expect(report.problems).toEqual([
      expect.objectContaining({ code: 'NOT_FOUND', field: 'key', fields: ['key', 'cert'] }),
    ]);
    const text = await run('check', shared);
    expect(text.stderr.match(/✗ NOT_FOUND/g)).toHaveLength(1);
    expect(text.stderr).toContain('[fields key, cert: one store call]');
    expect(text.stderr).toContain('FAILED: 1 problem');
  });

  it('exits 2 on a configuration or usage error', async () => {
    const config = join(dir, 'unknown-provider.json');
    await writeFile(config, JSON.stringify({ providers: { m: { type: 'memory' } }, tls: { cert: 'x:y' } }));
    const bad = await run('check', config);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`config ${config}: tls.cert: names no configured provider`);
    const usage = await run('frobnicate');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('Usage: tls-secrets');
  });
});

describe('tls-secrets watch', () => {
  it('prints a refused bundle and a rotation as they happen, and stops cleanly on SIGINT', async () => {
    const watchDir = join(dir, 'watch');
    await makeCerts(join(watchDir, 'certs'));
    await copyFile(join(dir, 'good.json'), join(watchDir, 'good.json'));
    const child = start(['watch', join(watchDir, 'good.json')]);
    const done = exited(child);
    try {
      await eventually(() => expect(child.output.stdout).toMatch(/ready generation 1/), 15_000);

      // A broken certificate: refused, reported, and the old bundle keeps serving.
      await writeFile(join(watchDir, 'certs', 'server.crt'), 'not a certificate');
      await eventually(
        () => expect(child.output.stdout).toMatch(/error INVALID_MATERIAL: .*field cert/),
        10_000,
      );
      // The stale line follows in its own write: the child's stdout may deliver it in a later chunk.
      await eventually(() => expect(child.output.stdout).toMatch(/stale: still serving generation 1/), 5_000);

      // A new key and certificate, each renamed into place as Kubernetes and editors do.
      const next = await ca.issue({ commonName: 'rotated.example' });
      const certs = join(watchDir, 'certs');
      await writeFile(join(certs, '.server.key.tmp'), next.keyPem);
      await writeFile(join(certs, '.server.crt.tmp'), next.certPem);
      await rename(join(certs, '.server.key.tmp'), join(certs, 'server.key'));
      await rename(join(certs, '.server.crt.tmp'), join(certs, 'server.crt'));
      const fingerprint = new X509Certificate(next.certPem).fingerprint256;
      await eventually(
        () =>
          expect(child.output.stdout).toMatch(
            new RegExp(
              `rotate generation 2: changed .*cert: CN=rotated\\.example, SHA-256 ${fingerprint.slice(0, 23)}`,
            ),
          ),
        10_000,
      );
    } finally {
      child.kill('SIGINT');
    }
    const { code, stderr } = await done;
    expect(code).toBe(0);
    expect(stderr).toContain('SIGINT, stopping');
  });
});
