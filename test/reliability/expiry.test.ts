/**
 * An outage that outlasts the certificate: the client's short-lived certificate lives in AWS Secrets Manager
 * (moto behind the fault proxy, connection refused). While it is valid every handshake succeeds; past its
 * notAfter the resolver says so (`expiring`, `stale`, `expired` events) and `connect()` fails with a typed
 * CertificateExpiredError instead of offering an expired certificate. `maxStaleMs` stretches that on purpose.
 */
import { randomUUID } from 'node:crypto';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import {
  CertificateExpiredError,
  connect,
  createResolver,
  createServer,
  type Resolver,
  type ResolverOptions,
} from '../../src/index.js';
import { createTestCA, type Issued, type TestCA } from '../fixtures/ca.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { closeServer, eventually, listen, sleep } from '../helpers/tls.js';
import { type CountedProvider, counted, FAULT_OPTIONS, startTraffic, waitFor } from './harness.js';

const endpoint = inject('motoEndpoint');
const NO_MOTO = !endpoint;
if (NO_MOTO) console.warn(`[expiry] SKIPPED: ${inject('motoUnavailable') || 'no moto endpoint'}`);

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'AKIDEXPIRY', secretAccessKey: 'expiry-secret-access-key' };
/** How early the resolver lets a timer count as due (TIMER_SLACK in src/resolver/). */
const TIMER_SLACK_MS = 5;
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

/** A client certificate that expires `lifetimeMs` from now (X.509 keeps whole seconds). */
async function shortLived(lifetimeMs: number): Promise<Issued> {
  return ca.issue({
    commonName: 'client',
    notBefore: new Date(Date.now() - 1_000),
    notAfter: new Date(Date.now() + lifetimeMs),
  });
}

const bundleOf = (leaf: Issued) => JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });

interface ExpiryRig {
  name: string;
  proxy: FaultProxy;
  clientTls: Resolver;
  calls: CountedProvider;
  port: number;
  events: { name: string; at: number }[];
}

async function rig(leaf: Issued, options: ResolverOptions): Promise<ExpiryRig> {
  const name = `expiry-${randomUUID().slice(0, 8)}`;
  await admin.send(new CreateSecretCommand({ Name: name, SecretString: bundleOf(leaf) }));
  const proxy = await startFaultProxy(endpoint);
  const aws = awsSecretsManager({
    endpoint: proxy.url,
    region: REGION,
    credentials: CREDENTIALS,
    maxAttempts: 1,
  });
  const calls = counted(aws);
  const clientTls = createResolver(
    {
      key: calls.wrap(aws.secret(name, { jsonKey: 'key' })),
      cert: calls.wrap(aws.secret(name, { jsonKey: 'cert' })),
      ca: calls.wrap(aws.secret(name, { jsonKey: 'ca' })),
    },
    options,
  );
  const events: { name: string; at: number }[] = [];
  for (const event of ['rotate', 'stale', 'expiring', 'expired', 'error'] as const) {
    clientTls.on(event, () => events.push({ name: event, at: Date.now() }));
  }
  // The server's own material is not in the outage: it demands and verifies a client certificate.
  const serverLeaf = await ca.issue({ commonName: 'localhost' });
  const serverTls = createResolver({ key: serverLeaf.keyPem, cert: serverLeaf.certPem, ca: ca.certPem });
  const server = createServer(serverTls, { requestCert: true, rejectUnauthorized: true }, (socket) =>
    socket.end('ok'),
  );
  const port = await listen(server);
  cleanups.push(
    () => proxy.close(),
    () => aws.close(),
    () => serverTls.close(),
    () => closeServer(server),
    () => clientTls.close(),
  );
  await clientTls.resolve();
  return { name, proxy, clientTls, calls, port, events };
}

describe.skipIf(NO_MOTO)('an outage that outlasts notAfter', () => {
  it('serves until notAfter, then expired event and CertificateExpiredError from connect(); recovers', async () => {
    const leaf = await shortLived(2_500);
    const r = await rig(leaf, OPTIONS);
    const notAfter = leaf.notAfter.getTime();
    const traffic = startTraffic(r.clientTls, r.port);
    await sleep(200);
    const faultAt = Date.now();
    await r.proxy.setFault({ kind: 'refused' });

    const expiredAt = await waitFor(() => r.events.find((e) => e.name === 'expired')?.at, 5_000);
    await sleep(600);
    await traffic.stop();
    const clearAt = Date.now();

    expect(expiredAt).toBeDefined();
    // Timers may fire a few milliseconds early; the resolver counts those as due.
    expect(expiredAt).toBeGreaterThanOrEqual(notAfter - TIMER_SLACK_MS);
    expect(r.events.some((e) => e.name === 'stale' && e.at < notAfter)).toBe(true);
    // Before notAfter: every handshake through the outage succeeded.
    expect(traffic.failedBetween(0, notAfter)).toEqual([]);
    expect(traffic.okBetween(faultAt, notAfter)).toBeGreaterThan(10);
    // After it: each attempt fails before any byte is sent, with the typed error naming field and reference.
    const late = traffic.failedBetween(notAfter + 50, clearAt);
    expect(late.length).toBeGreaterThan(0);
    for (const failure of late) {
      expect(failure.error).toBeInstanceOf(CertificateExpiredError);
      const error = failure.error as CertificateExpiredError;
      expect(error.code).toBe('CERTIFICATE_EXPIRED');
      expect(error.field).toBe('cert');
      expect(error.ref).toBe(`aws-secrets-manager:${r.name}#cert`);
      expect(error.notAfter.getTime()).toBe(notAfter);
    }
    expect(traffic.okBetween(notAfter + 50, clearAt)).toBe(0);
    const lateCalls = r.calls.between(notAfter, clearAt);
    const lateAttempts = traffic.handshakes.filter((h) => h.at >= notAfter && h.at < clearAt).length;
    console.info(
      `[fault] expiry: ${traffic.okBetween(0, notAfter)} handshakes ok until notAfter, 0 failed; ` +
        `after notAfter ${late.length} CertificateExpiredError, ${lateCalls} store calls for ${lateAttempts} ` +
        `connect() attempts in ${clearAt - notAfter} ms`,
    );
    // Past maxStaleMs a resolve() tries the store only when the backoff allows: callers in a loop (here
    // hundreds of connect() attempts) do not turn into store calls.
    expect(lateAttempts).toBeGreaterThan(20);
    expect(lateCalls).toBeLessThanOrEqual(
      Math.ceil((clearAt - notAfter) / (OPTIONS.retryInitialDelayMs / 2)) + 2,
    );
    expect(lateCalls).toBeLessThan(lateAttempts / 4);

    // A renewed certificate lands in the store during the outage; the store comes back.
    const renewed = await ca.issue({ commonName: 'client' });
    await admin.send(new PutSecretValueCommand({ SecretId: r.name, SecretString: bundleOf(renewed) }));
    await r.proxy.setFault({ kind: 'none' });
    // Recovery within one backoff step (capped at retryMaxDelayMs).
    const recovering = Date.now();
    const socket = await eventually(
      () => connect(r.clientTls, { host: '127.0.0.1', port: r.port, servername: 'localhost' }),
      OPTIONS.retryMaxDelayMs + 1_000,
    );
    expect(Date.now() - recovering).toBeLessThan(OPTIONS.retryMaxDelayMs + 1_000);
    socket.destroy();
    expect(r.events.filter((e) => e.name === 'rotate' && e.at >= clearAt)).toHaveLength(1);
    expect(r.clientTls.status().stale).toBe(false);
    expect(r.clientTls.status().notAfter?.getTime()).toBe(renewed.notAfter.getTime());
  });

  it('with maxStaleMs the expired bundle is still resolved, but never silently: expired event and stale', async () => {
    const leaf = await shortLived(2_000);
    const r = await rig(leaf, { ...OPTIONS, maxStaleMs: 60_000 });
    await r.proxy.setFault({ kind: 'refused' });
    const expiredAt = await waitFor(() => r.events.find((e) => e.name === 'expired')?.at, 4_000);
    expect(expiredAt).toBeGreaterThanOrEqual(leaf.notAfter.getTime() - TIMER_SLACK_MS);
    await sleep(Math.max(0, leaf.notAfter.getTime() + 20 - Date.now()));
    const options = await r.clientTls.resolve();
    expect(options.secureContext).toBeDefined();
    const status = r.clientTls.status();
    expect(status.stale).toBe(true);
    expect(status.notAfter?.getTime()).toBe(leaf.notAfter.getTime());
    expect(status.notAfter?.getTime()).toBeLessThan(Date.now());
  });
});
