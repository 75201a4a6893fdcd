/**
 * `recovered`: a resolver that went stale (its store down) or was refusing a bundle tells listeners when a
 * good generation is served again, once. The store is a real memory provider whose fetches and probes fail
 * while `down` (an outage as the resolver sees one: a transient FetchError); time is a skewed clock, moved
 * past each backoff step instead of waited for.
 */
import { describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { FetchError, type Provider } from '../src/index.js';
import { Resolver } from '../src/resolver/index.js';
import type { RecoveredEvent, StaleEvent } from '../src/types.js';
import { createTestCA } from './fixtures/ca.js';
import { skewedClock } from './helpers/clock.js';

function flaky(store: ReturnType<typeof memory>) {
  const state = { down: false };
  const outage = () => new FetchError('store unreachable', { provider: store.name, transient: true });
  const provider: Provider = {
    name: store.name,
    fetch: (ref, signal) =>
      state.down ? Promise.reject(outage()) : store.fetch({ ...ref, provider: store }, signal),
    currentVersion: (ref, signal) =>
      state.down ? Promise.reject(outage()) : store.currentVersion({ ...ref, provider: store }, signal),
  };
  return { provider, state };
}

describe('recovered', () => {
  it('follows stale once the store serves again, naming the generation and when the trouble began', async () => {
    const ca = await createTestCA();
    const first = await ca.issue({ commonName: 'first' });
    const store = memory({ key: first.keyPem, cert: first.certPem });
    const { provider, state } = flaky(store);
    const clock = skewedClock();
    const ref = (id: string) => ({ provider, id, options: {} });
    const resolver = new Resolver(
      { key: ref('key'), cert: ref('cert') },
      { refreshIntervalMs: 3_600_000, retryInitialDelayMs: 60_000, retryMaxDelayMs: 60_000 },
      { clock },
    );
    const stale: StaleEvent[] = [];
    const recovered: RecoveredEvent[] = [];
    resolver.on('stale', (event) => stale.push(event));
    resolver.on('recovered', (event) => recovered.push(event));
    resolver.on('error', () => {});
    try {
      await resolver.resolve();
      state.down = true;
      const outageStart = clock.now();
      await resolver.refresh();
      clock.advance(61_000);
      await resolver.refresh();
      expect(stale.length).toBe(2);
      expect(recovered).toEqual([]);

      // Back up, with new material: the next refresh past the backoff serves generation 2 and recovers.
      state.down = false;
      const next = await ca.issue({ commonName: 'second' });
      store.set('key', next.keyPem);
      store.set('cert', next.certPem);
      clock.advance(61_000);
      const result = await resolver.refresh();
      expect(result.rotated).toBe(true);
      expect(recovered).toHaveLength(1);
      expect(recovered[0]?.generation).toBe(2);
      expect(Math.abs((recovered[0]?.since.getTime() ?? 0) - outageStart)).toBeLessThan(1_000);
      expect(resolver.status().state).toBe('serving');

      // Healthy refreshes after that are not recoveries.
      clock.advance(61_000);
      await resolver.refresh();
      expect(recovered).toHaveLength(1);
    } finally {
      await resolver.close();
    }
  });

  it('follows a failed cold load once the first generation is served', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue();
    const store = memory({ key: leaf.keyPem, cert: leaf.certPem });
    const { provider, state } = flaky(store);
    const clock = skewedClock();
    const ref = (id: string) => ({ provider, id, options: {} });
    const resolver = new Resolver(
      { key: ref('key'), cert: ref('cert') },
      { retryInitialDelayMs: 60_000 },
      { clock },
    );
    const recovered: RecoveredEvent[] = [];
    resolver.on('recovered', (event) => recovered.push(event));
    resolver.on('error', () => {});
    try {
      state.down = true;
      await expect(resolver.resolve()).rejects.toThrow(FetchError);
      state.down = false;
      clock.advance(61_000);
      await resolver.resolve();
      expect(recovered.map((event) => event.generation)).toEqual([1]);
    } finally {
      await resolver.close();
    }
  });
});
