/**
 * The bench's quota proxy (bench/lib/quota-proxy.ts) in front of real moto: a throttled call reaches the AWS
 * SDK as the ThrottlingException AWS sends, calls under the quota go through, and every call is counted per
 * API. The fleet bench's figures rest on this.
 */
import { randomUUID } from 'node:crypto';
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterAll, expect, inject, it } from 'vitest';
import { awsTarget, type QuotaProxy, startQuotaProxy } from '../bench/lib/quota-proxy.js';

const endpoint = inject('motoEndpoint');
if (!endpoint) console.warn(`[quota-proxy] SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

const CREDENTIALS = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-access-key' };
const proxies: QuotaProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) await proxy.close();
});

it.skipIf(!endpoint)('throttles one API by its bucket, as AWS answers, and counts every call', async () => {
  // The buckets' clock stands still until the test moves it: no refill depends on how fast calls arrive.
  let clock = 0;
  const proxy = await startQuotaProxy({
    target: endpoint,
    classify: awsTarget,
    quotas: { GetSecretValue: 2 },
    now: () => clock,
  });
  proxies.push(proxy);
  const name = `quota-${randomUUID().slice(0, 8)}`;
  // No SDK retries: each throttled answer reaches the caller.
  const client = new SecretsManagerClient({
    endpoint: proxy.url,
    region: 'us-east-1',
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
  try {
    await client.send(new CreateSecretCommand({ Name: name, SecretString: 'value' }));
    const outcomes = await Promise.allSettled(
      Array.from({ length: 5 }, () => client.send(new GetSecretValueCommand({ SecretId: name }))),
    );
    const ok = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason as Error] : []));
    // A bucket holds one second of its rate: two calls go through at once, the rest are throttled.
    expect(ok).toHaveLength(2);
    expect(refused).toHaveLength(3);
    for (const error of refused) {
      expect(error.name).toBe('ThrottlingException');
      expect((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(400);
    }
    const counts = proxy.counts.get('GetSecretValue');
    expect(counts).toMatchObject({ attempted: 5, throttled: 3, statuses: { '200': 2 } });
    expect(proxy.counts.get('CreateSecret')).toMatchObject({ attempted: 1, throttled: 0 });
    // Half a second refills one call.
    clock += 500;
    await expect(client.send(new GetSecretValueCommand({ SecretId: name }))).resolves.toMatchObject({
      SecretString: 'value',
    });
    await expect(client.send(new GetSecretValueCommand({ SecretId: name }))).rejects.toMatchObject({
      name: 'ThrottlingException',
    });
  } finally {
    client.destroy();
  }
});
