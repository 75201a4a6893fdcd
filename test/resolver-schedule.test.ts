/**
 * The resolver's time behaviour end to end (issue 12): real providers, a real OpenBao server, real TLS
 * handshakes. Store calls are counted per scenario with the `storeCall` event. The schedule's rules alone
 * are tested without timers in resolver-plan.test.ts.
 */
import { randomUUID } from 'node:crypto';
import tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { vault } from '../providers/vault/index.js';
import {
  connect,
  createResolver,
  createServer,
  FetchError,
  ListenerError,
  type Provider,
  type Resolver,
  type ResolverOptions,
  type TlsSecretsError,
  type TlsSecretsSpec,
} from '../src/index.js';
import { createRef } from '../src/provider-kit.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';
import { closeServer, eventually, listen } from './helpers/tls.js';

let ca: TestCA;
let leaf: Issued;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

beforeAll(async () => {
  ca = await createTestCA();
  leaf = await ca.issue();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A resolver that is closed after the test, counting its store calls and collecting its errors. */
function observed(spec: TlsSecretsSpec, options: ResolverOptions = {}) {
  const resolver = createResolver(spec, options);
  cleanups.push(() => resolver.close());
  const calls: string[] = [];
  const errors: TlsSecretsError[] = [];
  resolver.on('storeCall', (call) => calls.push(call.kind));
  resolver.on('error', (error) => errors.push(error));
  return { resolver, calls, errors };
}

/** A memory store without push (only the schedule notices changes) that can be taken down. */
function switchable(values: Record<string, string>) {
  const store = memory(values);
  const state = { down: false };
  const refuse = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8200'));
  const provider: Provider = {
    name: 'switchable',
    fetch: (ref, signal) => (state.down ? refuse() : store.fetch(createRef(store, ref.id), signal)),
    currentVersion: (ref, signal) =>
      state.down ? refuse() : store.currentVersion(createRef(store, ref.id), signal),
  };
  return { store, state, ref: (id: string) => createRef(provider, id) };
}

async function serve(resolver: Resolver) {
  const server = createServer(resolver, {}, (socket) => socket.end('ok'));
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return port;
}

/** A plain TLS client trusting `ca`: the serial of the server certificate, or the handshake's error. */
function handshake(port: number, caPem: string): Promise<string | Error> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: caPem, servername: 'localhost' });
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().serialNumber);
      socket.destroy();
    });
    socket.once('error', resolve);
  });
}

describe('1. a store that renews late', () => {
  it('past the refresh point, checks tighten until the renewal is seen: no failed handshake', async () => {
    // 5 s of life from now; the refresh point is at 2/3 of it, the store renews only 1.2 s before the end.
    const first = await ca.issue({
      notBefore: new Date(Date.now() - 1_000),
      notAfter: new Date(Date.now() + 5_000),
    });
    const { store, ref } = switchable({ key: first.keyPem, cert: first.certPem });
    const { resolver, calls } = observed(
      { key: ref('key'), cert: ref('cert') },
      { refreshIntervalMs: 3_600_000, retryInitialDelayMs: 200, jitter: 0 },
    );
    const port = await serve(resolver);
    const renewAt = first.notAfter.getTime() - 1_200;
    const second = await ca.issue();
    const failures: Error[] = [];
    const seen = new Set<string>();
    let renewed = false;
    while (Date.now() < first.notAfter.getTime() + 500) {
      if (!renewed && Date.now() >= renewAt) {
        store.set('key', second.keyPem);
        store.set('cert', second.certPem);
        renewed = true;
      }
      const answer = await handshake(port, ca.certPem);
      if (answer instanceof Error) failures.push(answer);
      else seen.add(answer);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(failures).toEqual([]);
    expect(seen).toEqual(new Set([first.serial, second.serial]));
    expect(resolver.generation).toBe(2);
    // The late checks are few: a halving step of at least 200 ms over ~1.7 s, two references each.
    expect(calls.length).toBeLessThanOrEqual(2 * 12);
  });

  it('reaching notAfter fetches, even when the version probe says nothing changed', async () => {
    const first = await ca.issue({
      notBefore: new Date(Date.now() - 1_000),
      notAfter: new Date(Date.now() + 2_000),
    });
    let held = first;
    const fetchedAt: number[] = [];
    // A store whose version does not follow its value (a probe that lies): only a fetch can see a change.
    const stubborn: Provider = {
      name: 'stubborn',
      async fetch() {
        fetchedAt.push(Date.now());
        return { value: { key: held.keyPem, cert: held.certPem }, version: 'v1' };
      },
      async currentVersion() {
        return 'v1';
      },
    };
    const bundle = (jsonKey: string) => createRef(stubborn, 'bundle', { jsonKey });
    const { resolver } = observed(
      { key: bundle('key'), cert: bundle('cert') },
      { refreshIntervalMs: 3_600_000, retryInitialDelayMs: 5_000 },
    );
    await resolver.resolve();
    held = await ca.issue();
    await eventually(() => expect(resolver.generation).toBe(2), 4_000);
    expect(fetchedAt).toHaveLength(2);
    expect(fetchedAt[1]).toBeGreaterThanOrEqual(first.notAfter.getTime() - 5);
    expect((await resolver.resolve()).cert).toEqual([held.certPem]);
  });
});

describe('2. refresh-ahead counted from when the certificate was obtained', () => {
  const vaultAddr = inject('vaultAddr');
  const vaultToken = inject('vaultToken');
  it.skipIf(!vaultAddr)(
    'a 20 s PKI certificate from real OpenBao (notBefore backdated 30 s) is re-issued 2/3 into its 20 s',
    async () => {
      const api = async (method: string, path: string, body?: unknown) => {
        const response = await fetch(`${vaultAddr}/v1/${path}`, {
          method,
          headers: { 'X-Vault-Token': vaultToken, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
      };
      const mount = `schedule-${randomUUID().slice(0, 8)}-pki`;
      await api('POST', `sys/mounts/${mount}`, { type: 'pki', config: { max_lease_ttl: '87600h' } });
      cleanups.push(() => api('DELETE', `sys/mounts/${mount}`).catch(() => undefined));
      await api('POST', `${mount}/root/generate/internal`, { common_name: 'schedule root', ttl: '8760h' });
      await api('POST', `${mount}/roles/web`, {
        allowed_domains: 'localhost',
        allow_bare_domains: true,
        key_type: 'ec',
        key_bits: 256,
      });
      const v = vault({ endpoint: vaultAddr, auth: { token: vaultToken } });
      const { resolver, calls } = observed(
        { ...v.pki(mount, 'web', { commonName: 'localhost', ttl: '20s' }) },
        { jitter: 0 },
      );
      const issuedAt: number[] = [];
      resolver.on('rotate', () => issuedAt.push(Date.now()));
      await resolver.resolve();
      const [certificate] = resolver.status().fields.filter((field) => field.field === 'cert');
      expect(certificate?.notAfter).toBeInstanceOf(Date);
      await eventually(() => expect(issuedAt).toHaveLength(2), 20_000);
      // One issue per refresh-ahead period (2/3 of 20 s; X.509 keeps whole seconds), not one every ~3 s.
      const gap = (issuedAt[1] ?? 0) - (issuedAt[0] ?? 0);
      expect(gap).toBeGreaterThanOrEqual(12_000);
      expect(gap).toBeLessThanOrEqual(14_500);
      expect(calls.filter((kind) => kind === 'fetch')).toHaveLength(2);
    },
  );
});

describe('3. every path to the store shares one backoff', () => {
  it('200 connect() calls to a peer failing verification, store down: a handful of store calls', async () => {
    const other = await createTestCA({ commonName: 'other CA' });
    const peerLeaf = await other.issue();
    const peer = createResolver({ key: peerLeaf.keyPem, cert: peerLeaf.certPem });
    cleanups.push(() => peer.close());
    const port = await serve(peer);
    const { state, ref } = switchable({ ca: ca.certPem });
    const { resolver, calls } = observed({ ca: ref('ca') }, { retryInitialDelayMs: 1_000 });
    await resolver.resolve();
    calls.length = 0;
    state.down = true;
    const outcomes = [];
    for (let i = 0; i < 200; i++) {
      outcomes.push(await connect(resolver, { host: '127.0.0.1', port }).catch((e: Error) => e));
    }
    expect(outcomes.every((outcome) => outcome instanceof Error)).toBe(true);
    expect((outcomes[0] as { code?: string }).code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    // One refresh for the generation, then the backoff: at most one more per elapsed step.
    expect(calls.length).toBeLessThanOrEqual(3);
    expect(calls.length).toBeGreaterThanOrEqual(1);
  });

  it('a healthy store that issues on every fetch: 50 failing peers cause one issue, not 50', async () => {
    const other = await createTestCA({ commonName: 'other CA' });
    const peerLeaf = await other.issue();
    const peer = createResolver({ key: peerLeaf.keyPem, cert: peerLeaf.certPem });
    cleanups.push(() => peer.close());
    const port = await serve(peer);
    let issued = 0;
    const issuing: Provider = {
      name: 'issuing',
      async fetch() {
        issued += 1;
        const fresh = await ca.issue();
        return { value: { key: fresh.keyPem, cert: fresh.certPem, ca: ca.certPem }, version: String(issued) };
      },
    };
    const bundle = (jsonKey: string) => createRef(issuing, 'bundle', { jsonKey });
    const { resolver } = observed({ key: bundle('key'), cert: bundle('cert'), ca: bundle('ca') });
    await resolver.resolve();
    for (let i = 0; i < 50; i++) await connect(resolver, { host: '127.0.0.1', port }).catch(() => undefined);
    expect(issued).toBe(2);
  });

  it('a cold resolver with its store down: 500 sequential connect() calls, a few store calls', async () => {
    const { state, ref } = switchable({ ca: ca.certPem });
    state.down = true;
    // No start budget: each cold connect() rejects with the backoff's last error (the budget is tested apart).
    const { resolver, calls, errors } = observed(
      { ca: ref('ca') },
      { retryInitialDelayMs: 1_000, startBudgetMs: 0 },
    );
    const thrown: unknown[] = [];
    for (let i = 0; i < 500; i++) {
      thrown.push(await connect(resolver, { host: '127.0.0.1', port: 9 }).catch((e: unknown) => e));
    }
    expect(calls.length).toBeLessThanOrEqual(3);
    // Callers within a step get the last error itself, without a store call.
    expect(new Set(thrown).size).toBe(calls.length);
    expect(thrown[1]).toBeInstanceOf(FetchError);
    expect(errors.length).toBe(calls.length);
    expect(resolver.state).toBe('cold');
  });

  it('refresh() during the backoff answers with the last errors without asking the store', async () => {
    const { state, ref } = switchable({ ca: ca.certPem });
    const { resolver, calls } = observed({ ca: ref('ca') }, { retryInitialDelayMs: 60_000 });
    await resolver.resolve();
    state.down = true;
    const first = await resolver.refresh();
    expect(first.errors).toHaveLength(1);
    const count = calls.length;
    const results = await Promise.all(Array.from({ length: 20 }, () => resolver.refresh()));
    expect(calls.length).toBe(count);
    for (const result of results) expect(result.errors).toEqual(first.errors);
    expect(resolver.state).toBe('stale');
  });
});

describe('4. a store that keeps serving refused material', () => {
  it('stays stale and reports the refusal again at the backoff pace, until a good generation swaps in', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const { resolver, errors, calls } = observed(
      { key: store.ref('key'), cert: store.ref('cert') },
      { debounceMs: 5, retryInitialDelayMs: 50, retryMaxDelayMs: 200 },
    );
    const staleSeen: boolean[] = [];
    resolver.on('error', () => staleSeen.push(resolver.status().stale));
    await resolver.resolve();
    const next = await ca.issue();
    store.set('key', next.keyPem); // the certificate stays: the bundle is refused
    await eventually(() => expect(errors.length).toBeGreaterThanOrEqual(4), 3_000);
    expect(errors.every((error) => error.code === 'INVALID_MATERIAL')).toBe(true);
    expect(staleSeen.every(Boolean)).toBe(true);
    expect(resolver.state).toBe('stale');
    const refused = resolver.status().refused;
    expect(refused).toMatchObject({ field: 'cert', code: 'INVALID_MATERIAL' });
    // Re-checks are version probes, not fetches, and follow the backoff (capped at 200 ms).
    expect(calls.length).toBeLessThan(2 * (errors.length + 3));

    store.set('cert', next.certPem);
    await eventually(() => expect(resolver.generation).toBe(2), 2_000);
    expect(resolver.status()).toMatchObject({ stale: false, state: 'serving', refused: undefined });
    const count = errors.length;
    await resolver.refresh();
    expect(errors.length).toBe(count);
  });
});

describe('5. status() describes the served generation', () => {
  it("a transient probe error clears on the field's next clean probe", async () => {
    const store = memory({ ca: ca.certPem });
    let resets = 1;
    const flaky: Provider = {
      name: 'flaky',
      fetch: (ref, signal) => store.fetch(createRef(store, ref.id), signal),
      async currentVersion(ref, signal) {
        if (resets-- > 0) throw new Error('read ECONNRESET');
        return store.currentVersion(createRef(store, ref.id), signal);
      },
    };
    const { resolver } = observed({ ca: createRef(flaky, 'ca') }, { retryInitialDelayMs: 1 });
    await resolver.resolve();
    await resolver.refresh();
    expect(resolver.status().fields[0]?.lastError?.message).toMatch(/fetch failed/);
    await eventually(async () => expect((await resolver.refresh()).errors).toEqual([]));
    expect(resolver.status().fields[0]?.lastError).toBeUndefined();
    expect(resolver.status().stale).toBe(false);
  });

  it('a refused field shows the served version and fetch time, the refusal apart; a revert clears it', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const { resolver } = observed(
      { key: store.ref('key'), cert: store.ref('cert') },
      { debounceMs: 5, retryInitialDelayMs: 20, retryMaxDelayMs: 40 },
    );
    await resolver.resolve();
    const served = resolver.status().fields.find((field) => field.field === 'key');
    const other = await ca.issue();
    store.set('key', other.keyPem);
    await eventually(() => expect(resolver.status().refused).toBeDefined());
    const status = resolver.status();
    const key = status.fields.find((field) => field.field === 'key');
    expect(key?.version).toBe(served?.version);
    expect(key?.fetchedAt).toEqual(served?.fetchedAt);
    expect(status.refused?.field).toBe('cert');
    expect(status.fields.find((field) => field.field === 'cert')?.lastError?.code).toBe('INVALID_MATERIAL');

    store.set('key', leaf.keyPem); // back to what is served
    await eventually(() => expect(resolver.status().refused).toBeUndefined());
    expect(resolver.generation).toBe(1);
    expect(resolver.status().fields.every((field) => field.lastError === undefined)).toBe(true);
    expect(resolver.status().stale).toBe(false);
  });
});

describe('6. an application listener cannot break rotation', () => {
  it('a throwing rotate listener: the server presents the new certificate, the error names the listener', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const { resolver, errors } = observed(
      { key: store.ref('key'), cert: store.ref('cert') },
      { debounceMs: 5 },
    );
    // The application's listeners come first: the server must not depend on them.
    let heard = 0;
    resolver.on('rotate', function auditRotation() {
      throw new Error('audit log unavailable');
    });
    resolver.on('rotate', () => {
      heard += 1;
    });
    const port = await serve(resolver);
    expect(await handshake(port, ca.certPem)).toBe(leaf.serial);
    const brief = await ca.issue({
      notBefore: new Date(Date.now() - 1_000),
      notAfter: new Date(Date.now() + 1_500),
    });
    store.set('key', brief.keyPem);
    store.set('cert', brief.certPem);
    await eventually(() => expect(resolver.generation).toBe(2));
    expect(await handshake(port, ca.certPem)).toBe(brief.serial);
    expect(heard).toBe(2); // generations 1 and 2
    const failure = errors.find((error) => error instanceof ListenerError) as ListenerError | undefined;
    expect(failure).toMatchObject({ event: 'rotate', listener: 'auditRotation', code: 'LISTENER_FAILED' });
    // The new certificate's expiry is watched: `expired` comes at its notAfter.
    const expired = new Promise((resolve) => resolver.once('expired', resolve));
    await expect(expired).resolves.toMatchObject({ generation: 2 });
  });
});

describe('timers', () => {
  it('close() during a hung fetch leaves no timer behind', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = `
      import { createResolver } from './src/index.ts';
      import { createRef } from './src/provider-kit.ts';
      const hung = { name: 'hung', fetch: () => new Promise(() => undefined) };
      const resolver = createResolver({ ca: createRef(hung, 'ca') }, { fetchTimeoutMs: 600_000 });
      const pending = resolver.resolve().catch((error) => error.code);
      await new Promise((r) => setTimeout(r, 50));
      await resolver.close();
      const code = await pending;
      const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
      console.log(JSON.stringify({ code, left }));
    `;
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 20_000,
    });
    const result = JSON.parse(output.trim().split('\n').pop() ?? '{}') as { code: string; left: string[] };
    expect(result.code).toBe('CLOSED');
    expect(result.left.filter((resource) => resource === 'Timeout')).toEqual([]);
  });
});
