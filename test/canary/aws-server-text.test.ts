/**
 * Leak class 6: text an AWS server (or a proxy in front of it) controls. The SDK takes an error's name from the
 * answer's `__type` or `x-amzn-errortype`, copies body fields such as `code` onto the error, and keeps the
 * `x-amzn-requestid` header as the request id. A server that echoes the request's `x-amz-security-token` or
 * `Authorization` header into any of them must not reach a view: names shown come from the closed set the
 * providers map, request ids only when UUID-shaped, a body's `code` never, and the provider's own credentials
 * are removed from whatever is kept. Secrets Manager and SSM, on real moto behind the fault proxy, through
 * the provider, a resolver (events, status(), logger lines) and the CLI (check and watch, text and --json).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { ssmParameterStore } from '../../providers/aws-ssm.js';
import { FetchError, Resolver } from '../../src/index.js';
import { type FaultProxy, type ProxyFault, startFaultProxy } from '../helpers/fault-proxy.js';
import { Canaries, canaryValue, Views } from './canaries.js';
import { runCli } from './cli-run.js';

const endpoint = inject('motoEndpoint');
const NO_MOTO = !endpoint;
if (NO_MOTO) console.warn(`[canary aws text] SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

const AWS_JSON = { 'Content-Type': 'application/x-amz-json-1.1' };

/** A header of the request the proxy received, as the echo fault hands it over (`name: value` lines). */
function header(request: string, name: string): string {
  const line = request.split('\n').find((l) => l.toLowerCase().startsWith(`${name}: `));
  return line ? line.slice(name.length + 2) : '';
}
const sessionTokenOf = (request: string) => header(request, 'x-amz-security-token');
/** `AWS4-HMAC-SHA256 Credential=<access key id>/<date>/…`: the access key id travels in every request. */
const accessKeyIdOf = (request: string) =>
  /Credential=([^/]+)\//.exec(header(request, 'authorization'))?.[1] ?? '';

const echo = (
  status: number,
  body: (request: string) => object | string,
  headers: (request: string) => Record<string, string> = () => ({}),
): ProxyFault => ({
  kind: 'echo',
  status,
  body: (request) => {
    const built = body(request);
    return typeof built === 'string' ? built : JSON.stringify(built);
  },
  headers: (request) => ({ ...AWS_JSON, ...headers(request) }),
});

/** Each way a server put the request's credentials where the SDK reads names, codes and request ids. */
const HOSTILE: readonly [string, ProxyFault][] = [
  [
    '__type echoing the session token',
    echo(400, (r) => ({ __type: `com.amazon.coral.service#Denied_${sessionTokenOf(r)}`, message: 'no' })),
  ],
  [
    'x-amzn-errortype echoing the session token',
    echo(
      400,
      () => '{}',
      (r) => ({ 'x-amzn-errortype': `Denied${sessionTokenOf(r)}:http://internal/` }),
    ),
  ],
  ['__type echoing the access key id', echo(400, (r) => ({ __type: `Denied_${accessKeyIdOf(r)}` }))],
  [
    'a known name with code, Code and message echoing the session token',
    echo(400, (r) => ({
      __type: 'ValidationException',
      code: sessionTokenOf(r),
      Code: sessionTokenOf(r),
      message: sessionTokenOf(r),
    })),
  ],
  [
    'x-amzn-requestid echoing the Authorization header',
    echo(
      500,
      () => ({ __type: 'InternalFailure' }),
      (r) => ({ 'x-amzn-requestid': `req ${header(r, 'authorization')}` }),
    ),
  ],
  [
    'x-amzn-requestid echoing the session token',
    echo(
      500,
      () => ({ __type: 'InternalFailure' }),
      (r) => ({ 'x-amzn-requestid': sessionTokenOf(r) }),
    ),
  ],
];

describe.skipIf(NO_MOTO)('AWS answers: no server-controlled text reaches a view', () => {
  const canaries = new Canaries();
  const credentials = {
    accessKeyId: canaries.plant('aws access key id', `ASIA${randomBytes(8).toString('hex').toUpperCase()}`),
    secretAccessKey: canaries.plant('aws secret key', canaryValue('awssecret')),
    sessionToken: canaries.plant('aws session token', canaryValue('awssession')),
  };
  const run = randomBytes(3).toString('hex');
  let proxy: FaultProxy;
  let dir: string;
  beforeAll(async () => {
    proxy = await startFaultProxy(endpoint);
    dir = await mkdtemp(join(tmpdir(), 'tls-secrets-aws-text-'));
  });
  afterAll(async () => {
    await proxy?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const providers = () =>
    [
      awsSecretsManager({ endpoint: proxy.url, region: 'us-east-1', credentials, maxAttempts: 1 }),
      ssmParameterStore({ endpoint: proxy.url, region: 'us-east-1', credentials, maxAttempts: 1 }),
    ] as const;

  it('hostile names, codes and request ids, through the providers and a resolver', async () => {
    const views = new Views();
    const [sm, ssm] = providers();
    const refs = [sm.secret(`canary-text-${run}`), ssm.ref(`/canary-text-${run}`)];
    const resolver = new Resolver({ cert: sm.secret(`canary-text-${run}`) }, { fetchTimeoutMs: 5_000 });
    await views.observe(resolver, 'resolver');
    try {
      for (const [label, fault] of HOSTILE) {
        await proxy.setFault(fault);
        for (const ref of refs) {
          const error = await views.attempt(`${ref.provider.name} ${label}`, () =>
            ref.provider.fetch(ref, AbortSignal.timeout(10_000)),
          );
          expect.soft(error, label).toBeInstanceOf(FetchError);
          const message = (error as Error).message;
          if (label.startsWith('a known name')) expect.soft(message, label).toContain('ValidationException');
          else if (label.includes('requestid')) expect.soft(message, label).toContain('InternalFailure');
          else expect.soft(message, label).toContain('request refused (an unrecognised error, HTTP 400)');
          // The name drove nothing: an unknown client fault is permanent, a 5xx transient.
          expect.soft((error as FetchError).transient, label).toBe(label.includes('requestid'));
          expect.soft(((error as Error).cause as { requestId?: unknown }).requestId, label).toBeUndefined();
        }
        await views.attempt(`resolver ${label}`, () => resolver.refresh());
      }
      await views.snapshot(resolver, 'resolver');
      expect.soft(resolver.status().fields[0]?.lastError?.message).toContain('an unrecognised error');
    } finally {
      await proxy.setFault({ kind: 'none' });
      await resolver.close();
      await sm.close();
      await ssm.close();
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary aws text] ${views.views.length} views x ${canaries.needles.length} needles (${canaries.kinds.size} canaries, ${canaries.forms} forms): ${hits.length} hits`,
    );
    if (process.env.CANARY_VERBOSE) console.info(hits.join('\n'));
    expect(hits).toEqual([]);
  });

  it('what a well-behaved answer says is kept: known names, the transient split, UUID request ids', async () => {
    const [sm, ssm] = providers();
    const requestId = randomUUID();
    try {
      await proxy.setFault({
        kind: 'respond',
        status: 400,
        body: JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }),
        headers: { ...AWS_JSON, 'x-amzn-requestid': requestId },
      });
      for (const ref of [sm.secret(`canary-text-${run}`), ssm.ref(`/canary-text-${run}`)]) {
        const error = await ref.provider.fetch(ref, AbortSignal.timeout(10_000)).catch((err: unknown) => err);
        expect(error).toBeInstanceOf(FetchError);
        expect((error as FetchError).transient).toBe(true);
        expect((error as Error).message).toContain('ThrottlingException');
        expect((error as Error).cause).toMatchObject({
          name: 'ThrottlingException',
          statusCode: 400,
          requestId,
        });
      }
      // moto itself: a real ResourceNotFoundException keeps its name.
      await proxy.setFault({ kind: 'none' });
      const missing = sm.secret(`canary-text-missing-${run}`);
      const notFound = await sm.fetch(missing, AbortSignal.timeout(10_000)).catch((err: unknown) => err);
      expect((notFound as Error).cause).toMatchObject({
        name: 'ResourceNotFoundException',
        statusCode: expect.any(Number),
      });
    } finally {
      await proxy.setFault({ kind: 'none' });
      await sm.close();
      await ssm.close();
    }
  });

  it("a credential in a kept shape is still removed: the default chain's UUID-shaped session token", async () => {
    // Shapes alone cannot tell a request id from a credential that looks like one: the provider also
    // removes its own credentials, here learned from the signed request (the SDK's default chain, no option).
    const views = new Views();
    const local = new Canaries();
    const sessionToken = local.plant('aws session token', randomUUID());
    const saved = { ...process.env };
    process.env.AWS_ACCESS_KEY_ID = credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = credentials.secretAccessKey;
    process.env.AWS_SESSION_TOKEN = sessionToken;
    const sm = awsSecretsManager({ endpoint: proxy.url, region: 'us-east-1', maxAttempts: 1 });
    const ssm = ssmParameterStore({ endpoint: proxy.url, region: 'us-east-1', maxAttempts: 1 });
    try {
      await proxy.setFault(
        echo(
          500,
          () => ({ __type: 'InternalFailure' }),
          (r) => ({ 'x-amzn-requestid': sessionTokenOf(r) }),
        ),
      );
      for (const ref of [sm.secret(`canary-text-${run}`), ssm.ref(`/canary-text-${run}`)]) {
        const error = await views.attempt(`${ref.provider.name} UUID token as request id`, () =>
          ref.provider.fetch(ref, AbortSignal.timeout(10_000)),
        );
        expect((error as Error).cause).toMatchObject({ name: 'InternalFailure', statusCode: 500 });
        expect(((error as Error).cause as { requestId?: unknown }).requestId).toBeUndefined();
      }
    } finally {
      process.env = saved;
      await proxy.setFault({ kind: 'none' });
      await sm.close();
      await ssm.close();
    }
    expect(views.scan(local)).toEqual([]);
  });

  it('the CLI, check and watch, text and --json, on Secrets Manager and SSM configs', async () => {
    const views = new Views();
    await proxy.setFault(HOSTILE[0]?.[1] ?? { kind: 'none' });
    const paths: Record<string, string> = {};
    for (const [name, type, id] of [
      ['sm', 'aws-secrets-manager', `canary-text-${run}`],
      ['ssm', 'aws-ssm', `/canary-text-${run}`],
    ] as const) {
      paths[name] = join(dir, `${name}.json`);
      await writeFile(
        paths[name],
        JSON.stringify({
          providers: { a: { type, region: 'us-east-1', endpoint: proxy.url, maxAttempts: 1 } },
          tls: { cert: `a:${id}` },
        }),
      );
    }
    // The SDK's default chain reads the environment: these are the values it signs with and the server echoes.
    const env = {
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_SESSION_TOKEN: credentials.sessionToken,
    };
    const failed = /error [A-Z_]+:|"event":"error"/;
    try {
      const runs = await Promise.all(
        [
          ['check sm', ['check', paths.sm ?? '']],
          ['check sm --json', ['check', paths.sm ?? '', '--json']],
          ['watch sm --json', ['watch', paths.sm ?? '', '--json']],
          ['check ssm', ['check', paths.ssm ?? '']],
          ['watch ssm', ['watch', paths.ssm ?? '']],
        ].map(async ([label, args]) => {
          const result = await runCli(args as string[], {
            env,
            ...(String(label).startsWith('watch') ? { until: failed } : {}),
          });
          return [String(label), result] as const;
        }),
      );
      for (const [label, result] of runs) {
        views.text(`cli ${label} stdout`, result.stdout);
        views.text(`cli ${label} stderr`, result.stderr);
        expect.soft(result.stdout + result.stderr, label).toContain('an unrecognised error');
      }
    } finally {
      await proxy.setFault({ kind: 'none' });
    }
    const hits = views.scan(canaries);
    console.info(`[canary aws text] cli: ${views.views.length} views: ${hits.length} hits`);
    expect(hits).toEqual([]);
  });
});
