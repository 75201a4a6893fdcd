/**
 * Observability: OpenTelemetry instruments recorded into a capturing Meter (the API's interfaces, no SDK
 * needed), the optional peer made unimportable, and the logger with a canary secret that must never appear.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Attributes, type Meter, metrics, type ObservableCallback } from '@opentelemetry/api';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type MemoryProvider, memory } from '../providers/memory.js';
import { type createResolver, Resolver } from '../src/index.js';
import { attachLogger, type Logger } from '../src/logger.js';
import { instrument, METRICS } from '../src/otel.js';
import { createTestCA, encryptKey, type Issued, type TestCA } from './fixtures/ca.js';
import { skewedClock } from './helpers/clock.js';
import { eventually } from './helpers/tls.js';

let ca: TestCA;
let leaf: Issued;

beforeAll(async () => {
  ca = await createTestCA();
  leaf = await ca.issue({ commonName: 'observed' });
});

const resolvers: Resolver[] = [];
afterEach(async () => {
  for (const resolver of resolvers.splice(0)) await resolver.close();
});

/** No background checks or retries within a test: an hour between them (a test may skew `clock` past it). */
function tracked(
  store: MemoryProvider,
  spec: Parameters<typeof createResolver>[0],
  clock = skewedClock(),
): Resolver {
  const options = { refreshIntervalMs: 3_600_000, retryInitialDelayMs: 3_600_000 };
  const resolver = new Resolver(spec, options, { clock });
  resolvers.push(resolver);
  void store;
  return resolver;
}

/** Records what instruments receive; collect() runs the observable callbacks as a reader would. */
function captureMeter() {
  const added: { name: string; value: number; attributes: Attributes | undefined }[] = [];
  const callbacks = new Map<string, Set<ObservableCallback>>();
  const observable = (name: string) => {
    const set = new Set<ObservableCallback>();
    callbacks.set(name, set);
    return {
      addCallback: (cb: ObservableCallback) => set.add(cb),
      removeCallback: (cb: ObservableCallback) => set.delete(cb),
    };
  };
  const counter = (name: string) => ({
    add: (value: number, attributes?: Attributes) => added.push({ name, value, attributes }),
  });
  const histogram = (name: string) => ({
    record: (value: number, attributes?: Attributes) => added.push({ name, value, attributes }),
  });
  const meter = {
    createObservableGauge: observable,
    createCounter: counter,
    createHistogram: histogram,
  } as unknown as Meter;
  const collect = async (name: string) => {
    const observed: { value: number; attributes: Attributes | undefined }[] = [];
    for (const cb of callbacks.get(name) ?? []) {
      await cb({ observe: (value: number, attributes?: Attributes) => observed.push({ value, attributes }) });
    }
    return observed;
  };
  return { meter, added, collect, callbacks };
}

describe('instrument', () => {
  it('records seconds to expiry per field, rotations, errors by code and staleness', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const clock = skewedClock();
    const resolver = tracked(store, { key: store.ref('key'), cert: store.ref('cert') }, clock);
    const { meter, added, collect } = captureMeter();
    const instrumentation = await instrument(resolver, { meter, attributes: { service: 'api' } });

    expect(await collect(METRICS.expiry)).toEqual([]);
    await resolver.resolve();
    const [expiry] = await collect(METRICS.expiry);
    const expected = (leaf.notAfter.getTime() - Date.now()) / 1000;
    expect(Math.abs((expiry?.value ?? 0) - expected)).toBeLessThan(5);
    expect(expiry?.attributes).toEqual({
      service: 'api',
      'tls_secrets.field': 'cert',
      'tls_secrets.source': 'memory:cert',
    });
    expect(await collect(METRICS.stale)).toEqual([{ value: 0, attributes: { service: 'api' } }]);
    expect(added.filter((m) => m.name === METRICS.rotations)).toHaveLength(1);
    const fetches = added.filter((m) => m.name === METRICS.storeDuration);
    expect(fetches.map((m) => m.attributes)).toEqual([
      {
        service: 'api',
        'tls_secrets.provider': 'memory',
        'tls_secrets.call': 'fetch',
        'tls_secrets.ok': true,
      },
      {
        service: 'api',
        'tls_secrets.provider': 'memory',
        'tls_secrets.call': 'fetch',
        'tls_secrets.ok': true,
      },
    ]);
    expect(fetches.every((m) => m.value >= 0 && m.value < 1_000)).toBe(true);

    store.delete('cert');
    await resolver.refresh();
    expect(added.filter((m) => m.name === METRICS.errors)).toEqual([
      {
        name: METRICS.errors,
        value: 1,
        attributes: {
          service: 'api',
          'error.type': 'NOT_FOUND',
          'tls_secrets.field': 'cert',
          'tls_secrets.provider': 'memory',
        },
      },
    ]);
    expect(await collect(METRICS.stale)).toEqual([{ value: 1, attributes: { service: 'api' } }]);
    const failed = added.filter(
      (m) => m.name === METRICS.storeDuration && m.attributes?.['tls_secrets.ok'] === false,
    );
    expect(failed.map((m) => m.attributes?.['tls_secrets.call'])).toEqual(['fetch']);

    const next = await ca.issue({ commonName: 'observed-2' });
    store.set('key', next.keyPem);
    store.set('cert', next.certPem);
    // refresh() shares the store's backoff (an hour here): past its step, it asks the store again.
    clock.advance(3_600_000);
    await resolver.refresh();
    expect(added.filter((m) => m.name === METRICS.rotations)).toHaveLength(2);

    instrumentation.stop();
    store.delete('cert');
    await resolver.refresh();
    expect(added.filter((m) => m.name === METRICS.errors)).toHaveLength(1);
    expect(await collect(METRICS.expiry)).toEqual([]);
  });

  it('uses the global meter of @opentelemetry/api when none is given', async () => {
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const resolver = tracked(store, { key: store.ref('key'), cert: store.ref('cert') });
    const { meter, added } = captureMeter();
    const names: string[] = [];
    metrics.setGlobalMeterProvider({
      getMeter: (name) => {
        names.push(name);
        return meter;
      },
    });
    try {
      const instrumentation = await instrument(resolver);
      await resolver.resolve();
      instrumentation.stop();
      expect(names).toEqual(['tls-secrets']);
      expect(added.filter((m) => m.name === METRICS.rotations)).toHaveLength(1);
    } finally {
      metrics.disable();
    }
  });

  it('without @opentelemetry/api installed and no meter given: a ConfigurationError naming the package', async () => {
    vi.resetModules();
    vi.doMock('@opentelemetry/api', () => {
      throw new Error("Cannot find package '@opentelemetry/api'");
    });
    try {
      const otel = await import('../src/otel.js');
      // The classes of this fresh module graph, the one otel.js was loaded in.
      const { createResolver: create, ConfigurationError } = await import('../src/index.js');
      const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
      const resolver = create({ key: store.ref('key'), cert: store.ref('cert') });
      resolvers.push(resolver);
      const error = await otel.instrument(resolver).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toBe(
        'instrument() needs the optional package "@opentelemetry/api", which could not be loaded (npm install @opentelemetry/api)',
      );
      await expect(resolver.resolve()).resolves.toHaveProperty('secureContext');
      expect(resolver.listenerCount('rotate')).toBe(0);
    } finally {
      vi.doUnmock('@opentelemetry/api');
      vi.resetModules();
    }
  });

  it('optional peers (undici, @opentelemetry/api, yaml) are never imported at module load', () => {
    for (const file of [
      'src/agent.ts',
      'src/undici.ts',
      'src/otel.ts',
      'src/logger.ts',
      'config/load.ts',
      'cli/main.ts',
      'src/index.ts',
    ]) {
      const source = readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');
      expect(source, file).not.toMatch(/^import (?!type)[^;]*from '(undici|@opentelemetry\/api|yaml)'/m);
    }
  });
});

describe('attachLogger', () => {
  function captureLogger() {
    const lines: { level: keyof Logger; obj: object; msg: string | undefined }[] = [];
    const at = (level: keyof Logger) => (obj: object, msg?: string) => lines.push({ level, obj, msg });
    const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
    return { logger, lines };
  }

  it('logs rotations, errors, staleness and expiry with no secret material', async () => {
    const canary = `CANARY-${randomBytes(8).toString('hex')}`;
    // Certificates keep whole seconds: valid from now (or up to 1 s before) to 1.5..2.5 s from now, so the
    // refresh-ahead point (2/3 of the lifetime, where `expiring` fires) is still ahead.
    const now = Date.now();
    const shortLived = await ca.issue({
      commonName: 'short',
      notBefore: new Date(now),
      notAfter: new Date(now + 2_500),
    });
    const store = memory({
      key: encryptKey(shortLived.keyPem, canary),
      pass: canary,
      cert: shortLived.certPem,
    });
    const resolver = tracked(store, {
      key: { pem: store.ref('key'), passphrase: store.ref('pass') },
      cert: store.ref('cert'),
    });
    const { logger, lines } = captureLogger();
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((method) =>
      vi.spyOn(console, method).mockImplementation(() => {}),
    );
    const detach = attachLogger(resolver, logger);
    try {
      await resolver.resolve();
      const has = (event: string) =>
        expect(lines.map((line) => line.obj)).toContainEqual(expect.objectContaining({ event }));
      // Expiring first: while refreshes fail, the resolver's timer follows the retry backoff instead.
      await eventually(() => has('expiring'), 3_000);
      store.set('pass', `${canary}-wrong`);
      await resolver.refresh();
      await eventually(
        () =>
          expect(lines.map((line) => line.obj)).toContainEqual(expect.objectContaining({ event: 'expired' })),
        4_000,
      );
    } finally {
      detach();
      for (const spy of spies) spy.mockRestore();
    }

    // The store's push after set() may repeat error and stale: compare first appearances.
    const events = lines.map((line) => `${line.level} ${(line.obj as { event: string }).event}`);
    expect([...new Set(events)]).toEqual([
      'info rotate',
      'warn expiring',
      'warn error',
      'warn stale',
      'error expired',
    ]);
    const [rotate] = lines;
    const error = lines.find((line) => (line.obj as { event: string }).event === 'error');
    expect(rotate?.obj).toMatchObject({
      generation: 1,
      changed: ['key', 'key.passphrase', 'cert'],
      certificates: [{ field: 'cert', ref: 'memory:cert', subject: 'CN=short' }],
    });
    expect(error?.obj).toMatchObject({ err: { code: 'INVALID_MATERIAL', field: 'key', ref: 'memory:key' } });
    expect(error?.msg).toContain('passphrase from memory:pass');

    const everything = JSON.stringify(lines);
    expect(everything).not.toContain(canary);
    expect(everything).not.toContain('PRIVATE KEY');
    const body = shortLived.keyPem.split('\n')[1] ?? '';
    expect(body.length).toBeGreaterThan(20);
    expect(everything).not.toContain(body);
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });

  it('is silent by default: a resolver with no logger writes nothing', async () => {
    const spies = (['log', 'info', 'warn', 'error', 'debug'] as const).map((method) =>
      vi.spyOn(console, method).mockImplementation(() => {}),
    );
    try {
      const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
      const resolver = tracked(store, { key: store.ref('key'), cert: store.ref('cert') });
      await resolver.resolve();
      store.delete('cert');
      await resolver.refresh();
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});
