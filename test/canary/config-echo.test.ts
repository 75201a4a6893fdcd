/**
 * Leak class 5: configuration errors that echo values. A string in a secret position is read as a reference
 * (`<provider>:<id>`), so a literal passphrase written as a plain string was echoed (its text before the
 * colon as an "unknown provider", its whole text as an "empty id", an invalid variable name or Vault path),
 * and a Vault endpoint carrying credentials was echoed whole. No error, and no line of the CLI, may show them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResolverFromConfig, type TlsSecretsConfig } from '../../config/index.js';
import { ConfigurationError } from '../../src/index.js';
import { Canaries, canaryValue, Views } from './canaries.js';
import { runCli } from './cli-run.js';

const canaries = new Canaries();
const before = canaries.plant('passphrase', canaryValue('beforecolon'));
const after = canaries.plant('passphrase', canaryValue('aftercolon'));
const password = canaries.plant('passphrase', canaryValue('urlpassword'));
const typed = canaries.plant('passphrase', canaryValue('wrongtype'));
const providers = {
  m: { type: 'memory', values: { key: 'x', cert: 'y' } },
  vars: { type: 'env' },
  aws: { type: 'aws-secrets-manager', region: 'us-east-1', endpoint: 'http://127.0.0.1:1' },
  v: { type: 'vault', endpoint: 'http://127.0.0.1:1', auth: { token: 't' } },
} as const;
const withPassphrase = (passphrase: string) =>
  ({ providers, tls: { key: { pem: 'm:key', passphrase }, cert: 'm:cert' } }) as unknown as TlsSecretsConfig;

/** Each config is wrong in one way, and each way once echoed a value. */
const CONFIGS: [string, TlsSecretsConfig][] = [
  ['literal passphrase with a colon', withPassphrase(`${before}:${after}`)],
  ['literal passphrase ending in a colon', withPassphrase(`${before}:`)],
  ['literal passphrase read as an empty key', withPassphrase(`m:${after}#`)],
  ['literal passphrase read as an env variable', withPassphrase(`vars:${after} ${before}`)],
  ['literal passphrase read as an AWS secret id', withPassphrase(`aws:${after}?${before}`)],
  ['literal passphrase read as a Vault path', withPassphrase(`v:${after}/../${before}#f`)],
  [
    'vault endpoint with credentials',
    { providers: { v: { type: 'vault', endpoint: `http://user:${password}@127.0.0.1:8200` } }, tls: {} },
  ],
  [
    'vault endpoint with credentials that do not parse',
    { providers: { v: { type: 'vault', endpoint: `http://user:${password} x@127.0.0.1:8200` } }, tls: {} },
  ],
  [
    'vault endpoint with a password holding @ and /',
    { providers: { v: { type: 'vault', endpoint: `http://user:${password}@/x@127.0.0.1:8200` } }, tls: {} },
  ],
  [
    'aws endpoint with credentials',
    {
      providers: { a: { type: 'aws-secrets-manager', endpoint: `http://user:${password}@127.0.0.1:1` } },
      tls: {},
    },
  ],
  // The strict validator reports a wrong-typed secret by path and type, never by value.
  [
    'memory value of the wrong type',
    { providers: { m: { type: 'memory', values: { key: [typed] } } }, tls: { cert: 'm:key' } },
  ],
  [
    'vault auth as a bare string',
    { providers: { v: { type: 'vault', auth: typed } }, tls: { cert: 'v:a#b' } },
  ],
  [
    'vault token nested in an object',
    { providers: { v: { type: 'vault', auth: { token: { value: typed } } } }, tls: { cert: 'v:a#b' } },
  ],
  [
    'vault secretId beside a token',
    {
      providers: { v: { type: 'vault', auth: { token: typed, appRole: { roleId: 'r', secretId: typed } } } },
      tls: { cert: 'v:a#b' },
    },
  ],
  [
    'a secret in a number field',
    {
      providers: { v: { type: 'vault', auth: { token: 't' }, requestTimeoutMs: typed } },
      tls: { cert: 'v:a#b' },
    },
  ],
  [
    'literal passphrase of the wrong type',
    { providers, tls: { key: { pem: 'm:key', passphrase: { literal: [typed] } }, cert: 'm:cert' } },
  ],
  ['literal with an unknown encoding', { providers, tls: { cert: { literal: typed, encoding: typed } } }],
] as unknown as [string, TlsSecretsConfig][];

describe('configuration errors never echo a value', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tls-secrets-config-echo-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('createResolverFromConfig: every mistake is a ConfigurationError that names the place only', async () => {
    const views = new Views();
    const errors: [string, unknown][] = [];
    for (const [label, config] of CONFIGS) {
      const error = await views.attempt(label, async () => {
        const configured = await createResolverFromConfig(config);
        await configured.close();
        return configured;
      });
      errors.push([label, error]);
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary config] ${views.views.length} views x ${canaries.needles.length} needles: ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
    for (const [label, error] of errors) {
      expect(error, label).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message, label).toMatch(/^config (tls|providers)\./);
    }
  });

  it('the CLI, with and without --json, prints none of them', async () => {
    const files = await Promise.all(
      [0, 3, 7, 10, 14].map(async (i) => {
        const path = join(dir, `config-${i}.json`);
        await writeFile(path, JSON.stringify(CONFIGS[i]?.[1]));
        return path;
      }),
    );
    const runs = await Promise.all(
      files.flatMap((path) => [runCli(['check', path]), runCli(['check', path, '--json'])]),
    );
    const views = new Views();
    for (const [i, run] of runs.entries()) {
      views.text(`cli run ${i} stdout`, run.stdout);
      views.text(`cli run ${i} stderr`, run.stderr);
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary config cli] ${views.views.length} views x ${canaries.needles.length} needles: ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
    expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
  });
});
