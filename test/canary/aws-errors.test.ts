/**
 * Leak class 2: foreign errors kept as `cause`. With temporary credentials (access key, secret key and session
 * token, what IAM roles hand out), the AWS SDK's errors hide the signed request, `x-amz-security-token`
 * header included, under `$response`; a 5xx body that echoes the request puts it in the message. On real
 * moto, through the fault proxy, no view of the error may show the session token or the secret key.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { FetchError, SecretNotFoundError } from '../../src/index.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { Canaries, canaryValue, Views } from './canaries.js';

const endpoint = inject('motoEndpoint');
const NO_MOTO = !endpoint;
if (NO_MOTO) console.warn(`[canary aws] SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

describe.skipIf(NO_MOTO)('AWS errors keep no part of the request', () => {
  const canaries = new Canaries();
  const credentials = {
    accessKeyId: 'ASIACANARYACCESSKEY',
    secretAccessKey: canaries.plant('aws secret key', canaryValue('awssecret')),
    sessionToken: canaries.plant('aws session token', canaryValue('awssession')),
  };
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy(endpoint);
  });
  afterAll(async () => {
    await proxy?.close();
  });

  const provider = () =>
    awsSecretsManager({ endpoint: proxy.url, region: 'us-east-1', credentials, maxAttempts: 1 });

  it('ResourceNotFoundException from moto, and 5xx and 4xx bodies that echo the request', async () => {
    const views = new Views();
    const causes: [unknown, object][] = [];
    const aws = provider();
    const missing = aws.secret(`canary-missing-${randomUUID().slice(0, 8)}`);
    try {
      const notFound = await views.attempt('not found', () =>
        aws.fetch(missing, AbortSignal.timeout(10_000)),
      );
      expect(notFound).toBeInstanceOf(SecretNotFoundError);
      causes.push([
        (notFound as Error).cause,
        { name: 'ResourceNotFoundException', statusCode: expect.any(Number) },
      ]);

      for (const [status, type] of [
        [500, 'InternalFailure'],
        [503, 'ServiceUnavailable'],
        [400, 'AccessDeniedException'],
      ] as const) {
        await proxy.setFault({
          kind: 'echo',
          status,
          headers: { 'Content-Type': 'application/x-amz-json-1.1' },
          body: (request) => JSON.stringify({ __type: type, message: `could not handle: ${request}` }),
        });
        const echoed = await views.attempt(`echo ${status}`, () =>
          aws.fetch(missing, AbortSignal.timeout(10_000)),
        );
        expect(echoed).toBeInstanceOf(FetchError);
        causes.push([(echoed as Error).cause, { name: type, statusCode: status }]);
      }
      await proxy.setFault({ kind: 'none' });
    } finally {
      await aws.close();
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary aws] ${views.views.length} views x ${canaries.needles.length} needles (${canaries.kinds.size} canaries, ${canaries.forms} forms): ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
    // What is kept of the SDK error: its name and HTTP status, for diagnosis.
    for (const [cause, kept] of causes) expect(cause).toMatchObject(kept);
  });
});
