import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { memory } from '../providers/memory.js';
import {
  CertificateExpiredError,
  ConfigurationError,
  createResolver,
  FetchError,
  InvalidMaterialError,
  type Provider,
  Resolver,
  type RotateEvent,
  type StaleEvent,
  type TlsSecretsError,
} from '../src/index.js';
import { createRef } from '../src/provider-kit.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';
import { skewedClock } from './helpers/clock.js';
import { countingProvider, eventually, sleep } from './helpers/tls.js';

let ca: TestCA;
let leaf: Issued;
const open: Resolver[] = [];
const track = (resolver: Resolver) => {
  open.push(resolver);
  return resolver;
};

beforeAll(async () => {
  ca = await createTestCA();
  leaf = await ca.issue();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

/** A store with no push, so only polling, refresh-ahead and refresh() can notice changes. */
function pollOnlyStore(initial: Record<string, string>) {
  const store = memory(initial);
  const polled = countingProvider({ ...store, watch: undefined, name: 'poll' } as Provider);
  return { store, provider: polled, ref: (id: string) => createRef(polled, id) };
}

describe('lazy and single-flight', () => {
  it('fetches nothing before the first resolve()', async () => {
    const { provider, ref } = pollOnlyStore({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(createResolver({ key: ref('key'), cert: ref('cert') }));
    await sleep(20);
    expect(provider.fetches).toEqual([]);
    expect(resolver.generation).toBe(0);
    await resolver.resolve();
    expect(provider.fetches.sort()).toEqual(['cert', 'key']);
  });

  it('100 concurrent callers on a cold resolver cause one fetch per reference', async () => {
    const { provider, ref } = pollOnlyStore({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });
    provider.delay = 30;
    const resolver = track(
      createResolver({ key: ref('key'), cert: ref('cert'), ca: [ref('ca'), ref('ca')] }),
    );
    const results = await Promise.all(Array.from({ length: 100 }, () => resolver.resolve()));
    expect(provider.fetches.sort()).toEqual(['ca', 'cert', 'key']);
    expect(new Set(results).size).toBe(1);
  });

  it('fields read from one JSON secret share one fetch', async () => {
    const store = countingProvider(memory({ bundle: { key: leaf.keyPem, cert: leaf.certPem } }));
    const resolver = track(
      createResolver({
        key: createRef(store, 'bundle', { jsonKey: 'key' }),
        cert: createRef(store, 'bundle', { jsonKey: 'cert' }),
      }),
    );
    await resolver.resolve();
    expect(store.fetches).toEqual(['bundle']);
  });
});

describe('cache', () => {
  it('a warm resolve() does no I/O and returns the same SecureContext until a rotation', async () => {
    const { store, provider, ref } = pollOnlyStore({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(createResolver({ key: ref('key'), cert: ref('cert') }));
    const first = await resolver.resolve();
    const calls = provider.fetches.length + provider.probes.length;
    for (let i = 0; i < 50; i++) expect((await resolver.resolve()).secureContext).toBe(first.secureContext);
    expect(provider.fetches.length + provider.probes.length).toBe(calls);

    const next = await ca.issue();
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    await resolver.refresh();
    expect((await resolver.resolve()).secureContext).not.toBe(first.secureContext);
  });

  it('refresh() probes versions and fetches only what changed', async () => {
    const { store, provider, ref } = pollOnlyStore({ key: leaf.keyPem, cert: leaf.certPem, ca: ca.certPem });
    const resolver = track(createResolver({ key: ref('key'), cert: ref('cert'), ca: ref('ca') }));
    await resolver.resolve();
    provider.fetches.length = 0;
    let result = await resolver.refresh();
    expect(result).toMatchObject({ rotated: false, errors: [] });
    expect(provider.fetches).toEqual([]);
    expect(provider.probes.length).toBeGreaterThanOrEqual(3);

    const other = await createTestCA();
    store.set('ca', `${ca.certPem}\n${other.certPem}`);
    result = await resolver.refresh();
    expect(result.rotated).toBe(true);
    expect(provider.fetches).toEqual(['ca']);
    expect((await resolver.resolve()).ca).toHaveLength(2);
  });
});

describe('refresh', () => {
  it('polls on the configured interval and notices a change', async () => {
    const { store, ref } = pollOnlyStore({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(
      createResolver({ key: ref('key'), cert: ref('cert') }, { refreshIntervalMs: 100 }),
    );
    const rotations: RotateEvent[] = [];
    resolver.on('rotate', (event) => rotations.push(event));
    await resolver.resolve();
    const next = await ca.issue();
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    await eventually(() => expect(rotations).toHaveLength(2), 2_000);
    expect(rotations[1]).toMatchObject({ generation: 2, changed: ['key', 'cert'] });
    expect(rotations[1]?.certificates[0]?.serialNumber).toBe(next.serial);
  });

  it('pushes from a watching provider rotate without polling, debounced into one generation', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(
      createResolver(
        { key: store.ref('key'), cert: store.ref('cert') },
        { refreshIntervalMs: 3_600_000, debounceMs: 30 },
      ),
    );
    const rotations: RotateEvent[] = [];
    resolver.on('rotate', (event) => rotations.push(event));
    await resolver.resolve();
    const next = await ca.issue();
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    await eventually(() => expect(rotations).toHaveLength(2));
    await sleep(100);
    expect(rotations).toHaveLength(2);
    expect(rotations[1]?.changed).toEqual(['key', 'cert']);
  });

  it('a store that changes faster than the debounce window is still followed', async () => {
    const store = memory({ ca: ca.certPem });
    const resolver = track(
      createResolver({ ca: store.ref('ca') }, { refreshIntervalMs: 3_600_000, debounceMs: 50 }),
    );
    await resolver.resolve();
    // Seven values, so that a window of any few pushes ends on a value different from the last one.
    const authorities = await Promise.all(Array.from({ length: 7 }, () => createTestCA()));
    const deadline = Date.now() + 600;
    for (let i = 0; Date.now() < deadline; i++) {
      store.set('ca', (authorities[i % 7] as TestCA).certPem);
      await sleep(20);
    }
    expect(resolver.generation).toBeGreaterThan(5);
  });

  it('warns with expiring on time even while the store is down and retries back off', async () => {
    const brief = await ca.issue({
      notBefore: new Date(Date.now() - 1_000),
      notAfter: new Date(Date.now() + 2_000),
    });
    let down = false;
    const store = memory({ key: brief.keyPem, cert: brief.certPem });
    const provider: Provider = {
      name: 'down',
      fetch: (ref, signal) =>
        down ? Promise.reject(new Error('ECONNREFUSED')) : store.fetch(createRef(store, ref.id), signal),
    };
    const resolver = track(
      createResolver(
        { key: createRef(provider, 'key'), cert: createRef(provider, 'cert') },
        { refreshIntervalMs: 50, retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000, refreshAhead: 0.5 },
      ),
    );
    const expiring: number[] = [];
    resolver.on('expiring', () => expiring.push(Date.now()));
    resolver.on('error', () => undefined);
    await resolver.resolve();
    down = true;
    await sleep(120); // one failed check: the refresh timer now waits a minute
    await eventually(() => expect(expiring).toHaveLength(1), 2_000);
  });

  it('refreshes ahead of the certificate notAfter (refreshAhead fraction of its lifetime)', async () => {
    const issuedAt = Date.now();
    const shortLived = await ca.issue({
      notBefore: new Date(issuedAt - 1_000),
      notAfter: new Date(issuedAt + 3_000),
    });
    const renewed = await ca.issue();
    // A fake clock from the moment the certificate was made: on a busy machine the real one can pass the
    // refresh-ahead point while the certificates are being made, or fire the timer late; this test is about
    // where the point lies.
    vi.useFakeTimers({ now: issuedAt, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const { store, ref } = pollOnlyStore({ key: shortLived.keyPem, cert: shortLived.certPem });
      const resolver = track(
        createResolver(
          { key: ref('key'), cert: ref('cert') },
          { refreshIntervalMs: 3_600_000, refreshAhead: 0.5 },
        ),
      );
      // When the store was asked again (the swap follows a few turns later, when the fake clock has moved on).
      let rotatedAt = 0;
      resolver.on('storeCall', () => {
        if (resolver.generation === 1 && rotatedAt === 0) rotatedAt = Date.now();
      });
      const rotated = new Promise<void>((resolve) =>
        resolver.on('rotate', (event) => event.generation === 2 && resolve()),
      );
      const fetchedAt = Date.now();
      await resolver.resolve();
      store.set('key', renewed.keyPem);
      store.set('cert', renewed.certPem);
      // The lifetime counts from when the certificate was obtained if that is after its notBefore.
      const start = Math.max(shortLived.notBefore.getTime(), fetchedAt);
      const lifetime = shortLived.notAfter.getTime() - start;
      // Up to the point and a little past it: the rotation must have happened by then.
      await vi.advanceTimersByTimeAsync(start + 0.5 * lifetime + 50 - Date.now());
      await rotated;
      expect(resolver.generation).toBe(2);
      // Half the lifetime, less up to jitter (0.1) of that half: never after the point, never long before.
      expect(rotatedAt).toBeLessThanOrEqual(start + 0.5 * lifetime + 10);
      expect(rotatedAt).toBeGreaterThanOrEqual(start + 0.45 * lifetime - 10);
    } finally {
      vi.useRealTimers();
    }
  });

  it('re-fetches ahead of a provider-reported expiry even when the version is unchanged', async () => {
    let issued = 0;
    const lease: Provider = {
      name: 'lease',
      async fetch() {
        issued += 1;
        return { value: ca.certPem, version: 'same', expiresAt: new Date(Date.now() + 600) };
      },
      async currentVersion() {
        return 'same';
      },
    };
    const resolver = track(createResolver({ ca: createRef(lease, 'x') }, { refreshIntervalMs: 3_600_000 }));
    await resolver.resolve();
    await eventually(() => expect(issued).toBeGreaterThanOrEqual(3), 5_000);
  });

  it('refresh-ahead points are jittered per resolver, never later than the refreshAhead fraction', async () => {
    // A fake clock: the points are what is measured, not how late a busy machine runs the timers.
    vi.useFakeTimers({ now: Date.now(), toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const firstRefetch: number[] = [];
      const started = Date.now();
      const resolvers = Array.from({ length: 6 }, () => {
        let fetches = 0;
        const lease: Provider = {
          name: 'lease',
          async fetch() {
            fetches += 1;
            if (fetches === 2) firstRefetch.push(Date.now() - started);
            return { value: ca.certPem, version: 'same', expiresAt: new Date(Date.now() + 1_000) };
          },
        };
        return track(
          createResolver(
            { ca: createRef(lease, 'x') },
            { refreshIntervalMs: 3_600_000, refreshAhead: 0.6, jitter: 0.9 },
          ),
        );
      });
      await Promise.all(resolvers.map((resolver) => resolver.resolve()));
      await vi.advanceTimersByTimeAsync(600 + 10);
      expect(firstRefetch).toHaveLength(6);
      // Fractions fall in 0.6 x (1 - 0.9 u): between 60 and 600 ms of a 1 s lease, spread out.
      expect(Math.max(...firstRefetch)).toBeLessThanOrEqual(600 + 5);
      expect(Math.min(...firstRefetch)).toBeGreaterThanOrEqual(60 - 5);
      expect(Math.max(...firstRefetch) - Math.min(...firstRefetch)).toBeGreaterThan(30);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a lease point that passes while its fetch is still running is acted on at once, not at the interval', async () => {
    vi.useFakeTimers({ now: Date.now(), toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const fetchedAt: number[] = [];
      const slowLease: Provider = {
        name: 'slow-lease',
        async fetch() {
          const lease = { value: ca.certPem, version: 'same', expiresAt: new Date(Date.now() + 1_000) };
          fetchedAt.push(Date.now());
          // The first answer comes back after its own refresh-ahead point (at most 500 ms into the lease).
          if (fetchedAt.length === 1) await new Promise((resolve) => setTimeout(resolve, 700));
          return lease;
        },
      };
      const resolver = track(
        createResolver(
          { ca: createRef(slowLease, 'x') },
          { refreshIntervalMs: 3_600_000, refreshAhead: 0.5, fetchTimeoutMs: 5_000 },
        ),
      );
      const first = resolver.resolve();
      await vi.advanceTimersByTimeAsync(700);
      await first;
      await vi.advanceTimersByTimeAsync(50);
      // Refetched at once, well before the lease runs out at 1 s (the interval is an hour).
      expect(fetchedAt).toHaveLength(2);
      expect((fetchedAt[1] ?? 0) - (fetchedAt[0] ?? 0)).toBeLessThan(1_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a store answering with the same lease end again is looked at on the late-check steps, not at ever shorter gaps', async () => {
    vi.useFakeTimers({ now: Date.now(), toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const fetchedAt: number[] = [];
      const end = Date.now() + 20_000;
      // The store never extends the lease: every answer carries the same expiresAt.
      const stuck: Provider = {
        name: 'stuck-lease',
        async fetch() {
          fetchedAt.push(Date.now());
          return { value: ca.certPem, version: 'same', expiresAt: new Date(end) };
        },
      };
      const resolver = track(
        createResolver(
          { ca: createRef(stuck, 'x') },
          { refreshIntervalMs: 3_600_000, retryInitialDelayMs: 3_000, jitter: 0 },
        ),
      );
      await resolver.resolve();
      await vi.advanceTimersByTimeAsync(end - Date.now() + 100);
      const gaps = fetchedAt.slice(1).map((at, i) => at - (fetchedAt[i] ?? 0));
      // Before: 13.3 s, then 4.4, 1.5, 0.5, 0.2 s... down to a few ms before notAfter.
      expect(gaps.length).toBeGreaterThanOrEqual(2);
      for (const gap of gaps.slice(0, -1)) expect(gap).toBeGreaterThanOrEqual(3_000 - 5);
      expect(fetchedAt.length).toBeLessThanOrEqual(6);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a cold resolver whose first bundle is refused says so in status(): refused, and lastError on the field', async () => {
    const other = await ca.issue();
    const store = memory({ key: other.keyPem, cert: leaf.certPem });
    const resolver = track(createResolver({ key: store.ref('key'), cert: store.ref('cert') }));
    await expect(resolver.resolve()).rejects.toBeInstanceOf(InvalidMaterialError);
    const status = resolver.status();
    expect(status.state).toBe('cold');
    expect(status.refused?.code).toBe('INVALID_MATERIAL');
    expect(status.fields.some((field) => field.lastError?.code === 'INVALID_MATERIAL')).toBe(true);
  });

  it('probes again just after a store-scheduled change (a rotation date), without waiting for the interval', async () => {
    let version = 'v1';
    const probes: number[] = [];
    const rotating: Provider = {
      name: 'rotating',
      async fetch() {
        return { value: version === 'v1' ? ca.certPem : (await createTestCA()).certPem, version };
      },
      async currentVersion() {
        probes.push(Date.now());
        return { version, changesAt: new Date(rotationAt) };
      },
    };
    const rotationAt = Date.now() + 300;
    // This instance's draw shifts its probes by 1% of the 30 s spread (300 ms): see scheduledProbes.
    const resolver = track(
      new Resolver(
        { ca: createRef(rotating, 'ca') },
        { refreshIntervalMs: 3_600_000 },
        { random: () => 0.01 },
      ),
    );
    await resolver.resolve();
    await resolver.refresh(); // learns the rotation date
    version = 'v2';
    await eventually(() => expect(resolver.generation).toBe(2), 3_000);
    expect(probes.at(-1)).toBeGreaterThanOrEqual(rotationAt + 300 + 990); // timers may fire a few ms early
  });
});

describe('spreads drawn from the injected random source', () => {
  it.each([
    [0, 500],
    [0.999, 1_000],
  ])(
    'random %s: the first backoff step (1 s base, spread over its second half) ends after %s ms',
    async (draw, stepMs) => {
      let calls = 0;
      const down: Provider = {
        name: 'down',
        async fetch() {
          calls += 1;
          throw new FetchError('store unavailable', { provider: 'down', transient: true });
        },
      };
      const clock = skewedClock();
      const resolver = track(
        new Resolver(
          { ca: createRef(down, 'ca') },
          { retryInitialDelayMs: 1_000, startBudgetMs: 0 },
          { clock, random: () => draw },
        ),
      );
      await expect(resolver.resolve()).rejects.toBeInstanceOf(FetchError);
      expect(calls).toBe(1);
      // Just before the step ends the backoff holds (no store call); at its end the store is asked again.
      clock.advance(stepMs - 20);
      await resolver.refresh().catch(() => undefined);
      expect(calls).toBe(1);
      clock.advance(20);
      await resolver.refresh().catch(() => undefined);
      expect(calls).toBe(2);
    },
  );
});

describe('validation gate and atomic swap', () => {
  it('a key rotated before its certificate waits for the certificate; the old bundle keeps serving', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(
      createResolver({ key: store.ref('key'), cert: store.ref('cert') }, { debounceMs: 5 }),
    );
    const errors: TlsSecretsError[] = [];
    resolver.on('error', (error) => errors.push(error));
    const before = await resolver.resolve();
    const next = await ca.issue();
    store.set('key', next.keyPem);
    await eventually(() => expect(errors.length).toBeGreaterThan(0));
    expect(errors[0]).toBeInstanceOf(InvalidMaterialError);
    expect(errors[0]?.message).toMatch(/does not match any private key/);
    expect(await resolver.resolve()).toBe(before);
    const certStatus = () => resolver.status().fields.find((field) => field.field === 'cert');
    expect(certStatus()?.lastError?.code).toBe('INVALID_MATERIAL');
    store.set('cert', next.certPem);
    await eventually(() => expect(resolver.generation).toBe(2));
    expect((await resolver.resolve()).cert).toEqual([next.certPem]);
    expect(certStatus()?.lastError).toBeUndefined();
  });

  it('an invalid bundle on a cold resolver rejects resolve() with a typed error naming field and reference', async () => {
    const other = await ca.issue();
    const store = memory({ key: other.keyPem, cert: leaf.certPem });
    const resolver = track(createResolver({ key: store.ref('key'), cert: store.ref('cert') }));
    const error = (await resolver.resolve().catch((e: unknown) => e)) as TlsSecretsError;
    expect(error).toBeInstanceOf(InvalidMaterialError);
    expect(error.field).toBe('cert');
    expect(error.ref).toBe('memory:cert');
  });
});

describe('last known good', () => {
  function flakyStore() {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const state = { down: false, attempts: 0 };
    const provider: Provider = {
      name: 'flaky',
      async fetch(ref, signal) {
        state.attempts += 1;
        if (state.down) throw new Error('connect ECONNREFUSED 127.0.0.1:1');
        return store.fetch(createRef(store, ref.id), signal);
      },
    };
    return { store, provider, state, ref: (id: string) => createRef(provider, id) };
  }

  it('keeps serving, emits error and stale, retries with capped backoff, recovers', async () => {
    const { store, state, ref } = flakyStore();
    const resolver = track(
      createResolver(
        { key: ref('key'), cert: ref('cert') },
        { refreshIntervalMs: 50, retryInitialDelayMs: 40, retryMaxDelayMs: 160, jitter: 0 },
      ),
    );
    const errors: TlsSecretsError[] = [];
    const stale: StaleEvent[] = [];
    resolver.on('error', (error) => errors.push(error));
    resolver.on('stale', (event) => stale.push(event));
    const served = await resolver.resolve();

    state.down = true;
    state.attempts = 0;
    const outageStart = Date.now();
    await sleep(1_000);
    // Two references per cycle; with 40→80→160 ms steps (half-jittered) one second holds at most ~14 cycles.
    const cycles = state.attempts / 2;
    expect(cycles).toBeGreaterThanOrEqual(4);
    expect(cycles).toBeLessThanOrEqual(16);
    expect(await resolver.resolve()).toBe(served);
    expect(errors[0]).toBeInstanceOf(FetchError);
    expect(errors[0]?.ref).toBe('flaky:key');
    expect(stale[0]?.since.getTime()).toBeGreaterThanOrEqual(outageStart - 5);
    expect(resolver.status().stale).toBe(true);
    expect(resolver.status().fields[0]?.lastError?.code).toBe('FETCH_FAILED');

    const next = await ca.issue();
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    state.down = false;
    await eventually(() => expect(resolver.generation).toBe(2), 1_000);
    expect(resolver.status().stale).toBe(false);
    expect(resolver.status().fields[0]?.lastError).toBeUndefined();
  });

  it('a store that never answers times out; the next refresh is not blocked', async () => {
    let hang = true;
    let fetches = 0;
    const provider: Provider = {
      name: 'hung',
      fetch: () => {
        fetches += 1;
        return hang ? new Promise(() => undefined) : Promise.resolve({ value: ca.certPem, version: '1' });
      },
    };
    const resolver = track(
      // No start budget: the cold resolve rejects at its first failure, which is what is looked at here.
      createResolver(
        { ca: createRef(provider, 'ca') },
        { fetchTimeoutMs: 100, retryInitialDelayMs: 200, startBudgetMs: 0 },
      ),
    );
    const error = (await resolver.resolve().catch((e: unknown) => e)) as TlsSecretsError;
    expect(error).toBeInstanceOf(FetchError);
    expect(error.message).toMatch(/did not answer in time/);
    hang = false;
    // Within the backoff's first step a caller gets the last error without a store call; then the store.
    await expect(resolver.resolve()).rejects.toBe(error);
    expect(fetches).toBe(1);
    await eventually(() => expect(resolver.resolve()).resolves.toBeTruthy(), 2_000);
    expect(fetches).toBe(2);
  });

  it('refuses to serve a certificate past notAfter + maxStaleMs, and says so', async () => {
    const brief = await ca.issue({
      notBefore: new Date(Date.now() - 2_000),
      notAfter: new Date(Date.now() + 1_200),
    });
    const { state, ref } = flakyStore();
    const store = memory({ key: brief.keyPem, cert: brief.certPem });
    const provider: Provider = {
      name: 'flaky',
      async fetch(r, signal) {
        if (state.down) throw new Error('connect ECONNREFUSED');
        return store.fetch(createRef(store, r.id), signal);
      },
    };
    void ref;
    const resolver = track(
      createResolver(
        { key: createRef(provider, 'key'), cert: createRef(provider, 'cert') },
        { refreshIntervalMs: 3_600_000 },
      ),
    );
    const expired: string[] = [];
    resolver.on('expired', (event) => expired.push(event.certificate.serialNumber));
    await resolver.resolve();
    state.down = true;
    await sleep(2_300);
    expect(expired).toEqual([brief.serial]);
    const error = await resolver.resolve().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CertificateExpiredError);
    expect((error as TlsSecretsError).field).toBe('cert');

    const lenient = track(createResolver({ key: brief.keyPem, cert: brief.certPem }, { maxStaleMs: 60_000 }));
    // Validation refuses an already expired certificate even with maxStaleMs: it only extends a bundle in use.
    await expect(lenient.resolve()).rejects.toBeInstanceOf(InvalidMaterialError);
  });
});

describe('current() and cold failures', () => {
  it('current() reads generation and options together without fetching', async () => {
    const { provider, ref } = pollOnlyStore({ ca: ca.certPem });
    const resolver = track(createResolver({ ca: ref('ca') }));
    expect(resolver.current()).toBeUndefined();
    expect(provider.fetches).toEqual([]);
    const options = await resolver.resolve();
    expect(resolver.current()).toEqual({ generation: 1, options });
  });

  it('a failed first load is thrown to the caller and emitted to error listeners', async () => {
    const store = memory({});
    const resolver = track(createResolver({ ca: store.ref('missing') }));
    const heard: TlsSecretsError[] = [];
    resolver.on('error', (error) => heard.push(error));
    const thrown = await resolver.resolve().catch((e: unknown) => e);
    expect(heard).toEqual([thrown]);
  });
});

describe('spec handling', () => {
  it('passes non-secret options through, splits CA bundles and takes literals', async () => {
    const second = await createTestCA();
    const resolver = track(
      createResolver({
        key: leaf.keyPem,
        cert: Buffer.from(leaf.certPem),
        ca: `${ca.certPem}\n${second.certPem}`,
        servername: 'svc.internal',
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['h2'],
      }),
    );
    const options = await resolver.resolve();
    expect(options.servername).toBe('svc.internal');
    expect(options.minVersion).toBe('TLSv1.3');
    expect(options.ALPNProtocols).toEqual(['h2']);
    expect(options.ca).toHaveLength(2);
    expect(resolver.status().fields.map((f) => f.source)).toEqual(['literal', 'literal', 'literal']);
  });

  it('decodes base64 and picks JSON keys per reference', async () => {
    const store = memory({
      tls: JSON.stringify({ key: leaf.keyPem, cert: leaf.certPem }),
      tickets: Buffer.alloc(48, 1).toString('base64'),
    });
    const resolver = track(
      createResolver({
        key: store.ref('tls', { jsonKey: 'key' }),
        cert: store.ref('tls', { jsonKey: 'cert' }),
        ticketKeys: store.ref('tickets', { encoding: 'base64' }),
      }),
    );
    const options = await resolver.resolve();
    expect(options.ticketKeys).toEqual(Buffer.alloc(48, 1));
  });

  it('rejects bad options and bad spec values when created', () => {
    expect(() => createResolver({}, { refreshIntervalMs: -1 })).toThrow(ConfigurationError);
    expect(() => createResolver({}, { refreshAhead: 1.5 })).toThrow(ConfigurationError);
    expect(() => createResolver({ cert: 42 as unknown as string })).toThrow(/field cert/);
  });

  it('CA entries reused from the previous generation are reported under their new positions', async () => {
    const [a, b, c, d] = await Promise.all(Array.from({ length: 4 }, () => createTestCA()));
    const serial = (x: TestCA | undefined) => x?.serial;
    const store = memory({ a: a?.certPem ?? '', b: b?.certPem ?? '', c: c?.certPem ?? '' });
    const resolver = track(createResolver({ ca: [store.ref('a'), store.ref('b'), store.ref('c')] }));
    const rotations: RotateEvent[] = [];
    resolver.on('rotate', (event) => rotations.push(event));
    await resolver.resolve();
    // c's certificate moves to the first position and d replaces it: only d is new.
    store.set('a', c?.certPem ?? '');
    store.set('c', d?.certPem ?? '');
    await resolver.refresh();
    const authorities = rotations.at(-1)?.authorities.map((info) => [info.field, info.serialNumber]);
    expect(authorities).toEqual([
      ['ca[0]', serial(c)],
      ['ca[1]', serial(b)],
      ['ca[2]', serial(d)],
    ]);
    expect(rotations.at(-1)?.authorities[0]?.ref).toBe('memory:a');
  });

  it('status() reports source, version, fetch time and notAfter per field', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = track(
      createResolver({ key: store.ref('key'), cert: store.ref('cert'), ca: ca.certPem }),
    );
    await resolver.resolve();
    const status = resolver.status();
    expect(status.generation).toBe(1);
    expect(status.notAfter?.getTime()).toBe(leaf.notAfter.getTime());
    const cert = status.fields.find((f) => f.field === 'cert');
    expect(cert).toMatchObject({ source: 'memory:cert', notAfter: leaf.notAfter });
    expect(cert?.version).toEqual(expect.any(String));
    expect(cert?.fetchedAt).toBeInstanceOf(Date);
    // CA expiry is reported too (not enforced): the field's earliest entry.
    expect(status.fields.find((f) => f.field === 'ca')?.notAfter?.getTime()).toBe(ca.notAfter.getTime());
  });
});

describe('close', () => {
  it('stops timers and watchers: a child process with an open resolver exits by itself after close()', async () => {
    const { execFileSync } = await import('node:child_process');
    const script = `
      import { createResolver } from './src/index.ts';
      import { memory } from './providers/memory.ts';
      import { createTestCA } from './test/fixtures/ca.ts';
      const ca = await createTestCA();
      const leaf = await ca.issue();
      const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
      const resolver = createResolver({ key: store.ref('key'), cert: store.ref('cert') }, { refreshIntervalMs: 50 });
      await resolver.resolve();
      await new Promise((r) => setTimeout(r, 120));
      await resolver.close();
      const left = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
      console.log(JSON.stringify({ generation: resolver.generation, left }));
    `;
    const started = Date.now();
    const output = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      encoding: 'utf8',
      timeout: 20_000,
    });
    const result = JSON.parse(output.trim().split('\n').pop() ?? '{}') as {
      generation: number;
      left: string[];
    };
    expect(result.generation).toBe(1);
    expect(result.left.filter((r) => r === 'Timeout')).toEqual([]);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
