/**
 * The provider conformance suite: every provider runs it through a small harness that can write to its
 * store out of band. Provider test files add only what is special to their store.
 */
import { describe, expect, it } from 'vitest';
import { SecretNotFoundError, type TlsSecretsError } from '../../src/errors.js';
import type { Provider, RawSecret, RefOptions, SecretRef } from '../../src/provider.js';
import { transformValue } from '../../src/transform.js';

export interface ConformanceHarness {
  provider: Provider;
  /** Creates or overwrites a secret directly in the store (not through the provider). */
  put(name: string, value: string): Promise<void>;
  /**
   * A reference to the secret `name` as a user would write it, with `options` merged in. Stores that keep
   * maps (Vault KV) point it at the field that `put` wrote.
   */
  ref(name: string, options?: RefOptions): SecretRef;
  /** Counts calls the provider made to its store so far (requests, reads, SDK sends). */
  storeCalls(): number;
  close(): Promise<void>;
}

export function runProviderConformance(label: string, setup: () => Promise<ConformanceHarness>): void {
  describe(`provider conformance: ${label}`, () => {
    const withHarness = (fn: (h: ConformanceHarness) => Promise<void>) => async () => {
      const harness = await setup();
      try {
        await fn(harness);
      } finally {
        await harness.close();
      }
    };
    const signal = () => new AbortController().signal;
    const unique = () => `conf-${Math.random().toString(36).slice(2, 10)}`;

    it(
      'creating references does no I/O',
      withHarness(async (h) => {
        const before = h.storeCalls();
        h.ref(unique());
        h.ref(unique(), { encoding: 'base64' });
        expect(h.storeCalls()).toBe(before);
      }),
    );

    it(
      'fetches the stored value with a version',
      withHarness(async (h) => {
        const name = unique();
        await h.put(name, 'first value');
        const result = await h.provider.fetch(h.ref(name), signal());
        expect(text(h, name, result.value)).toBe('first value');
        expect(typeof result.version).toBe('string');
      }),
    );

    it(
      'reports a new version after the store changes',
      withHarness(async (h) => {
        const name = unique();
        await h.put(name, 'v1');
        const ref = h.ref(name);
        const first = await h.provider.fetch(ref, signal());
        await h.put(name, 'v2');
        const second = await h.provider.fetch(ref, signal());
        expect(text(h, name, second.value)).toBe('v2');
        expect(second.version).not.toBe(first.version);
        if (h.provider.currentVersion) {
          const probe = await h.provider.currentVersion(ref, signal());
          expect(typeof probe === 'object' ? probe.version : probe).toBe(second.version);
        }
      }),
    );

    it(
      'a missing secret is a SecretNotFoundError naming the reference',
      withHarness(async (h) => {
        const name = unique();
        const ref = h.ref(name);
        const error = await h.provider.fetch(ref, signal()).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(SecretNotFoundError);
        expect((error as TlsSecretsError).message).toContain(ref.id);
      }),
    );

    it(
      'batch fetch, where offered, returns values and per-reference errors in order',
      withHarness(async (h) => {
        if (!h.provider.fetchMany) return;
        const present = unique();
        await h.put(present, 'batch value');
        const results = await h.provider.fetchMany([h.ref(present), h.ref(unique())], signal());
        expect(results).toHaveLength(2);
        const [ok, missing] = results;
        expect(ok instanceof Error ? ok : text(h, present, ok?.value)).toBe('batch value');
        expect(missing).toBeInstanceOf(SecretNotFoundError);
      }),
    );

    it(
      'close() resolves and can be called twice',
      withHarness(async (h) => {
        await h.provider.close?.();
        await h.provider.close?.();
      }),
    );
  });
}

/** The value as the resolver would hand it to a text field. */
function text(h: ConformanceHarness, name: string, value: RawSecret | undefined): string {
  if (value === undefined) throw new Error('no value');
  return transformValue(h.ref(name), value).toString();
}
