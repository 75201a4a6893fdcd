/**
 * Section 3: store round trips for 1,000 concurrent cold `connect()` calls on one resolver: a real OpenBao
 * dev server through the Vault provider (requests counted by a pass-through proxy in front of it, AppRole
 * with a least-privilege policy) and moto through the AWS provider
 * (SDK commands counted by a middleware on an injected client). Target: one request per distinct secret
 * (plus one login for Vault), and BatchGetSecretValue for 45 secrets in 3 calls.
 */
import { rootCertificates, type TLSSocket } from 'node:tls';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { vault } from '../../providers/vault/index.js';
import { connect, createResolver, type Resolver, type TlsSecretsSpec } from '../../src/index.js';
import { startBao } from '../../test/helpers/bao.js';
import { startFaultProxy } from '../../test/helpers/fault-proxy.js';
import { startMoto } from '../../test/helpers/moto.js';
import { type BenchContext, type SectionResult, type Target, target } from '../lib/context.js';
import { finish } from '../lib/load.js';
import { fmt, table } from '../lib/stats.js';

const SECTION = 'storeRoundTrips';
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret-access-key' };
const AWS_SECRETS = 45;

interface Burst {
  readonly connections: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly wallMs: number;
  readonly errors: Record<string, number>;
}

export interface StoreRow {
  readonly store: string;
  readonly status: 'measured' | 'skipped' | 'blocked';
  readonly reason?: string;
  readonly distinctSecrets?: number;
  readonly requests?: Record<string, number>;
  readonly totalRequests?: number;
  /**
   * Times each distinct secret was asked for: Vault requests other than logins, or AWS secret ids requested
   * (a BatchGetSecretValue call asks for up to 20).
   */
  readonly requestsPerSecret?: number;
  readonly distinctIdsRequested?: number;
  readonly burst?: Burst;
}

/** `count` connect() calls at once on a cold resolver, each reading the server's line. */
async function coldBurst(resolver: Resolver, port: number, count: number): Promise<Burst> {
  const errors: Record<string, number> = {};
  const start = performance.now();
  const outcomes = await Promise.allSettled(
    Array.from({ length: count }, async () => {
      const socket: TLSSocket = await connect(resolver, { host: '127.0.0.1', port });
      await finish(socket);
    }),
  );
  const wallMs = performance.now() - start;
  for (const outcome of outcomes) {
    if (outcome.status === 'rejected') {
      const reason = outcome.reason as { code?: string; message?: string };
      const code = reason.code ?? reason.message ?? 'unknown';
      errors[code] = (errors[code] ?? 0) + 1;
    }
  }
  const failed = outcomes.filter((o) => o.status === 'rejected').length;
  return { connections: count, succeeded: count - failed, failed, wallMs, errors };
}

async function seedVault(url: string, token: string, material: BenchContext['material']['ec']) {
  const api = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`seeding ${method} ${path}: ${response.status} ${text}`);
    return (text ? JSON.parse(text) : {}) as { data?: Record<string, unknown> };
  };
  // What the bench's application reads, and nothing more.
  await api('PUT', 'sys/policies/acl/bench', {
    policy: [
      'path "secret/data/bench/*" { capabilities = ["read"] }',
      'path "secret/metadata/bench/*" { capabilities = ["read"] }',
    ].join('\n'),
  });
  await api('POST', 'sys/auth/approle', { type: 'approle' });
  await api('POST', 'auth/approle/role/bench', {
    token_policies: 'bench',
    token_ttl: '1h',
    token_max_ttl: '2h',
  });
  const roleId = String((await api('GET', 'auth/approle/role/bench/role-id')).data?.role_id);
  const secretId = async () =>
    String((await api('POST', 'auth/approle/role/bench/secret-id')).data?.secret_id);
  await api('POST', 'secret/data/bench/client', {
    data: { key: material.client.keyPem, cert: material.client.certPem },
  });
  await api('POST', 'secret/data/bench/ca', { data: { ca: material.ca.certPem } });
  return { roleId, secretId };
}

/** Groups Vault requests by what they are for. */
function classifyVault(path: string): string {
  if (path.endsWith('/login')) return 'login';
  if (path.startsWith('/v1/sys/internal/ui/mounts/')) return 'mount detection';
  if (path.startsWith('/v1/secret/data/')) return 'KV read';
  if (path.startsWith('/v1/secret/metadata/')) return 'KV metadata';
  return `other ${path.split('?')[0]}`;
}

async function vaultRows(ctx: BenchContext, count: number, port: number): Promise<StoreRow[]> {
  const bao = await startBao({ install: true });
  if (typeof bao === 'string') return [{ store: 'OpenBao', status: 'skipped', reason: bao }];
  // Seeding goes straight to the server; the provider goes through the proxy, which counts its requests.
  const proxy = await startFaultProxy(bao.url);
  try {
    const seeded = await seedVault(bao.url, bao.rootToken, ctx.material.ec);
    const rows: StoreRow[] = [];
    const variants = [
      { label: `${bao.description}, KV v2, AppRole (mount detected)`, kvOptions: {} },
      {
        label: `${bao.description}, KV v2, AppRole (kvVersion + mount given)`,
        kvOptions: { kvVersion: 2 as const, mount: 'secret' },
      },
    ];
    for (const variant of variants) {
      const provider = vault({
        endpoint: proxy.url,
        auth: { appRole: { roleId: seeded.roleId, secretId: await seeded.secretId() } },
      });
      const spec: TlsSecretsSpec = {
        key: provider.kv('secret/bench/client', { field: 'key', ...variant.kvOptions }),
        cert: provider.kv('secret/bench/client', { field: 'cert', ...variant.kvOptions }),
        ca: provider.kv('secret/bench/ca', { field: 'ca', ...variant.kvOptions }),
      };
      const resolver = createResolver(spec);
      const before = proxy.log.length;
      try {
        const burst = await coldBurst(resolver, port, count);
        const requests: Record<string, number> = {};
        for (const request of proxy.log.slice(before)) {
          const kind = classifyVault(request.path);
          requests[kind] = (requests[kind] ?? 0) + 1;
        }
        const total = proxy.log.length - before;
        const distinct = 2;
        rows.push({
          store: variant.label,
          status: 'measured',
          distinctSecrets: distinct,
          requests,
          totalRequests: total,
          // A login and a mount detection are once per provider (and mount), not per secret: counted apart.
          requestsPerSecret: (total - (requests.login ?? 0) - (requests['mount detection'] ?? 0)) / distinct,
          burst,
        });
      } finally {
        await resolver.close();
        await provider.close();
      }
    }
    return rows;
  } finally {
    await proxy.close();
    await bao.close();
  }
}

async function awsRow(ctx: BenchContext, count: number, port: number): Promise<StoreRow> {
  const label = `moto, AWS Secrets Manager (${AWS_SECRETS} secrets)`;
  const moto = await startMoto();
  if (typeof moto === 'string') return { store: label, status: 'skipped', reason: moto };
  const seeder = new SecretsManagerClient({ endpoint: moto.url, region: REGION, credentials: CREDENTIALS });
  const client = new SecretsManagerClient({ endpoint: moto.url, region: REGION, credentials: CREDENTIALS });
  const calls: Record<string, number> = {};
  /** Secret ids asked for, in batches or one by one. */
  const idsRequested: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const command = String(context.commandName).replace(/Command$/, '');
      calls[command] = (calls[command] ?? 0) + 1;
      const input = args.input as { SecretId?: string; SecretIdList?: string[] };
      if (command === 'BatchGetSecretValue') idsRequested.push(...(input.SecretIdList ?? []));
      if (command === 'GetSecretValue' && input.SecretId) idsRequested.push(input.SecretId);
      return next(args);
    },
    { step: 'initialize', name: 'benchCountCalls' },
  );
  try {
    const { client: leaf, ca } = ctx.material.ec;
    // One JSON secret for the client's key and certificate, and one secret per CA: the test CA plus Node's
    // first bundled roots, which makes 45 distinct secrets.
    const caPems = [ca.certPem, ...rootCertificates.slice(0, AWS_SECRETS - 2)];
    const names = { client: 'bench/client', ca: caPems.map((_, i) => `bench/ca/${i}`) };
    await seeder.send(
      new CreateSecretCommand({
        Name: names.client,
        SecretString: JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem }),
      }),
    );
    await Promise.all(
      caPems.map((pem, i) => seeder.send(new CreateSecretCommand({ Name: names.ca[i], SecretString: pem }))),
    );
    const sm = awsSecretsManager({ client });
    const resolver = createResolver({
      key: sm.secret(names.client, { jsonKey: 'key' }),
      cert: sm.secret(names.client, { jsonKey: 'cert' }),
      ca: names.ca.map((name) => sm.secret(name)),
    });
    try {
      const burst = await coldBurst(resolver, port, count);
      const total = Object.values(calls).reduce((sum, n) => sum + n, 0);
      return {
        store: label,
        status: 'measured',
        distinctSecrets: 1 + names.ca.length,
        requests: calls,
        totalRequests: total,
        requestsPerSecret: idsRequested.length / (1 + names.ca.length),
        distinctIdsRequested: new Set(idsRequested).size,
        burst,
      };
    } finally {
      await resolver.close();
      await sm.close();
    }
  } finally {
    seeder.destroy();
    client.destroy();
    await moto.close();
  }
}

export async function runStore(ctx: BenchContext): Promise<SectionResult> {
  const count = ctx.smoke ? 50 : 1_000;
  const port = ctx.servers.ports.ec;
  if (port === undefined) throw new Error('no ec server');
  let vaultResults: StoreRow[];
  try {
    vaultResults = await vaultRows(ctx, count, port);
  } catch (error) {
    vaultResults = [
      {
        store: 'OpenBao',
        status: 'blocked',
        reason: error instanceof Error ? error.message : String(error),
      },
    ];
  }
  const rows = [...vaultResults, await awsRow(ctx, count, port)];

  const targets: Target[] = [];
  for (const row of rows) {
    if (row.status !== 'measured' || !row.requests || row.requestsPerSecret === undefined) continue;
    targets.push(
      target(SECTION, `${row.store}: fetches per distinct secret`, row.requestsPerSecret, '==', 1),
    );
    if (row.store.includes('KV v2, AppRole')) {
      targets.push(target(SECTION, `${row.store}: logins`, row.requests.login ?? 0, '==', 1));
      targets.push(
        target(
          SECTION,
          `${row.store}: mount detections (one mount)`,
          row.requests['mount detection'] ?? 0,
          '==',
          row.store.includes('mount detected') ? 1 : 0,
        ),
      );
    } else {
      targets.push(
        target(
          SECTION,
          `${row.store}: BatchGetSecretValue calls`,
          row.requests.BatchGetSecretValue ?? 0,
          '==',
          3,
        ),
      );
    }
    targets.push(target(SECTION, `${row.store}: failed connects`, row.burst?.failed ?? Number.NaN, '==', 0));
  }

  return {
    title: `3. Store round trips: ${count.toLocaleString('en-US')} concurrent cold connect() calls on one resolver`,
    tables: [
      table(
        'Requests to the store',
        ['store', 'secrets', 'requests', 'fetches/secret', 'breakdown', 'connects ok', 'failed', 'wall ms'],
        rows.map((row) =>
          row.status === 'measured'
            ? [
                row.store,
                String(row.distinctSecrets),
                String(row.totalRequests),
                fmt(row.requestsPerSecret, 2),
                Object.entries(row.requests ?? {})
                  .map(([kind, n]) => `${kind} ${n}`)
                  .join(', '),
                String(row.burst?.succeeded),
                String(row.burst?.failed),
                fmt(row.burst?.wallMs, 0),
              ]
            : [row.store, '-', '-', '-', `${row.status.toUpperCase()}: ${row.reason}`, '-', '-', '-'],
        ),
      ),
      'fetches/secret: Vault requests other than logins, or AWS secret ids requested (a batch call asks for up to 20),\n' +
        'per distinct secret. Vault requests are counted by a pass-through proxy in front of OpenBao, AWS calls by an\n' +
        'SDK middleware.',
    ],
    targets,
    data: { connections: count, rows },
  };
}
