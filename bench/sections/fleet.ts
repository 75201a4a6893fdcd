/**
 * Section 7: a fleet starting at once. `processes` processes with `instances` instances each (separate
 * services: each its own provider, SDK client and resolver) start within one second against
 * (a) moto behind a quota proxy enforcing AWS-style token buckets per API (throttled calls answered
 * `400 ThrottlingException` as AWS does), once per secret count in `--fleet-secrets`,
 * (b) moto's Parameter Store behind the same proxy, one bucket for its two read APIs (cold start only), and
 * (c) a real OpenBao dev server with a real rate-limit quota (`sys/quotas/rate-limit`), its 429s counted by
 * a pass-through proxy. Reported: time to first bundle, store calls per API, throttled answers, peak calls
 * per second against the quota; then one secret is rotated in the store and the time until 99 % of the
 * fleet serves it is measured, with the call rate it caused.
 *
 * Instances pick a rotation up at their next poll: the fleet runs with the bench setting
 * `refreshIntervalMs` (`--fleet-refresh-ms`, default 10 s; the library's default is 5 minutes) and the
 * library's jitter (±10 %), so the documented window is refreshIntervalMs × 1.1 plus one second for the
 * fetch itself.
 */
import { rootCertificates } from 'node:tls';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { startBao } from '../../test/helpers/bao.js';
import { startMoto } from '../../test/helpers/moto.js';
import { type BenchContext, type SectionResult, type Target, target } from '../lib/context.js';
import { type ApiSummary, type FleetResult, runFleet } from '../lib/fleet.js';
import { awsTarget, startQuotaProxy } from '../lib/quota-proxy.js';
import { fmt, table } from '../lib/stats.js';

const SECTION = 'fleet';
const REGION = 'us-east-1';
const AWS = { region: REGION, accessKeyId: 'AKIDFLEET', secretAccessKey: 'fleet-secret-access-key' };
/** The quotas the issue gives for 400 instances; the default run scales them to the fleet's size. */
const REFERENCE_FLEET = 400;
const REFERENCE_AWS_QUOTAS: Record<string, number> = {
  BatchGetSecretValue: 10,
  GetSecretValue: 1_000,
  // AWS publishes 40,000/s for DescribeSecret, four times GetSecretValue's 10,000/s: scaled the same way.
  DescribeSecret: 4_000,
};
// Two and a half requests per instance and second: a cold start of 3 secrets (a token lookup and 3 reads
// per instance) needs 1.6 s of the quota at the least.
const REFERENCE_VAULT_RATE = 1_000;
// Parameter Store's standard throughput for a whole account and region (GetParameter and GetParameters
// together), scaled as the others: 400 instances share 40 calls a second.
const REFERENCE_SSM_RATE = 40;
/** The quota proxy's one bucket for both read APIs of Parameter Store. */
const SSM_READS = 'GetParameter(s)';
const JITTER = 0.1;
const FIRST_BUNDLE_P99_MS = 3_000;

export interface FleetSettings {
  readonly processes: number;
  readonly instances: number;
  readonly secrets: readonly number[];
  readonly awsQuotas: Readonly<Record<string, number>>;
  readonly vaultRate: number;
  readonly refreshIntervalMs: number;
  readonly coldTimeoutMs: number;
  readonly spreadMs: number;
  readonly stores: ReadonlySet<FleetStore>;
  /** Parameter Store's throughput for the fleet: GetParameter and GetParameters share it. */
  readonly ssmRate: number;
}

type FleetStore = 'aws' | 'ssm' | 'vault';
const FLEET_STORES: readonly FleetStore[] = ['aws', 'ssm', 'vault'];

const positiveInt = (name: string, value: string | undefined, fallback: number): number => {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
};

/** `--fleet-*` flags, or the defaults (smoke: a handful of instances, the rates unscaled). */
export function fleetSettings(
  flags: Readonly<Record<string, string | boolean | undefined>>,
  smoke: boolean,
): FleetSettings {
  const str = (name: string) => {
    const value = flags[name];
    return typeof value === 'string' ? value : undefined;
  };
  const processes = positiveInt('fleet-processes', str('fleet-processes'), smoke ? 2 : 4);
  const instances = positiveInt('fleet-instances', str('fleet-instances'), smoke ? 4 : 100);
  const secrets = (str('fleet-secrets') ?? (smoke ? '3' : '3,25')).split(',').map((part) => {
    const n = Number(part);
    if (!Number.isInteger(n) || n < 2 || n > 146) {
      throw new Error(
        `--fleet-secrets takes counts from 2 to 146 (key+cert secret and CA secrets), got ${part}`,
      );
    }
    return n;
  });
  const scale = smoke ? 1 : (processes * instances) / REFERENCE_FLEET;
  const scaled = (rate: number) => Math.max(1, Math.round(rate * scale));
  const awsQuotas: Record<string, number> = {};
  for (const [api, rate] of Object.entries(REFERENCE_AWS_QUOTAS)) awsQuotas[api] = scaled(rate);
  for (const pair of (str('fleet-quota') ?? '').split(',').filter(Boolean)) {
    const [api, rate] = pair.split('=');
    const n = Number(rate);
    if (!api || !(n > 0)) throw new Error(`--fleet-quota takes Api=rate pairs, got ${pair}`);
    awsQuotas[api] = n;
  }
  const stores = new Set(
    (str('fleet-stores') ?? FLEET_STORES.join(',')).split(',').map((s) => {
      const store = FLEET_STORES.find((name) => name === s);
      if (!store) throw new Error(`--fleet-stores takes ${FLEET_STORES.join(', ')}, got ${s}`);
      return store;
    }),
  );
  return {
    processes,
    instances,
    secrets,
    awsQuotas,
    vaultRate: positiveInt('fleet-vault-rate', str('fleet-vault-rate'), scaled(REFERENCE_VAULT_RATE)),
    ssmRate: positiveInt('fleet-ssm-rate', str('fleet-ssm-rate'), scaled(REFERENCE_SSM_RATE)),
    refreshIntervalMs: positiveInt('fleet-refresh-ms', str('fleet-refresh-ms'), smoke ? 1_000 : 10_000),
    coldTimeoutMs: positiveInt('fleet-timeout-ms', str('fleet-timeout-ms'), smoke ? 5_000 : 20_000),
    spreadMs: smoke ? 200 : 1_000,
    stores,
  };
}

interface Scenario {
  readonly label: string;
  readonly status: 'measured' | 'skipped';
  readonly reason?: string;
  readonly secrets?: number;
  readonly quotaNote?: string;
  /**
   * The least time the quota allows the whole fleet's cold reads (ms): reads / the quota's reads per second.
   * No client can start faster; the target is 3 s or, where the quota allows no such start, 1.5 x this.
   */
  readonly quotaFloorMs?: number;
  /**
   * The least time the store itself takes to answer the fleet's cold reads (ms), at the rate it answered
   * reads in a calibration just before (moto: one Python process). No client can start faster either.
   */
  readonly storeFloorMs?: number;
  /** The poll of this scenario's fleet: its convergence window follows from it. */
  readonly refreshIntervalMs: number;
  readonly result?: FleetResult;
}

/**
 * The first-bundle target of a scenario: 3 s, or 1.5 x the least time the quota or the store itself allows,
 * when that is longer.
 */
const firstBundleGoal = (scenario: Pick<Scenario, 'quotaFloorMs' | 'storeFloorMs'>) =>
  Math.max(
    FIRST_BUNDLE_P99_MS,
    Math.round(1.5 * Math.max(scenario.quotaFloorMs ?? 0, scenario.storeFloorMs ?? 0)),
  );

/**
 * How many reads a second moto answers here, measured as the fleet reads (many clients, 8 reads in flight
 * each) for `durationMs`: its capacity moves with the machine, between about 300 and 600 a second.
 */
async function motoReadsPerSecond(url: string, secretId: string, durationMs = 2_000): Promise<number> {
  const clients = Array.from(
    { length: 16 },
    () =>
      new SecretsManagerClient({
        endpoint: url,
        region: REGION,
        credentials: { accessKeyId: AWS.accessKeyId, secretAccessKey: AWS.secretAccessKey },
      }),
  );
  let answered = 0;
  const started = performance.now();
  const until = started + durationMs;
  try {
    await Promise.all(
      clients.flatMap((client) =>
        Array.from({ length: 8 }, async () => {
          while (performance.now() < until) {
            await client.send(new GetSecretValueCommand({ SecretId: secretId }));
            answered += 1;
          }
        }),
      ),
    );
  } finally {
    for (const client of clients) client.destroy();
  }
  return (answered * 1000) / (performance.now() - started);
}

/**
 * The poll for a fleet asking `probesPerRound` probes per poll (one DescribeSecret per secret and instance):
 * the bench's, or longer where those probes would ask for more than half of what the store answers on
 * average, so that the rotation measures the fleet's schedule rather than the emulator's queue. (At the
 * library's default poll of 5 minutes such a fleet asks for 1/30 of that rate.)
 */
function pollFor(settings: FleetSettings, probesPerRound: number, readsPerSecond: number): number {
  const needed = (1000 * probesPerRound) / (readsPerSecond / 2);
  return Math.max(settings.refreshIntervalMs, Math.ceil(needed / 1000) * 1000);
}

/**
 * moto is one Python process: on this 2-core machine it answers about 300 to 600 reads a second, and past
 * that its queue, not the quota, decides (requests wait longer than the SDK's 5 s attempt timeout and are
 * answered to nobody). A scenario whose cold reads would exceed this many runs a smaller fleet, with its
 * quotas scaled to that fleet as the default ones are, and says so.
 */
const MOTO_COLD_READS = 2_500;

function awsFleet(settings: FleetSettings, secrets: number, explicit: boolean) {
  const reads = (instances: number) => settings.processes * instances * secrets;
  const instances = explicit
    ? settings.instances
    : Math.max(1, Math.min(settings.instances, Math.floor(MOTO_COLD_READS / reads(1))));
  const ratio = instances / settings.instances;
  const quotas: Record<string, number> = {};
  for (const [api, rate] of Object.entries(settings.awsQuotas))
    quotas[api] = Math.max(1, Math.round(rate * ratio));
  return { instances, quotas };
}

const pems = (ctx: BenchContext, count: number) => [
  ctx.material.ec.ca.certPem,
  ...rootCertificates.slice(0, Math.max(0, count - 1)),
];

async function awsScenarios(ctx: BenchContext, settings: FleetSettings): Promise<Scenario[]> {
  const moto = await startMoto();
  if (typeof moto === 'string') {
    return settings.secrets.map((n) => ({
      label: `moto, ${n} secrets`,
      status: 'skipped',
      reason: moto,
      refreshIntervalMs: settings.refreshIntervalMs,
    }));
  }
  const seeder = new SecretsManagerClient({
    endpoint: moto.url,
    region: REGION,
    credentials: { accessKeyId: AWS.accessKeyId, secretAccessKey: AWS.secretAccessKey },
  });
  try {
    const { client, rotation } = ctx.material.ec;
    const caCount = Math.max(...settings.secrets) - 1;
    const caIds = pems(ctx, caCount).map((_, i) => `fleet/ca/${i}`);
    await seeder.send(
      new CreateSecretCommand({
        Name: 'fleet/client',
        SecretString: JSON.stringify({ key: client.keyPem, cert: client.certPem }),
      }),
    );
    await Promise.all(
      pems(ctx, caCount).map((pem, i) =>
        seeder.send(new CreateSecretCommand({ Name: caIds[i], SecretString: pem })),
      ),
    );
    const readsPerSecond = await motoReadsPerSecond(moto.url, caIds[0] ?? 'fleet/client');
    ctx.log(`[fleet] moto answers ${Math.round(readsPerSecond)} reads/s here (2 s calibration)`);
    let next = 0;
    const scenarios: Scenario[] = [];
    for (const secrets of settings.secrets) {
      const { instances, quotas } = awsFleet(settings, secrets, ctx.flags['fleet-instances'] !== undefined);
      const fleetSize = settings.processes * instances;
      const refreshIntervalMs = pollFor(settings, fleetSize * secrets, readsPerSecond);
      const proxy = await startQuotaProxy({ target: moto.url, classify: awsTarget, quotas });
      try {
        ctx.log(`[fleet] moto, ${settings.processes} x ${instances} instances, ${secrets} secrets`);
        const result = await runFleet({
          processes: settings.processes,
          instancesPerProcess: instances,
          spreadMs: settings.spreadMs,
          coldTimeoutMs: settings.coldTimeoutMs,
          proxy,
          quotas,
          plan: {
            store: 'aws',
            endpoint: proxy.url,
            clientSecret: 'fleet/client',
            caSecrets: caIds.slice(0, secrets - 1),
            refreshIntervalMs,
            retryEveryMs: 200,
            aws: AWS,
          },
          rotate: async () => {
            // A new certificate (and key) for the client: what a renewal writes.
            const issued = rotation[next++ % rotation.length] ?? client;
            await seeder.send(
              new PutSecretValueCommand({
                SecretId: 'fleet/client',
                SecretString: JSON.stringify({ key: issued.keyPem, cert: issued.certPem }),
              }),
            );
          },
          rotateTimeoutMs: window(refreshIntervalMs) + 9_000,
        });
        scenarios.push({
          label: `moto, ${secrets} secrets${instances === settings.instances ? '' : `, ${settings.processes} x ${instances} instances (moto's capacity)`}`,
          status: 'measured',
          secrets,
          // `secrets` secrets per instance (key and cert share one; the others are CAs); a batch reads 20.
          quotaFloorMs:
            (1000 * fleetSize * secrets) /
            ((quotas.GetSecretValue ?? 0) + 20 * (quotas.BatchGetSecretValue ?? 0)),
          storeFloorMs: (1000 * fleetSize * secrets) / readsPerSecond,
          refreshIntervalMs,
          quotaNote: `${Object.entries(quotas)
            .map(([api, rate]) => `${api} ${rate}/s`)
            .join(', ')}; moto answered ${Math.round(readsPerSecond)} reads/s`,
          result,
        });
      } finally {
        await proxy.close();
      }
    }
    return scenarios;
  } finally {
    seeder.destroy();
    await moto.close();
  }
}

/**
 * Parameter Store on moto: one JSON parameter with key and certificate and `secrets - 1` CA parameters, read
 * with GetParameters (10 names a call) under one shared throughput quota, as AWS enforces it.
 */
async function ssmScenario(ctx: BenchContext, settings: FleetSettings): Promise<Scenario> {
  const secrets = Math.min(...settings.secrets);
  const label = `moto SSM, ${secrets} parameters`;
  const moto = await startMoto();
  if (typeof moto === 'string') {
    return { label, status: 'skipped', reason: moto, refreshIntervalMs: settings.refreshIntervalMs };
  }
  const seeder = new SSMClient({ endpoint: moto.url, region: REGION, credentials: AWS });
  const proxy = await startQuotaProxy({
    target: moto.url,
    classify: (req) => {
      const api = awsTarget(req);
      return api === 'GetParameter' || api === 'GetParameters' ? SSM_READS : api;
    },
    quotas: { [SSM_READS]: settings.ssmRate },
  });
  try {
    const { client } = ctx.material.ec;
    const put = (name: string, value: string) =>
      seeder.send(new PutParameterCommand({ Name: name, Value: value, Type: 'String', Overwrite: true }));
    await put('/fleet/client', JSON.stringify({ key: client.keyPem, cert: client.certPem }));
    const caNames = pems(ctx, secrets - 1).map((_, i) => `/fleet/ca/${i}`);
    for (const [i, pem] of pems(ctx, secrets - 1).entries()) await put(caNames[i] as string, pem);
    const fleetSize = settings.processes * settings.instances;
    // GetParameters reads 10 names a call: that many calls per instance, one quota for all.
    const quotaFloorMs = (1000 * fleetSize * Math.ceil(secrets / 10)) / settings.ssmRate;
    // A version check is one GetParameter per parameter: at this quota a fleet's poll is a minute or more,
    // so the cold start alone is measured (a rotation is followed as with Secrets Manager: same resolver).
    const refreshIntervalMs = pollFor(settings, fleetSize * secrets, settings.ssmRate);
    ctx.log(
      `[fleet] moto SSM, ${settings.processes} x ${settings.instances} instances, ${secrets} parameters`,
    );
    const result = await runFleet({
      processes: settings.processes,
      instancesPerProcess: settings.instances,
      spreadMs: settings.spreadMs,
      coldTimeoutMs: Math.max(settings.coldTimeoutMs, 2 * quotaFloorMs),
      proxy,
      quotas: { [SSM_READS]: settings.ssmRate },
      plan: {
        store: 'ssm',
        endpoint: proxy.url,
        clientSecret: '/fleet/client',
        caSecrets: caNames,
        refreshIntervalMs,
        retryEveryMs: 200,
        aws: AWS,
      },
      rotateTimeoutMs: 0,
    });
    return {
      label,
      status: 'measured',
      secrets,
      quotaFloorMs,
      refreshIntervalMs,
      quotaNote: `${SSM_READS} ${settings.ssmRate}/s (one throughput quota, as AWS's standard 40/s per account)`,
      result,
    };
  } finally {
    seeder.destroy();
    await proxy.close();
    await moto.close();
  }
}

async function vaultScenario(ctx: BenchContext, settings: FleetSettings): Promise<Scenario> {
  const secrets = Math.min(...settings.secrets);
  const label = `OpenBao, ${secrets} secrets`;
  const bao = await startBao({ install: true });
  if (typeof bao === 'string') {
    return { label, status: 'skipped', reason: bao, refreshIntervalMs: settings.refreshIntervalMs };
  }
  const api = async (method: string, path: string, body?: unknown) => {
    // The quota applies to the seeding and the rotation too: a 429 is waited out.
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(`${bao.url}/v1/${path}`, {
        method,
        headers: { 'X-Vault-Token': bao.rootToken, 'Content-Type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      if (response.status === 429 && attempt < 50) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
      return (text ? JSON.parse(text) : {}) as { auth?: { client_token?: string } };
    }
  };
  const proxy = await startQuotaProxy({
    target: bao.url,
    classify: (req) => {
      const path = req.url ?? '';
      if (path.startsWith('/v1/secret/data/')) return 'KV read';
      if (path.startsWith('/v1/secret/metadata/')) return 'KV metadata';
      if (path.startsWith('/v1/sys/internal/ui/mounts/')) return 'mount detection';
      if (path.includes('/login')) return 'login';
      if (path.startsWith('/v1/auth/token/lookup-self')) return 'token lookup';
      return `other ${path.split('?')[0]}`;
    },
  });
  try {
    const { client, rotation } = ctx.material.ec;
    await api('PUT', 'sys/policies/acl/fleet', {
      policy: [
        'path "secret/data/fleet/*" { capabilities = ["read"] }',
        'path "secret/metadata/fleet/*" { capabilities = ["read"] }',
      ].join('\n'),
    });
    const token = (await api('POST', 'auth/token/create', { policies: ['fleet'], ttl: '2h' })).auth
      ?.client_token;
    if (!token) throw new Error('no token from auth/token/create');
    await api('POST', 'secret/data/fleet/client', { data: { key: client.keyPem, cert: client.certPem } });
    const caPaths = pems(ctx, secrets - 1).map((_, i) => `secret/fleet/ca/${i}`);
    for (const [i, pem] of pems(ctx, secrets - 1).entries()) {
      await api('POST', `secret/data/fleet/ca/${i}`, { data: { ca: pem } });
    }
    // A real quota, enforced by the server for every path.
    await api('POST', 'sys/quotas/rate-limit/fleet', { rate: settings.vaultRate, interval: '1s' });
    ctx.log(`[fleet] OpenBao, ${settings.processes} x ${settings.instances} instances, ${secrets} secrets`);
    const result = await runFleet(
      {
        processes: settings.processes,
        instancesPerProcess: settings.instances,
        spreadMs: settings.spreadMs,
        coldTimeoutMs: settings.coldTimeoutMs,
        proxy,
        quotas: {},
        plan: {
          store: 'vault',
          endpoint: proxy.url,
          clientSecret: 'secret/fleet/client',
          caSecrets: caPaths,
          refreshIntervalMs: settings.refreshIntervalMs,
          retryEveryMs: 200,
          vaultToken: token,
        },
        rotate: async () => {
          const issued = rotation[0] ?? client;
          await api('POST', 'secret/data/fleet/client', {
            data: { key: issued.keyPem, cert: issued.certPem },
          });
        },
        rotateTimeoutMs: window(settings.refreshIntervalMs) + 9_000,
      },
      settings.vaultRate,
    );
    return {
      label: `${bao.description}, ${secrets} secrets`,
      status: 'measured',
      secrets,
      // a token lookup and one KV read per secret, per instance
      quotaFloorMs: (1000 * settings.processes * settings.instances * (secrets + 1)) / settings.vaultRate,
      refreshIntervalMs: settings.refreshIntervalMs,
      quotaNote: `rate-limit quota ${settings.vaultRate}/s (all paths); 429s are the server's`,
      result,
    };
  } finally {
    await proxy.close();
    await bao.close();
  }
}

/**
 * The documented convergence window (docs/resolver.md, Polls): one jittered poll, plus the cycle that sees
 * the change, a probe and a fetch: a second, or twice the store's slowest p99 answer in the phase when the
 * store was slower than that (an emulator's queue is not the fleet's schedule).
 */
const window = (refreshIntervalMs: number, calls: readonly ApiSummary[] = []) =>
  refreshIntervalMs * (1 + JITTER) +
  Math.max(1_000, 2 * Math.max(0, ...calls.map((row) => row.answerP99Ms ?? 0)));

const ms = (value: number) => (Number.isFinite(value) ? fmt(value, 0) : '> timeout');

const callsCell = (rows: readonly ApiSummary[]) =>
  rows
    .filter((row) => row.api !== 'all')
    .map((row) => {
      const statuses = Object.entries(row.statuses)
        .filter(([status]) => status !== '200')
        .map(([status, n]) => `${status}: ${n}`);
      return `${row.api} ${row.calls}${row.throttled ? ` (${row.throttled} throttled)` : ''}${
        statuses.length ? ` [${statuses.join(', ')}]` : ''
      }${row.answerP99Ms === undefined ? '' : `, store answered p99 ${row.answerP99Ms} ms`}`;
    })
    .join('; ');

const peaksCell = (rows: readonly ApiSummary[]) =>
  rows
    .filter((row) => row.quota !== undefined)
    .map(
      (row) =>
        `${row.api} ${row.peakPerSecond}/${row.quota}${row.secondsAboveQuota ? ` (${row.secondsAboveQuota} s over)` : ''}`,
    )
    .join('; ');

export async function runFleetSection(ctx: BenchContext): Promise<SectionResult> {
  const settings = fleetSettings(ctx.flags, ctx.smoke);
  const scenarios: Scenario[] = [];
  if (settings.stores.has('aws')) scenarios.push(...(await awsScenarios(ctx, settings)));
  if (settings.stores.has('ssm')) scenarios.push(await ssmScenario(ctx, settings));
  if (settings.stores.has('vault')) scenarios.push(await vaultScenario(ctx, settings));

  const targets: Target[] = [];
  for (const scenario of scenarios) {
    const { label, result, quotaFloorMs, storeFloorMs } = scenario;
    if (!result) continue;
    const floors = `quota allows ${Math.round(quotaFloorMs ?? 0)} ms${storeFloorMs === undefined ? '' : `, the store ${Math.round(storeFloorMs)} ms`}`;
    targets.push(
      target(
        SECTION,
        `${label}: first bundle p99 ms (${floors})`,
        result.firstBundleMs.p99,
        '<=',
        firstBundleGoal(scenario),
      ),
      target(
        SECTION,
        `${label}: seconds any API was above its quota`,
        Math.max(0, ...result.cold.map((row) => row.secondsAboveQuota)),
        '<=',
        1,
      ),
    );
    if (result.rotation) {
      targets.push(
        target(
          SECTION,
          `${label}: rotation, 99 % converged ms`,
          result.rotation.p99Ms,
          '<=',
          window(scenario.refreshIntervalMs, result.rotation.calls),
        ),
      );
    }
  }
  const fleet = `${settings.processes} processes x ${settings.instances} instances`;
  return {
    title: `7. Fleet: ${fleet} starting within ${settings.spreadMs} ms`,
    tables: [
      table(
        'Cold start (each instance: its own provider, SDK client and resolver)',
        ['store', 'ready', 'first bundle p50 ms', 'p99', 'max', 'store calls', 'peak/s vs quota'],
        scenarios.map(({ label, status, reason, result }) =>
          status === 'measured' && result
            ? [
                label,
                `${result.ready}/${result.instances}`,
                ms(result.firstBundleMs.p50),
                ms(result.firstBundleMs.p99),
                ms(result.firstBundleMs.max),
                callsCell(result.cold),
                peaksCell(result.cold),
              ]
            : [label, '-', '-', '-', '-', `SKIPPED: ${reason}`, '-'],
        ),
      ),
      table(
        `Rotation: the key+cert secret rewritten in the store; window = poll x ${1 + JITTER} + the cycle that sees it (1 s, or 2 x the store's slowest p99 answer if longer)`,
        ['store', 'poll ms', 'window ms', 'converged', '99 % ms', 'all ms', 'store calls', 'peak/s vs quota'],
        scenarios
          .filter((s) => s.result?.rotation)
          .map(({ label, result, refreshIntervalMs }) => {
            const rotation = result?.rotation;
            return rotation
              ? [
                  label,
                  fmt(refreshIntervalMs, 0),
                  fmt(window(refreshIntervalMs, rotation.calls), 0),
                  `${rotation.converged}/${rotation.instances}`,
                  ms(rotation.p99Ms),
                  ms(rotation.maxMs),
                  callsCell(rotation.calls),
                  peaksCell(rotation.calls),
                ]
              : [label, '-', '-', '-', '-', '-', '-', '-'];
          }),
      ),
      [
        `Quotas: ${scenarios.map((s) => `${s.label}: ${s.quotaNote ?? '-'}`).join('; ')}`,
        'Cold start, calls per second of an API that went above its quota (throttled in brackets; second 0 is the',
        'one the fleet starts in):',
        ...scenarios.flatMap(({ label, result }) =>
          (result?.cold ?? [])
            .filter((row) => row.secondsAboveQuota > 0)
            .map(
              (row) =>
                `  ${label}, ${row.api}: ${row.perSecond.map((n, i) => `${n} (${row.throttledPerSecond[i] ?? 0})`).join(', ')}`,
            ),
        ),
        `Instances start ${settings.spreadMs} ms apart at most (interleaved across processes); an instance calls`,
        'resolve() again every 200 ms until it has a bundle (the resolver decides whether the store is asked).',
        `Instances without a bundle after ${settings.coldTimeoutMs} ms count as "> timeout" in the percentiles.`,
      ].join('\n'),
    ],
    targets,
    data: { settings: { ...settings, stores: [...settings.stores] }, scenarios },
  };
}
