/**
 * Store quotas (issue 16): real moto behind a fault proxy that enforces AWS quotas per API (a token bucket
 * on `X-Amz-Target`, answering as AWS throttles), and a real OpenBao with a rate-limit quota. Every test
 * counts store calls; none is timed. Waits are on events, or on the resolver's clock (skewedClock).
 */
import { randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { ssmParameterStore } from '../../providers/aws-ssm.js';
import { parseRetryAfter } from '../../providers/vault/errors.js';
import { vault } from '../../providers/vault/index.js';
import {
  ClosedError,
  FetchError,
  Resolver,
  type ResolverOptions,
  SecretNotFoundError,
  type TlsSecretsError,
  type TlsSecretsSpec,
} from '../../src/index.js';
import { createTestCA, type TestCA } from '../fixtures/ca.js';
import { type Bao, startBao } from '../helpers/bao.js';
import { skewedClock } from '../helpers/clock.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';

const motoEndpoint = inject('motoEndpoint');
const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-access-key' };
const signal = () => new AbortController().signal;

let ca: TestCA;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  ca = await createTestCA();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A resolver on `clock` (the real one by default), closed after the test, with its errors collected. */
function observed(spec: TlsSecretsSpec, options: ResolverOptions, clock = skewedClock()) {
  const resolver = new Resolver(spec, options, { clock });
  cleanups.push(() => resolver.close());
  const errors: TlsSecretsError[] = [];
  resolver.on('error', (error) => errors.push(error));
  return { resolver, errors, clock };
}

describe.skipIf(!motoEndpoint)('AWS Secrets Manager quotas (moto behind a quota-enforcing proxy)', () => {
  let admin: SecretsManagerClient;
  let proxy: FaultProxy;
  /** Where the current test's part of the proxy's log starts. */
  let mark = 0;
  const restart = () => {
    mark = proxy.log.length;
  };

  beforeAll(async () => {
    admin = new SecretsManagerClient({ endpoint: motoEndpoint, region: REGION, credentials: CREDENTIALS });
    proxy = await startFaultProxy(motoEndpoint);
  });
  afterAll(async () => {
    admin?.destroy();
    await proxy?.close();
  });
  beforeEach(() => restart());
  afterEach(async () => {
    await proxy.setFault({ kind: 'none' });
  });

  /** `count` secrets holding the CA certificate, named uniquely. */
  async function seed(count: number): Promise<string[]> {
    const names = Array.from({ length: count }, () => `quota-${randomUUID().slice(0, 8)}`);
    for (const name of names) {
      await admin.send(new CreateSecretCommand({ Name: name, SecretString: ca.certPem }));
    }
    restart(); // seeding goes to moto directly; the count starts here anyway
    return names;
  }

  const provider = (options: { maxAttempts?: number; minBatchSize?: number } = {}) => {
    const sm = awsSecretsManager({
      region: REGION,
      endpoint: proxy.url,
      credentials: CREDENTIALS,
      ...options,
    });
    cleanups.push(() => sm.close());
    return sm;
  };
  const calls = (api: string, faulted?: boolean) =>
    proxy.log.slice(mark).filter((r) => r.target === api && (faulted === undefined || r.faulted === faulted))
      .length;

  it('a throttled batch is tried once (not by the SDK again), falls back to GetSecretValue at once, and no batch is tried during the cooldown', async () => {
    const names = await seed(12);
    // The account's batch quota is spent: every BatchGetSecretValue is throttled, GetSecretValue is not.
    await proxy.setFault({ kind: 'quota', limits: { BatchGetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ minBatchSize: 9 }); // the SDK's default 3 attempts
    const refs = names.map((name) => sm.secret(name));

    const first = await sm.fetchMany(refs, signal());
    expect(first.map((r) => (r instanceof Error ? r : String(r.value).trim()))).toEqual(
      names.map(() => ca.certPem.trim()),
    );
    expect(calls('BatchGetSecretValue')).toBe(1); // one attempt, not the SDK's three
    expect(calls('GetSecretValue')).toBe(12);

    // The quota is back, but the provider is in its cooldown: single reads only.
    await proxy.setFault({ kind: 'none' });
    restart();
    await sm.fetchMany(refs, signal());
    expect(calls('BatchGetSecretValue')).toBe(0);
    expect(calls('GetSecretValue')).toBe(12);

    // The cooldown is 2 to 4 minutes: 4 min later (a fake Date; moto does not check signing times) it batches.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 240_001 });
    try {
      restart();
      await sm.fetchMany(refs, signal());
      expect([calls('BatchGetSecretValue'), calls('GetSecretValue')]).toEqual([1, 0]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a cold resolve of 12 secrets with the batch quota spent gets its first bundle from the first cycle', async () => {
    const names = await seed(12);
    await proxy.setFault({ kind: 'quota', limits: { BatchGetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ minBatchSize: 9 });
    const { resolver, errors } = observed({ ca: names.map((name) => sm.secret(name)) }, {});
    await resolver.resolve();
    expect(errors).toEqual([]);
    expect(calls('BatchGetSecretValue')).toBe(1);
    expect(calls('GetSecretValue')).toBe(12);
  });

  it('the reads of throttled batches go out 8 at a time, not 8 per batch', async () => {
    const names = await seed(41);
    await proxy.setFault({ kind: 'quota', limits: { BatchGetSecretValue: { perSecond: 0, burst: 0 } } });
    // The SDK client itself, counted as it sends: how many GetSecretValue reads are in flight at once.
    const client = new SecretsManagerClient({
      endpoint: proxy.url,
      region: REGION,
      credentials: CREDENTIALS,
    });
    cleanups.push(() => client.destroy());
    const send = client.send.bind(client) as (...args: unknown[]) => Promise<unknown>;
    let inFlight = 0;
    let most = 0;
    (client as { send: unknown }).send = async (...args: unknown[]) => {
      if (!(args[0] instanceof GetSecretValueCommand)) return send(...args);
      inFlight += 1;
      most = Math.max(most, inFlight);
      try {
        return await send(...args);
      } finally {
        inFlight -= 1;
      }
    };
    const sm = awsSecretsManager({ client });
    cleanups.push(() => sm.close());
    const results = await sm.fetchMany(
      names.map((name) => sm.secret(name)),
      signal(),
    );
    expect(results.filter((result) => result instanceof Error)).toEqual([]);
    expect([calls('BatchGetSecretValue'), calls('GetSecretValue')]).toEqual([3, 41]);
    // Three batches of 20, 20 and 1 each fell back at once; 8 of their reads at a time in all.
    expect(most).toBeLessThanOrEqual(8);
  });

  it('batches only where it pays: 40 secrets are 40 GetSecretValue, 41 are 3 batch calls', async () => {
    const sm = provider();
    const few = await seed(40);
    await sm.fetchMany(
      few.map((name) => sm.secret(name)),
      signal(),
    );
    expect([calls('BatchGetSecretValue'), calls('GetSecretValue')]).toEqual([0, 40]);
    restart();
    const many = await seed(41);
    await sm.fetchMany(
      many.map((name) => sm.secret(name)),
      signal(),
    );
    expect([calls('BatchGetSecretValue'), calls('GetSecretValue')]).toEqual([3, 0]);
  });

  it('a throttled GetSecretValue costs exactly maxAttempts calls: the provider retries it in its paced turn, the SDK does not retry it too', async () => {
    const names = await seed(4);
    await proxy.setFault({ kind: 'quota', limits: { GetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ maxAttempts: 3 });
    const results = await sm.fetchMany(
      names.map((name) => sm.secret(name)),
      signal(),
    );
    for (const result of results) {
      expect(result).toBeInstanceOf(FetchError);
      expect(result).toMatchObject({ transient: true, message: expect.stringMatching(/throttling/) });
    }
    // 4 reads x 3 attempts; with the SDK retrying each attempt as well it would be 4 x 3 x 3.
    expect(calls('GetSecretValue', true)).toBe(12);
    expect(calls('GetSecretValue', false)).toBe(0);
    // The quota back: the next reads pass (the first at once, the others in their paced turns).
    await proxy.setFault({ kind: 'none' });
    restart();
    const again = await sm.fetchMany(
      names.map((name) => sm.secret(name)),
      signal(),
    );
    expect(again.filter((result) => result instanceof Error)).toEqual([]);
    expect(calls('GetSecretValue')).toBe(4);
  });

  it('a cold resolve facing throttling keeps trying within its start budget, on the backoff, and succeeds', async () => {
    const names = await seed(3);
    // Every read throttled until the resolver has met it once; one SDK attempt so the calls are exact.
    await proxy.setFault({ kind: 'quota', limits: { GetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ maxAttempts: 1 });
    const { resolver, errors } = observed(
      { ca: names.map((name) => sm.secret(name)) },
      { retryInitialDelayMs: 20 },
    );
    resolver.once('error', () => void proxy.setFault({ kind: 'none' }));
    // Concurrent cold callers share one attempt sequence.
    const resolved = await Promise.all([resolver.resolve(), resolver.resolve(), resolver.resolve()]);
    expect(new Set(resolved).size).toBe(1);
    expect(errors.length).toBe(3); // one failed cycle: three throttled secrets
    for (const error of errors) expect(error).toMatchObject({ transient: true });
    expect(errors[0]?.message).toMatch(/throttling \(ThrottlingException\)/);
    expect(calls('GetSecretValue', true)).toBe(3);
    expect(calls('GetSecretValue', false)).toBe(3);
    expect(calls('BatchGetSecretValue')).toBe(0);
  });

  it('a cold resolve rejects with the last transient error once the next backoff step falls past the budget (on the resolver clock)', async () => {
    const names = await seed(1);
    await proxy.setFault({ kind: 'quota', limits: { GetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ maxAttempts: 1 });
    const { resolver, errors, clock } = observed(
      { ca: sm.secret(names[0] as string) },
      { retryInitialDelayMs: 200, startBudgetMs: 10_000 },
    );
    // After the first failure, 20 s pass on the resolver's clock: the step due then lies past the budget.
    resolver.once('error', () => clock.advance(20_000));
    const error = await resolver.resolve().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FetchError);
    expect((error as FetchError).transient).toBe(true);
    expect(errors).toHaveLength(2);
    expect(error).toBe(errors[1]);
    expect(calls('GetSecretValue')).toBe(2);
    expect(resolver.state).toBe('cold');

    // A later caller starts a budget of its own, on the same backoff: one more call, once the store is back.
    await proxy.setFault({ kind: 'none' });
    const pending = resolver.resolve();
    await pending;
    expect(calls('GetSecretValue')).toBe(3);
    expect(errors).toHaveLength(2);
  });

  it('a permanent error (not found) rejects at once, whatever the budget', async () => {
    const sm = provider();
    const { resolver } = observed({ ca: sm.secret(`missing-${randomUUID().slice(0, 8)}`) }, {});
    await expect(resolver.resolve()).rejects.toBeInstanceOf(SecretNotFoundError);
    expect(calls('GetSecretValue')).toBe(1);
  });

  it('close() during the start budget rejects the waiting callers with the closed error, and no store call follows', async () => {
    const names = await seed(1);
    await proxy.setFault({ kind: 'quota', limits: { GetSecretValue: { perSecond: 0, burst: 0 } } });
    const sm = provider({ maxAttempts: 1 });
    const { resolver } = observed(
      { ca: sm.secret(names[0] as string) },
      { retryInitialDelayMs: 3_600_000, retryMaxDelayMs: 3_600_000, startBudgetMs: 7_200_000 },
    );
    // Once the cold start waits for its next step (an hour away), close() must end the wait.
    resolver.once('error', () => setImmediate(() => void resolver.close()));
    const [a, b] = await Promise.all([
      resolver.resolve().catch((e: unknown) => e),
      resolver.resolve().catch((e: unknown) => e),
    ]);
    expect(a).toBeInstanceOf(ClosedError);
    expect(b).toBeInstanceOf(ClosedError);
    expect(calls('GetSecretValue')).toBe(1);
  });
});

describe.skipIf(!motoEndpoint)(
  'SSM Parameter Store quotas: batching always pays, throttled reads are paced',
  () => {
    let proxy: FaultProxy;
    let names: string[];
    beforeAll(async () => {
      const admin = new SSMClient({ endpoint: motoEndpoint, region: REGION, credentials: CREDENTIALS });
      names = Array.from({ length: 6 }, () => `/quota/${randomUUID().slice(0, 8)}`);
      for (const name of names) {
        await admin.send(new PutParameterCommand({ Name: name, Value: ca.certPem, Type: 'String' }));
      }
      admin.destroy();
      proxy = await startFaultProxy(motoEndpoint);
    });
    afterAll(async () => {
      await proxy?.close();
    });
    let mark = 0;
    beforeEach(() => {
      mark = proxy.log.length;
    });
    afterEach(async () => {
      await proxy.setFault({ kind: 'none' });
    });
    const provider = (maxAttempts: number) => {
      const ssm = ssmParameterStore({
        region: REGION,
        endpoint: proxy.url,
        credentials: CREDENTIALS,
        maxAttempts,
      });
      cleanups.push(() => ssm.close());
      return ssm;
    };
    const log = (api: string) => proxy.log.slice(mark).filter((r) => r.target === api);

    it('a throttled GetParameters is not split into GetParameter calls (one account-wide throughput for both)', async () => {
      await proxy.setFault({ kind: 'quota', limits: { GetParameters: { perSecond: 0, burst: 0 } } });
      const ssm = provider(2);
      const results = await ssm.fetchMany(
        names.slice(0, 3).map((name) => ssm.ref(name)),
        signal(),
      );
      for (const result of results) expect(result).toMatchObject({ transient: true });
      // Two attempts of the one call (the provider's retry, not the SDK's as well), and no single reads.
      expect([log('GetParameters').length, log('GetParameter').length]).toEqual([2, 0]);
    });

    it('at most 8 calls in flight: a refresh checking 20 versions does not send them all at once', async () => {
      const admin = new SSMClient({ endpoint: motoEndpoint, region: REGION, credentials: CREDENTIALS });
      const many = Array.from({ length: 20 }, () => `/quota/${randomUUID().slice(0, 8)}`);
      for (const name of many) {
        await admin.send(new PutParameterCommand({ Name: name, Value: ca.certPem, Type: 'String' }));
      }
      admin.destroy();
      mark = proxy.log.length;
      const DELAY_MS = 300;
      await proxy.setFault({ kind: 'delay', ms: DELAY_MS });
      const ssm = provider(1);
      await Promise.all(many.map((name) => ssm.currentVersion(ssm.ref(name), signal())));
      const starts = log('GetParameter')
        .map((call) => call.at)
        .sort((a, b) => a - b);
      expect(starts).toHaveLength(20);
      // Each call is answered DELAY_MS after it arrives at the earliest: calls arriving within DELAY_MS of one
      // another were in flight together. At most 8, and yet together (20 one by one would take 6 s).
      const together = starts.map(
        (at) => starts.filter((other) => other >= at && other < at + DELAY_MS).length,
      );
      expect(Math.max(...together)).toBeLessThanOrEqual(8);
      expect((starts[19] as number) - (starts[0] as number)).toBeLessThan(10 * DELAY_MS);
    });

    it('a throttled GetParameter is retried by the provider in paced turns: maxAttempts calls each, no two retries together', async () => {
      await proxy.setFault({ kind: 'quota', limits: { GetParameter: { perSecond: 0, burst: 0 } } });
      const ssm = provider(2);
      const results = await Promise.all(
        names.map((name) => ssm.fetch(ssm.ref(name), signal()).catch((e) => e)),
      );
      for (const result of results) {
        expect(result).toBeInstanceOf(FetchError);
        expect(result).toMatchObject({ transient: true, message: expect.stringMatching(/throttling/) });
      }
      // 6 reads x 2 attempts; the SDK retrying each attempt as well would make it 6 x 2 x 2.
      const calls = log('GetParameter');
      expect(calls.length).toBe(12);
      // The 6 first attempts go out together (nothing was throttled yet); each retry waits its turn, at least
      // half the least spacing (250 ms) after the call before it. On the SDK's own backoff they came together.
      const starts = calls.map((call) => call.at).sort((a, b) => a - b);
      const gaps = starts.slice(6).map((at, i) => at - (starts[5 + i] as number));
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(100);
    });
  },
);

describe('OpenBao rate-limit quotas (sys/quotas/rate-limit): 429 with Retry-After', () => {
  let bao: Bao | undefined;
  let reason = '';

  beforeAll(async () => {
    const started = await startBao({ install: true });
    if (typeof started === 'string') reason = started;
    else bao = started;
  });
  afterAll(async () => {
    await bao?.close();
  });

  const sys = async (method: string, path: string, body?: object) => {
    if (!bao) throw new Error(reason);
    const response = await fetch(`${bao.url}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': bao.rootToken },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    await response.arrayBuffer();
    return response;
  };

  it('parses Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('9')).toBe(9_000);
    expect(
      parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', Date.parse('Wed, 21 Oct 2015 07:27:30 GMT')),
    ).toBe(30_000);
    expect(parseRetryAfter('soon')).toBeUndefined();
    for (const malformed of ['-5', '+5', '1.5', '5 s', '2015-10-21T07:28:00Z']) {
      expect(parseRetryAfter(malformed)).toBeUndefined();
    }
    expect(parseRetryAfter(undefined)).toBeUndefined();
  });

  it('the resolver waits for Retry-After (capped at retryMaxDelayMs), keeps serving, and says rate-limited', async () => {
    if (!bao) throw new Error(`OpenBao is required: ${reason}`);
    const path = `quota-${randomUUID().slice(0, 8)}`;
    expect((await sys('POST', `secret/data/${path}`, { data: { ca: ca.certPem } })).status).toBe(200);
    const v = vault({ endpoint: bao.url, auth: { token: bao.rootToken } });
    cleanups.push(() => v.close());
    const { resolver, errors, clock } = observed(
      { ca: v.kv(`secret/${path}`, { field: 'ca' }) },
      { retryInitialDelayMs: 50, retryMaxDelayMs: 15_000, refreshIntervalMs: 3_600_000 },
    );
    const served = await resolver.resolve();
    const storeCalls: string[] = [];
    resolver.on('storeCall', (call) => storeCalls.push(call.kind));

    // A real quota: 1 request per minute on the KV mount, with the response headers on.
    expect(
      (await sys('POST', 'sys/quotas/config', { enable_rate_limit_response_headers: true })).status,
    ).toBe(204);
    expect(
      (await sys('POST', `sys/quotas/rate-limit/${path}`, { rate: 1, interval: '60s', path: 'secret/' }))
        .status,
    ).toBe(204);
    cleanups.push(() => sys('DELETE', `sys/quotas/rate-limit/${path}`));
    // Spend this minute's request, until the server itself says 429 (the refresh right after meets it too).
    let spent = 0;
    while ((await sys('GET', `secret/data/${path}`)).status !== 429) expect(++spent).toBeLessThan(5);

    const first = await resolver.refresh();
    expect(first.errors).toHaveLength(1);
    const error = first.errors[0] as FetchError;
    expect(error).toBeInstanceOf(FetchError);
    expect(error.transient).toBe(true);
    expect(error.message).toMatch(/rate limit exceeded \(429\), the server asks to retry after \d+ s/);
    expect(error.retryAfterMs).toBeGreaterThan(1_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(60_000);
    expect(errors).toHaveLength(1);
    const callsAfterFirst = storeCalls.length;
    expect(callsAfterFirst).toBe(1); // the version probe, answered 429

    // Last known good keeps serving; status says rate-limited and names no token.
    expect(await resolver.resolve()).toBe(served);
    const status = resolver.status();
    expect(status.state).toBe('stale');
    expect(status.fields[0]?.lastError?.message).toMatch(/rate limit exceeded/);
    expect(JSON.stringify(status)).not.toContain(bao.rootToken);
    expect(inspect(error, { showHidden: true, depth: 10 })).not.toContain(bao.rootToken);

    // 10 s on: the backoff alone (50 ms) would have asked again; Retry-After (>= 1 s, capped at 15 s) holds.
    clock.advance(Math.min(error.retryAfterMs ?? 0, 15_000) - 500);
    await resolver.refresh();
    expect(storeCalls.length).toBe(callsAfterFirst);
    // Past min(Retry-After, retryMaxDelayMs) the store is asked again.
    clock.advance(1_000);
    await resolver.refresh();
    expect(storeCalls.length).toBe(callsAfterFirst + 1);
  });

  it('a hostile Retry-After (a day, through a fault proxy) holds refreshes for retryMaxDelayMs at most', async () => {
    if (!bao) throw new Error(`OpenBao is required: ${reason}`);
    const path = `hostile-${randomUUID().slice(0, 8)}`;
    await sys('POST', `secret/data/${path}`, { data: { ca: ca.certPem } });
    const proxy = await startFaultProxy(bao.url);
    cleanups.push(() => proxy.close());
    const v = vault({ endpoint: proxy.url, auth: { token: bao.rootToken } });
    cleanups.push(() => v.close());
    const { resolver, clock } = observed(
      { ca: v.kv(`secret/${path}`, { field: 'ca' }) },
      { retryInitialDelayMs: 50, retryMaxDelayMs: 5_000, refreshIntervalMs: 3_600_000 },
    );
    await resolver.resolve();
    await proxy.setFault({
      kind: 'respond',
      status: 429,
      body: JSON.stringify({ errors: ['rate limit quota exceeded'] }),
      headers: { 'Content-Type': 'application/json', 'Retry-After': '86400' },
      pathPrefix: '/v1/secret/',
    });
    const first = await resolver.refresh();
    expect((first.errors[0] as FetchError).retryAfterMs).toBe(86_400_000);
    const asked = proxy.log.length;
    clock.advance(4_000);
    await resolver.refresh();
    expect(proxy.log.length).toBe(asked); // still within retryMaxDelayMs
    clock.advance(1_500);
    await proxy.setFault({ kind: 'none' });
    const recovered = await resolver.refresh();
    expect(recovered.errors).toEqual([]);
    expect(proxy.log.length).toBeGreaterThan(asked);
    expect(resolver.status().stale).toBe(false);
  });
});
