import { inspect } from 'node:util';
import { providerConformance } from 'tls-secrets/testing';
import { describe, expect, it } from 'vitest';
import { memory } from '../../providers/memory.js';

providerConformance(
  {
    name: 'memory',
    capabilities: {
      batch: 'memory answers each fetch at once; the resolver fetches them one by one',
      watch: true,
      probe: true,
      deny: 'a memory store has no permissions',
      unreachable: 'a memory store is always there',
      abort: 'memory answers synchronously; the resolver bounds every call by its signal',
      binary: true,
      closeEndsFetch: 'close() only ends push notifications; the values stay readable',
    },
    async setup() {
      const store = memory();
      let calls = 0;
      const fetch = store.fetch.bind(store);
      store.fetch = (ref, signal) => {
        calls += 1;
        return fetch(ref, signal);
      };
      return {
        provider: store,
        put: async (name, value) => store.set(name, value),
        ref: (name, options) => store.ref(name, options),
        storeCalls: () => calls,
        close: async () => undefined,
      };
    },
  },
  { describe, it },
);

describe('memory provider', () => {
  it('pushes a change to watchers of that key only, and stops after unsubscribe', () => {
    const store = memory({ a: '1', b: '2' });
    const seen: string[] = [];
    const stop = store.watch([store.ref('a')], (ref) => seen.push(ref.id));
    store.set('b', '3');
    store.set('a', '4');
    stop();
    store.set('a', '5');
    expect(seen).toEqual(['a']);
  });

  it('never shows its values through inspect or JSON', () => {
    const store = memory({ key: 'CANARY-memory-secret' });
    expect(inspect(store, { showHidden: true, depth: 5 })).not.toContain('CANARY');
    expect(JSON.stringify(store)).not.toContain('CANARY');
  });
});
