/**
 * The conformance suite fails a broken provider instead of passing or hanging: here one whose close()
 * never settles (an outside tester's case: under node:test the run hung and no case failed). The suite's
 * cases are collected with a describe/it of our own and the one about close() is run.
 */
import { providerConformance } from 'tls-secrets/testing';
import { expect, it } from 'vitest';
import { memory } from '../providers/memory.js';

it('a close() that never settles fails the close case within its bound, naming it', async () => {
  const cases = new Map<string, () => Promise<void>>();
  const collect = Object.assign((name: string, body: () => Promise<void>) => void cases.set(name, body), {
    skip: () => undefined,
  });
  providerConformance(
    {
      name: 'hanging-close',
      capabilities: { closeEndsFetch: 'close() only ends push notifications' },
      async setup() {
        const store = memory();
        const provider = Object.assign(store, { close: () => new Promise<void>(() => undefined) });
        return {
          provider,
          put: async (name, value) => store.set(name, value),
          ref: (name, options) => store.ref(name, options),
          storeCalls: () => 0,
          close: async () => undefined,
        };
      },
    },
    { describe: (_name: string, body: () => void) => body(), it: collect },
  );
  const closeCase = [...cases].find(([name]) => name.startsWith('close()'));
  expect(closeCase, [...cases.keys()].join('\n')).toBeDefined();
  await expect(closeCase?.[1]()).rejects.toThrow(/close\(\) did not settle within 5000 ms/);
}, 20_000);
