/**
 * The fault matrix against AWS Secrets Manager (moto behind the fault proxy), through the real SDK: for each
 * fault a server from `createServer()` and a client through `connect()` keep handshaking while both resolvers
 * read their material from the failing store. Figures per fault are printed for the issue note.
 */
import { randomUUID } from 'node:crypto';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { type AwsSecretsManagerProvider, awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { FetchError, type ResolverOptions, type SecretRef } from '../../src/index.js';
import { createTestCA, type Issued, type TestCA } from '../fixtures/ca.js';
import { awsFaults, type FaultProxy, type ProxyFault, startFaultProxy } from '../helpers/fault-proxy.js';
import { eventually, sleep } from '../helpers/tls.js';
import {
  type CountedProvider,
  counted,
  DNS_FAILURE,
  describeFigures,
  FAULT_OPTIONS,
  maxCycles,
  OUTAGE_MS,
  type OutageFigures,
  RECOVERY_SLACK_MS,
  runOutage,
  type Stage,
  startStage,
} from './harness.js';

const endpoint = inject('motoEndpoint');
const NO_MOTO = !endpoint;
if (NO_MOTO) console.warn(`[faults-aws] SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDFAULTS', secretAccessKey: 'faults-secret-access-key' };

const OPTIONS = FAULT_OPTIONS;

let ca: TestCA;
let admin: SecretsManagerClient;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  ca = await createTestCA();
  if (!NO_MOTO) admin = new SecretsManagerClient({ endpoint, region: REGION, credentials: CREDENTIALS });
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const bundleOf = (leaf: Issued) => JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });

function sdkProvider(url: string): AwsSecretsManagerProvider {
  // One HTTP request per store call, so the counts below are requests; the SDK's own retries (default 3
  // attempts) multiply them by at most maxAttempts.
  const provider = awsSecretsManager({
    endpoint: url,
    region: REGION,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    requestTimeoutMs: 2_000,
  });
  cleanups.push(() => provider.close());
  return provider;
}

interface AwsRig {
  name: string;
  proxy: FaultProxy;
  stage: Stage;
  server: CountedProvider;
  client: CountedProvider;
  leaf: Issued;
  dns: { broken: boolean };
}

async function rig(options: ResolverOptions = OPTIONS): Promise<AwsRig> {
  const name = `faults-${randomUUID().slice(0, 8)}`;
  const leaf = await ca.issue({ commonName: 'localhost' });
  await admin.send(new CreateSecretCommand({ Name: name, SecretString: bundleOf(leaf) }));
  const proxy = await startFaultProxy(endpoint);
  cleanups.push(() => proxy.close());
  const healthy = sdkProvider(proxy.url);
  const unresolvable = sdkProvider(DNS_FAILURE);
  const dns = { broken: false };
  const route = (ref: SecretRef) => {
    const provider = dns.broken ? unresolvable : healthy;
    return { provider, ref: { ...ref, provider } };
  };
  const server = counted(healthy, route);
  const client = counted(healthy, route);
  const stage = await startStage(
    {
      key: server.wrap(healthy.secret(name, { jsonKey: 'key' })),
      cert: server.wrap(healthy.secret(name, { jsonKey: 'cert' })),
    },
    { ca: client.wrap(healthy.secret(name, { jsonKey: 'ca' })) },
    options,
  );
  cleanups.push(() => stage.close());
  return { name, proxy, stage, server, client, leaf, dns };
}

/** A new server certificate written straight to moto, past the proxy, while the fault is on. */
async function rotateDirect(r: AwsRig): Promise<Issued> {
  const next = await ca.issue({ commonName: 'localhost' });
  await admin.send(new PutSecretValueCommand({ SecretId: r.name, SecretString: bundleOf(next) }));
  return next;
}

function expectRidesThrough(label: string, figures: OutageFigures, before: Issued, after: Issued) {
  console.info(describeFigures(`aws ${label}`, figures, OUTAGE_MS));
  expect(figures.failures.map((f) => String(f.error))).toEqual([]);
  expect(figures.handshakesFailed).toBe(0);
  expect(figures.okDuringOutage).toBeGreaterThan(10);
  expect(figures.staleDuringOutage).toBe(true);
  // Bounded, and still trying.
  expect(figures.serverCalls).toBeLessThanOrEqual(figures.allowedCalls);
  expect(figures.clientCalls).toBeLessThanOrEqual(figures.allowedCalls);
  expect(figures.serverCalls).toBeGreaterThanOrEqual(2);
  expect(figures.recoveryMs).toBeDefined();
  expect(figures.recoveryMs).toBeLessThanOrEqual(OPTIONS.retryMaxDelayMs + RECOVERY_SLACK_MS);
  expect(figures.serialBefore).toBe(before.serial);
  expect(figures.serialAfter).toBe(after.serial);
}

const FAULTS: { label: string; fault: ProxyFault | 'dns'; reason: RegExp }[] = [
  { label: 'connection refused', fault: { kind: 'refused' }, reason: /ECONNREFUSED/ },
  { label: 'store hangs (no answer)', fault: { kind: 'hang' }, reason: /did not answer in time|aborted/ },
  { label: 'HTTP 500 InternalFailure', fault: awsFaults.internal, reason: /InternalFailure/ },
  { label: 'HTTP 503 ServiceUnavailable', fault: awsFaults.unavailable, reason: /ServiceUnavailable/ },
  { label: 'throttling (400 ThrottlingException)', fault: awsFaults.throttling, reason: /Throttling/ },
  { label: 'DNS failure of the store host', fault: 'dns', reason: /ENOTFOUND|EAI_AGAIN/ },
];

describe.skipIf(NO_MOTO)('fault matrix: AWS Secrets Manager (moto behind a fault proxy)', () => {
  for (const { label, fault, reason } of FAULTS) {
    it(`${label}: 0 failed handshakes, bounded retries, recovery with a rotation`, async () => {
      const r = await rig();
      let next: Issued = r.leaf;
      let refreshDuringFault: { ms: number; errors: number } | undefined;
      const figures = await runOutage(
        r.stage,
        { server: r.server, client: r.client },
        {
          outageMs: OUTAGE_MS,
          inject: async () => {
            if (fault === 'dns') r.dns.broken = true;
            else await r.proxy.setFault(fault);
          },
          clear: async () => {
            if (fault === 'dns') r.dns.broken = false;
            else await r.proxy.setFault({ kind: 'none' });
          },
          rotate: async () => {
            next = await rotateDirect(r);
          },
          during: async () => {
            // An explicit refresh during the fault settles (never hangs) and reports the failure.
            const started = Date.now();
            const result = await r.stage.serverTls.refresh();
            refreshDuringFault = { ms: Date.now() - started, errors: result.errors.length };
          },
        },
        { ...OPTIONS, recoveryTimeoutMs: 3_000 },
      );
      expectRidesThrough(label, figures, r.leaf, next);
      expect(refreshDuringFault?.errors).toBe(1);
      expect(refreshDuringFault?.ms).toBeLessThan(2 * OPTIONS.fetchTimeoutMs + 200);
      const [first] = figures.errorsDuringOutage;
      expect(first).toBeInstanceOf(FetchError);
      expect((first as FetchError).transient).toBe(true);
      expect(first?.ref).toMatch(new RegExp(`^aws-secrets-manager:${r.name}`));
      for (const error of figures.errorsDuringOutage) expect(error.message).toMatch(reason);
      if (fault !== 'dns' && fault.kind !== 'refused') expect(r.proxy.faulted).toBeGreaterThan(0);
    });
  }

  it('a hung store times out at fetchTimeoutMs and never blocks later refreshes', async () => {
    const r = await rig();
    await r.proxy.setFault({ kind: 'hang' });
    const timings: number[] = [];
    // refresh() shares the backoff: within a step it answers with the last error, after it asks again.
    while (r.proxy.faulted < 3) {
      const started = Date.now();
      const result = await r.stage.serverTls.refresh();
      timings.push(Date.now() - started);
      expect(result.errors[0]?.message).toMatch(/did not answer in time|aborted/);
      await sleep(10);
    }
    // Each refresh ends at the timeout: none waits for the request hung before it.
    for (const ms of timings) expect(ms).toBeLessThan(2 * OPTIONS.fetchTimeoutMs + 200);
    await r.proxy.setFault({ kind: 'none' });
    await eventually(async () => expect((await r.stage.serverTls.refresh()).errors).toEqual([]), 3_000);
    expect(r.stage.serverTls.status().stale).toBe(false);
  });

  it('store calls per outage minute at the default backoff (1 s doubling to 60 s), run at 1/100 scale', async () => {
    const scale = 100;
    const scaled = {
      refreshIntervalMs: 300_000 / scale,
      jitter: 0.1,
      retryInitialDelayMs: 1_000 / scale,
      retryMaxDelayMs: 60_000 / scale,
      fetchTimeoutMs: 10_000 / scale,
    } satisfies ResolverOptions;
    const r = await rig(scaled);
    const minute = 60_000 / scale;
    await r.proxy.setFault({ kind: 'refused' });
    const start = Date.now();
    // The outage is noticed at once, as when a handshake failure forces a refresh.
    await r.stage.serverTls.refresh();
    await sleep(3 * minute);
    const perMinute = [0, 1, 2].map((m) => r.server.between(start + m * minute, start + (m + 1) * minute));
    await r.proxy.setFault({ kind: 'none' });
    console.info(
      `[fault] aws refused, default backoff scaled 1/${scale}: store calls per outage minute ${perMinute.join(', ')} (one resolver, one secret)`,
    );
    const bound = {
      retryInitialDelayMs: scaled.retryInitialDelayMs,
      retryMaxDelayMs: scaled.retryMaxDelayMs,
    };
    expect(perMinute[0]).toBeLessThanOrEqual(maxCycles(minute, bound));
    expect(perMinute[0]).toBeGreaterThanOrEqual(4);
    // Past the doubling, every wait is 30..60 s: at most two calls a minute.
    for (const later of perMinute.slice(1)) {
      expect(later).toBeGreaterThanOrEqual(1);
      expect(later).toBeLessThanOrEqual(3);
    }
  });
});
