/**
 * The fault matrix against the Vault stand-in, through the real Vault provider (node-vault, AppRole login):
 * its own fault switches (hang, latency, sealed, status codes), the fault proxy in front of it for refused
 * connections, and an unresolvable endpoint for DNS failure. A server from `createServer()` and a client
 * through `connect()` keep handshaking meanwhile; store calls and AppRole logins are counted.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type VaultProvider, vault } from '../../providers/vault/index.js';
import { FetchError, type SecretRef } from '../../src/index.js';
import { createTestCA, type Issued, type TestCA } from '../fixtures/ca.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { startVaultStandin, type VaultFaults, type VaultStandin } from '../vault-standin/index.js';
import {
  type CountedProvider,
  counted,
  DNS_FAILURE,
  describeFigures,
  FAULT_OPTIONS,
  OUTAGE_MS,
  type OutageFigures,
  RECOVERY_SLACK_MS,
  runOutage,
  type Stage,
  startStage,
  startTraffic,
  waitFor,
} from './harness.js';
import { newSecretId, recordingClient, type SeedApi, seedApi, setupAppRole } from './vault-rig.js';

const OPTIONS = FAULT_OPTIONS;
const LOGIN = '/v1/auth/approle/login';

let ca: TestCA;
let standin: VaultStandin;
let roleId = '';
const cleanups: (() => Promise<unknown>)[] = [];

let api: SeedApi;

beforeAll(async () => {
  ca = await createTestCA();
  standin = await startVaultStandin();
  api = seedApi(standin);
  roleId = await setupAppRole(api);
});
afterAll(async () => {
  await standin?.close();
});
afterEach(async () => {
  standin.resetFaults();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const putBundle = (name: string, leaf: Issued) =>
  api('POST', `secret/data/${name}`, { data: { key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem } });

interface VaultRig {
  name: string;
  proxy: FaultProxy;
  stage: Stage;
  server: CountedProvider;
  client: CountedProvider;
  leaf: Issued;
  tokens: string[];
  dns: { broken: boolean };
}

async function rig(): Promise<VaultRig> {
  const name = `faults-${randomUUID().slice(0, 8)}`;
  const leaf = await ca.issue({ commonName: 'localhost' });
  await putBundle(name, leaf);
  const secretId = await newSecretId(api);
  const proxy = await startFaultProxy(standin.url);
  const { client, tokens } = recordingClient(proxy.url);
  const auth = { appRole: { roleId, secretId } };
  const healthy = vault({ client, auth, requestTimeoutMs: 2_000 });
  const unresolvable = vault({ endpoint: DNS_FAILURE, auth, requestTimeoutMs: 2_000 });
  cleanups.push(
    () => proxy.close(),
    () => healthy.close(),
    () => unresolvable.close(),
  );
  const refs = (v: VaultProvider) => ({
    key: v.kv(`secret/${name}`, { field: 'key' }),
    cert: v.kv(`secret/${name}`, { field: 'cert' }),
    ca: v.kv(`secret/${name}`, { field: 'ca' }),
  });
  refs(unresolvable); // the same ids, known to the provider that cannot resolve its host
  const dns = { broken: false };
  const route = (ref: SecretRef) => {
    const provider = dns.broken ? unresolvable : healthy;
    return { provider, ref: { ...ref, provider } };
  };
  const server = counted(healthy, route);
  const clientCounter = counted(healthy, route);
  const own = refs(healthy);
  const stage = await startStage(
    { key: server.wrap(own.key), cert: server.wrap(own.cert) },
    { ca: clientCounter.wrap(own.ca) },
    OPTIONS,
  );
  cleanups.push(() => stage.close());
  return { name, proxy, stage, server, client: clientCounter, leaf, tokens, dns };
}

const logins = (from = 0, to = Number.POSITIVE_INFINITY) =>
  standin.requests.filter((r) => r.path === LOGIN && r.at >= from && r.at < to).length;

function expectRidesThrough(
  label: string,
  figures: OutageFigures,
  before: Issued,
  after: Issued,
  callsPerCycle = 1,
) {
  console.info(describeFigures(`vault ${label}`, figures, OUTAGE_MS));
  expect(figures.failures.map((f) => String(f.error))).toEqual([]);
  expect(figures.handshakesFailed).toBe(0);
  expect(figures.okDuringOutage).toBeGreaterThan(10);
  expect(figures.staleDuringOutage).toBe(true);
  expect(figures.serverCalls).toBeLessThanOrEqual(figures.allowedCalls * callsPerCycle);
  expect(figures.clientCalls).toBeLessThanOrEqual(figures.allowedCalls * callsPerCycle);
  expect(figures.serverCalls).toBeGreaterThanOrEqual(2);
  expect(figures.recoveryMs).toBeDefined();
  expect(figures.recoveryMs).toBeLessThanOrEqual(OPTIONS.retryMaxDelay + RECOVERY_SLACK_MS);
  expect(figures.serialBefore).toBe(before.serial);
  expect(figures.serialAfter).toBe(after.serial);
  for (const error of figures.errorsDuringOutage) expect(error).toBeInstanceOf(FetchError);
}

/** Faults thrown by the stand-in itself: they hit every request, so the rotation waits until after. */
const SWITCHES: { label: string; faults: Partial<VaultFaults>; reason: RegExp; transient: boolean }[] = [
  {
    label: 'store hangs (no answer)',
    faults: { hang: true },
    reason: /did not answer in time|aborted|timed out/,
    transient: true,
  },
  {
    label: 'slow store (latency 600 ms > fetchTimeout)',
    faults: { latencyMs: 600 },
    reason: /did not answer in time|aborted|timed out/,
    transient: true,
  },
  { label: 'HTTP 500', faults: { status: { code: 500 } }, reason: /server error \(500\)/, transient: true },
  { label: '503 sealed', faults: { sealed: true }, reason: /sealed \(503\)/, transient: true },
  { label: '429 rate limited', faults: { status: { code: 429 } }, reason: /rate limit/, transient: true },
];

describe('fault matrix: Vault (stand-in, AppRole)', () => {
  for (const { label, faults, reason, transient } of SWITCHES) {
    it(`${label}: 0 failed handshakes, bounded retries, recovery within one backoff step`, async () => {
      const r = await rig();
      const loginsBefore = logins();
      let faultAt = 0;
      const figures = await runOutage(
        r.stage,
        { server: r.server, client: r.client },
        {
          outageMs: OUTAGE_MS,
          inject: () => {
            faultAt = Date.now();
            Object.assign(standin.faults, faults);
          },
          clear: () => standin.resetFaults(),
        },
        { ...OPTIONS, recoveryTimeoutMs: 3_000 },
      );
      const httpDuringOutage = standin.requests.filter(
        (q) => q.at >= faultAt && q.at < faultAt + OUTAGE_MS && q.path.startsWith('/v1/secret/'),
      ).length;
      console.info(`[fault] vault ${label}: ${httpDuringOutage} HTTP requests reached the stand-in`);
      expectRidesThrough(label, figures, r.leaf, r.leaf);
      expect(figures.errorsDuringOutage.length).toBeGreaterThan(0);
      for (const error of figures.errorsDuringOutage) {
        expect(error.message).toMatch(reason);
        expect((error as FetchError).transient).toBe(transient);
        expect(error.ref).toBe(`vault:secret/${r.name}#${error.field === 'ca' ? 'ca' : 'key'}`);
      }
      // None of these faults is an authentication problem: the token is kept.
      expect(logins() - loginsBefore).toBeLessThanOrEqual(1);
      // A rotation after the outage is picked up: nothing stayed wedged.
      const next = await ca.issue({ commonName: 'localhost' });
      const rotatedAt = Date.now();
      await putBundle(r.name, next);
      expect(await waitFor(() => r.stage.rotations.find((x) => x.at >= rotatedAt), 2_000)).toBeDefined();
    });
  }

  for (const kind of ['refused', 'dns'] as const) {
    const label = kind === 'refused' ? 'connection refused' : 'DNS failure of the store host';
    it(`${label}: 0 failed handshakes, bounded retries, recovery with a rotation`, async () => {
      const r = await rig();
      let next = r.leaf;
      const figures = await runOutage(
        r.stage,
        { server: r.server, client: r.client },
        {
          outageMs: OUTAGE_MS,
          inject: async () => {
            if (kind === 'dns') r.dns.broken = true;
            else await r.proxy.setFault({ kind: 'refused' });
          },
          clear: async () => {
            if (kind === 'dns') r.dns.broken = false;
            else await r.proxy.setFault({ kind: 'none' });
          },
          rotate: async () => {
            next = await ca.issue({ commonName: 'localhost' });
            await putBundle(r.name, next);
          },
        },
        { ...OPTIONS, recoveryTimeoutMs: 3_000 },
      );
      expectRidesThrough(label, figures, r.leaf, next);
      const expected = kind === 'dns' ? /ENOTFOUND|EAI_AGAIN|login failed/ : /ECONNREFUSED/;
      for (const error of figures.errorsDuringOutage) expect(error.message).toMatch(expected);
    });
  }

  it('403 for an expired (revoked) token: AppRole re-login follows, transparently', async () => {
    const r = await rig();
    const traffic = startTraffic(r.stage.clientTls, r.stage.port);
    try {
      await waitFor(() => (r.tokens.length > 0 ? true : undefined), 2_000);
      expect(r.tokens).toHaveLength(1);
      const before = logins();
      const errorsBefore = r.stage.errors.length;
      // What Vault answers for an expired token is what it answers for a revoked one: 403.
      await api('POST', 'auth/token/revoke', { token: r.tokens[0] });
      const revokedAt = Date.now();
      await waitFor(() => (r.tokens.length > 1 ? true : undefined), 2_000);
      await r.stage.serverTls.refresh();
      await r.stage.clientTls.refresh();
      // One shared session: one new login serves both resolvers.
      expect(logins() - before).toBe(1);
      expect(r.tokens).toHaveLength(2);
      expect(r.stage.errors.slice(errorsBefore)).toEqual([]);
      expect(r.stage.serverTls.status().stale).toBe(false);
      console.info(
        `[fault] vault 403 revoked token: re-login ${logins() - before} (after ${Date.now() - revokedAt} ms), 0 resolver errors`,
      );
    } finally {
      await traffic.stop();
    }
    expect(traffic.handshakes.filter((h) => !h.ok)).toEqual([]);
    expect(traffic.handshakes.length).toBeGreaterThan(5);
  });

  it('403 on every read for the whole outage: one re-login per refresh cycle at most, then recovery', async () => {
    const r = await rig();
    let faultAt = 0;
    let clearAt = 0;
    const figures = await runOutage(
      r.stage,
      { server: r.server, client: r.client },
      {
        outageMs: OUTAGE_MS,
        inject: () => {
          faultAt = Date.now();
          standin.faults.status = { code: 403, pathPrefix: 'secret/' };
        },
        clear: () => {
          clearAt = Date.now();
          standin.resetFaults();
        },
      },
      { ...OPTIONS, recoveryTimeoutMs: 3_000 },
    );
    const reloginCount = logins(faultAt, clearAt);
    const during = standin.requests.filter((q) => q.at >= faultAt && q.at < clearAt);
    const reads = (kind: string) => during.filter((q) => q.path.startsWith(`/v1/secret/${kind}/`)).length;
    console.info(
      `[fault] vault 403 outage: AppRole logins ${reloginCount}, HTTP metadata reads ${reads('metadata')}, data reads ${reads('data')}`,
    );
    // A 403 on the metadata probe makes the provider stop probing that path (it takes it for a policy
    // without metadata access) and read the data instead: up to two store calls per cycle from then on.
    expectRidesThrough('403 outage', figures, r.leaf, r.leaf, 2);
    for (const error of figures.errorsDuringOutage) {
      expect(error.message).toMatch(/denied permission/);
      expect((error as FetchError).transient).toBe(false);
    }
    // Every failed cycle of either resolver tried one fresh login, never more.
    expect(reloginCount).toBeGreaterThanOrEqual(1);
    expect(reloginCount).toBeLessThanOrEqual(figures.serverCalls + figures.clientCalls);
  });
});
