/**
 * `tls-secrets/testing`: the provider conformance suite, the one every built-in provider runs and a provider of
 * your own should run too (docs/providers/writing-a-provider.md). It is framework-neutral: it registers its
 * cases with the `describe`/`it` you hand it (vitest, jest and node:test all fit) and asserts with node:assert.
 *
 * It is capability-driven: a subject says what its store can do (be made to deny, hold bytes, …) and every
 * case a subject cannot run is registered as a skipped test whose title gives the reason, never left out.
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { ClosedError, FetchError, SecretNotFoundError, TlsSecretsError } from '../errors.js';
import type { FetchResult, Provider, RawSecret, RefOptions, SecretRef } from '../provider.js';
import { transformValue } from '../transform.js';

type TestBody = () => Promise<void>;
type Register = (name: string, body: TestBody) => unknown;

/** The test functions to register with: `{ describe, it }` from vitest, jest or node:test. */
export interface TestApi {
  describe(name: string, body: () => void): unknown;
  it: Register & { skip: Register };
}

/** One store, set up fresh for each case. */
export interface ConformanceStore {
  /** The provider under test. The suite counts on it doing no I/O before the first fetch. */
  readonly provider: Provider;
  /** Creates or overwrites a secret directly in the store (not through the provider). */
  put(name: string, value: string | Uint8Array): Promise<void>;
  /**
   * A reference to the secret `name` as a user would write it, with `options` merged in. Stores that keep maps
   * (Vault KV) point it at the field that `put` wrote.
   */
  ref(name: string, options?: RefOptions): SecretRef;
  /** Calls the provider made to its store so far (requests, reads, SDK sends). */
  storeCalls(): number;
  /**
   * A reference to a secret that exists, on a provider whose identity may not read it (a policy that denies,
   * a file mode): the store's own "permission denied". Needed when the capability `deny` is true.
   */
  denied?(): Promise<SecretRef>;
  /**
   * A reference on a provider of this kind whose store does not answer (nothing listens at its address); the
   * suite closes that provider. Needed when the capability `unreachable` is true.
   */
  unreachable?(): Promise<SecretRef>;
  /** Releases what setup made (the provider is closed by the suite, where it has close()). */
  close(): Promise<void>;
}

/**
 * What a store can do that not all can. Each is `true`, or a string saying why not (shown as the skip reason);
 * left out, the case is skipped as undeclared. `batch`, `watch` and `probe` must match the provider's methods
 * (fetchMany, watch, currentVersion): a case checks that the declaration does not lie either way.
 */
export interface ConformanceCapabilities {
  /** `fetchMany`. */
  readonly batch?: true | string;
  /** `watch` (push notifications). */
  readonly watch?: true | string;
  /** `currentVersion` (a cheap version probe). */
  readonly probe?: true | string;
  /** The store can be made to deny a read (`ConformanceStore.denied`). */
  readonly deny?: true | string;
  /** A provider can be pointed at a store that does not answer (`ConformanceStore.unreachable`). */
  readonly unreachable?: true | string;
  /** `put` accepts bytes, and `fetch` returns them as they were (encoding `binary`). */
  readonly binary?: true | string;
  /** The provider rejects a signal already aborted, instead of answering (the resolver bounds it anyway). */
  readonly abort?: true | string;
  /** After `close()`, `fetch` rejects with ClosedError (a provider whose close only stops push says why not). */
  readonly closeEndsFetch?: true | string;
  /**
   * How long (ms) a change may take to be pushed to a watcher (file-system events, debounce). Default 10 s.
   * Only used when the provider has `watch`.
   */
  readonly watchWithinMs?: number;
}

export interface ConformanceSubject {
  /** Shown in the suite's title, e.g. `vault (OpenBao)`. */
  readonly name: string;
  /** A fresh store for each case. */
  setup(): Promise<ConformanceStore>;
  readonly capabilities: ConformanceCapabilities;
}

/** A secret-shaped value that must never show in an error or in the provider. */
const CANARY = 'CANARY-conformance-4f1d9c2e7a6b';

/** How long close() may take: a close that never settles would hang the test run instead of failing a case. */
const CLOSE_WITHIN_MS = 5_000;

/** Fails with `what` unless `promise` settles within `ms` (the timer never holds the process). */
function within<T>(promise: Promise<T> | undefined, ms: number, what: string): Promise<T | undefined> {
  if (!promise) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new assert.AssertionError({ message: `${what} did not settle within ${ms} ms` })),
      ms,
    );
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** Registers the conformance cases for `subject` with `test` (see TestApi). */
export function providerConformance(subject: ConformanceSubject, test: TestApi): void {
  const caps = subject.capabilities;
  const { it } = test;
  const withStore = (body: (store: ConformanceStore) => Promise<void>) => async () => {
    const store = await subject.setup();
    try {
      await body(store);
    } finally {
      await within(store.provider.close?.(), CLOSE_WITHIN_MS, 'close()');
      await store.close();
    }
  };
  /** A case that runs when `reason` is undefined, and is a visible skip saying `reason` otherwise. */
  const when = (
    reason: string | undefined,
    name: string,
    body: (store: ConformanceStore) => Promise<void>,
  ) => {
    if (reason === undefined) it(name, withStore(body));
    // biome-ignore lint/suspicious/noSkippedTests: a case the subject cannot run is shown as skipped, with why.
    else it.skip(`${name} (skipped: ${reason})`, async () => undefined);
  };
  const can = (capability: true | string | undefined, fallback: string) =>
    capability === true ? undefined : (capability ?? fallback);
  const unique = () => `conf-${Math.random().toString(36).slice(2, 10)}`;
  const signal = () => new AbortController().signal;

  test.describe(`provider conformance: ${subject.name}`, () => {
    it(
      'the declared capabilities match the provider (batch, watch, probe)',
      withStore(async (store) => {
        const offered = { batch: 'fetchMany', watch: 'watch', probe: 'currentVersion' } as const;
        for (const [capability, method] of Object.entries(offered) as [keyof typeof offered, string][]) {
          const has = typeof (store.provider as unknown as Record<string, unknown>)[method] === 'function';
          assert.equal(
            has,
            caps[capability] === true,
            `capability ${capability} declared ${has ? 'absent' : 'present'}, but the provider ${has ? 'has' : 'lacks'} ${method}`,
          );
        }
        if (caps.deny === true)
          assert.equal(typeof store.denied, 'function', 'deny declared, denied() missing');
        if (caps.unreachable === true)
          assert.equal(typeof store.unreachable, 'function', 'unreachable declared, unreachable() missing');
      }),
    );

    it(
      'creating the provider and references does no I/O',
      withStore(async (store) => {
        assert.equal(store.storeCalls(), 0, 'the provider called its store before any fetch');
        store.ref(unique());
        store.ref(unique(), { encoding: 'base64' });
        assert.equal(store.storeCalls(), 0, 'creating references called the store');
      }),
    );

    it(
      'fetch returns the stored value with a version',
      withStore(async (store) => {
        const name = unique();
        await store.put(name, 'first value');
        const result = await store.provider.fetch(store.ref(name), signal());
        assert.equal(text(store, name, result), 'first value');
        assert.equal(typeof result.version, 'string', 'fetch gave no version');
        assert.ok(store.storeCalls() > 0, 'storeCalls() did not count the fetch');
      }),
    );

    it(
      'the version stays while nothing changes and changes with the value; a probe agrees with fetch',
      withStore(async (store) => {
        const name = unique();
        await store.put(name, 'v1');
        const ref = store.ref(name);
        const first = await store.provider.fetch(ref, signal());
        const again = await store.provider.fetch(ref, signal());
        assert.equal(again.version, first.version, 'the version changed while the value did not');
        if (store.provider.currentVersion)
          assert.equal(await probe(store.provider, ref), first.version, 'probe and fetch disagree');
        await store.put(name, 'v2');
        const second = await store.provider.fetch(ref, signal());
        assert.equal(text(store, name, second), 'v2');
        assert.notEqual(second.version, first.version, 'the value changed and the version did not');
        if (store.provider.currentVersion)
          assert.equal(await probe(store.provider, ref), second.version, 'probe and fetch disagree');
      }),
    );

    it(
      "a missing secret is a SecretNotFoundError naming the reference (the store's explicit not-found)",
      withStore(async (store) => {
        const ref = store.ref(unique());
        const error = await rejection(store.provider.fetch(ref, signal()));
        assert.ok(
          error instanceof SecretNotFoundError,
          `expected SecretNotFoundError, got ${summary(error)}`,
        );
        assert.ok(error.message.includes(ref.id), `the error does not name ${ref.id}: ${error.message}`);
      }),
    );

    when(
      can(caps.deny, 'the subject does not declare that its store can be made to deny'),
      'a denied read is a FetchError, never "not found"',
      async (store) => {
        const ref = await (store.denied as () => Promise<SecretRef>)();
        const error = await rejection(ref.provider.fetch(ref, signal()));
        assert.ok(!(error instanceof SecretNotFoundError), 'a denied read was reported as not found');
        assert.ok(error instanceof FetchError, `expected FetchError, got ${summary(error)}`);
      },
    );

    when(
      can(caps.unreachable, 'the subject does not declare an unreachable store'),
      'an unreachable store is a FetchError, never "not found"',
      async (store) => {
        const ref = await (store.unreachable as () => Promise<SecretRef>)();
        const error = await rejection(ref.provider.fetch(ref, signal()));
        assert.ok(error instanceof FetchError, `expected FetchError, got ${summary(error)}`);
        await ref.provider.close?.();
      },
    );

    when(
      can(caps.abort, 'the subject does not declare that the provider honours its signal'),
      'a signal already aborted: fetch rejects (never with a value, never "not found")',
      async (store) => {
        const name = unique();
        await store.put(name, 'value');
        const controller = new AbortController();
        controller.abort(new Error('aborted by the conformance suite'));
        const error = await rejection(store.provider.fetch(store.ref(name), controller.signal));
        assert.ok(!(error instanceof SecretNotFoundError), 'an abort was reported as not found');
      },
    );

    when(
      can(caps.binary, 'the subject does not declare binary values'),
      'binary values round-trip byte for byte',
      async (store) => {
        const name = unique();
        const bytes = new Uint8Array([0, 1, 2, 127, 128, 250, 255, 0x0a, 0x0d]);
        await store.put(name, bytes);
        const result = await store.provider.fetch(store.ref(name, { encoding: 'binary' }), signal());
        const value = transformValue(store.ref(name, { encoding: 'binary' }), result.value);
        assert.deepEqual([...(value as Uint8Array)], [...bytes]);
      },
    );

    when(
      can(caps.batch, 'the subject does not declare batch fetching'),
      'fetchMany returns what fetch returns, in order, and reports the missing ones',
      async (store) => {
        const [a, b] = [unique(), unique()];
        await store.put(a, 'batch a');
        await store.put(b, 'batch b');
        const refs = [store.ref(a), store.ref(unique()), store.ref(b)];
        const batch = await (store.provider.fetchMany as NonNullable<Provider['fetchMany']>)(refs, signal());
        assert.equal(batch.length, 3);
        const [first, missing, last] = batch;
        assert.ok(!(first instanceof Error) && first, `first: ${summary(first)}`);
        assert.ok(!(last instanceof Error) && last, `last: ${summary(last)}`);
        assert.ok(missing instanceof SecretNotFoundError, `missing: ${summary(missing)}`);
        assert.equal(text(store, a, first), 'batch a');
        assert.equal(text(store, b, last), 'batch b');
        for (const [index, name] of [a, b].entries()) {
          const single = await store.provider.fetch(store.ref(name), signal());
          assert.equal(
            single.version,
            (index === 0 ? first : last).version,
            'batch and fetch versions differ',
          );
        }
      },
    );

    when(
      can(caps.watch, 'the subject does not declare watch'),
      'watch pushes a change, and stops after unsubscribe',
      async (store) => {
        const name = unique();
        await store.put(name, 'before');
        const ref = store.ref(name);
        await store.provider.fetch(ref, signal());
        const watch = store.provider.watch as NonNullable<Provider['watch']>;
        const stopped: SecretRef[] = [];
        const witness = pushes();
        const stop = watch.call(store.provider, [ref], (changed) => stopped.push(changed));
        const stopWitness = watch.call(store.provider, [ref], witness.onChange);
        try {
          stop();
          const within = caps.watchWithinMs ?? 10_000;
          // Changes until the witness sees one: a watcher may need a moment to arm (fs.watch) first.
          await witness.until(1, within, () => store.put(name, `after ${witness.count}`));
          assert.equal(witness.seen[0]?.id, ref.id, 'the push named another reference');
          // A second change the witness sees: the stopped watcher had time for both and saw none.
          const seen = witness.count;
          await witness.until(seen + 1, within, () => store.put(name, `again ${witness.count}`));
          assert.equal(stopped.length, 0, 'a watcher was notified after its unsubscribe');
        } finally {
          stopWitness();
        }
      },
    );

    it(
      'close(), where offered, resolves and can be called twice',
      withStore(async (store) => {
        await within(store.provider.close?.(), CLOSE_WITHIN_MS, 'close()');
        await within(store.provider.close?.(), CLOSE_WITHIN_MS, 'a second close()');
      }),
    );

    when(
      can(caps.closeEndsFetch, 'the subject does not declare that close() ends fetching'),
      'fetch after close() rejects with ClosedError',
      async (store) => {
        const name = unique();
        await store.put(name, 'value');
        await store.provider.close?.();
        const error = await rejection(store.provider.fetch(store.ref(name), signal()));
        assert.ok(error instanceof ClosedError, `expected ClosedError, got ${summary(error)}`);
        assert.equal(error.code, 'CLOSED');
      },
    );

    it(
      "errors and the provider itself never show a secret's value (inspect with showHidden, JSON)",
      withStore(async (store) => {
        const name = unique();
        await store.put(name, CANARY);
        const ref = store.ref(name);
        const fetched = await store.provider.fetch(ref, signal());
        assert.equal(text(store, name, fetched), CANARY);
        const errors: unknown[] = [await rejection(store.provider.fetch(store.ref(unique()), signal()))];
        if (store.provider.fetchMany)
          errors.push(...(await store.provider.fetchMany([store.ref(unique())], signal())));
        if (caps.abort === true) {
          const controller = new AbortController();
          controller.abort();
          errors.push(await rejection(store.provider.fetch(ref, controller.signal)));
        }
        if (store.provider.close && caps.closeEndsFetch === true) {
          await store.provider.close();
          errors.push(await rejection(store.provider.fetch(ref, signal())));
        }
        for (const error of errors) {
          assert.ok(
            error instanceof TlsSecretsError,
            `a provider error is not a TlsSecretsError: ${summary(error)}`,
          );
          const shown = `${inspect(error, { showHidden: true, depth: Number.POSITIVE_INFINITY })}${JSON.stringify(error)}`;
          assert.ok(!shown.includes(CANARY), `an error shows the secret: ${error.name}`);
        }
        const view = `${inspect(store.provider, { showHidden: true, depth: 8 })}${JSON.stringify(store.provider) ?? ''}`;
        assert.ok(!view.includes(CANARY), 'inspecting or serialising the provider shows a secret');
      }),
    );
  });
}

async function probe(provider: Provider, ref: SecretRef): Promise<string | undefined> {
  const answer = await provider.currentVersion?.(ref, new AbortController().signal);
  return typeof answer === 'object' ? answer.version : answer;
}

/** The rejection of `promise`; a fulfilment fails the case. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  let value: unknown;
  try {
    value = await promise;
  } catch (error) {
    assert.ok(error instanceof Error, `rejected with a non-Error: ${typeof error}`);
    return error;
  }
  assert.fail(`expected a rejection, got a result (${value === undefined ? 'undefined' : typeof value})`);
}

function summary(value: unknown): string {
  return value instanceof Error ? `${value.name}: ${value.message}` : typeof value;
}

/** The value as the resolver would hand it to a text field. */
function text(store: ConformanceStore, name: string, result: FetchResult | Error | undefined): string {
  if (result === undefined || result instanceof Error) throw new Error(`no value for ${name}`);
  return transformValue(store.ref(name), result.value as RawSecret).toString();
}

/** Collects pushes; `until` makes changes until `count` pushes arrived, or fails after `withinMs`. */
function pushes() {
  const seen: SecretRef[] = [];
  let wake: (() => void) | undefined;
  return {
    seen,
    get count() {
      return seen.length;
    },
    onChange(ref: SecretRef) {
      seen.push(ref);
      wake?.();
    },
    async until(count: number, withinMs: number, change: () => Promise<void>): Promise<void> {
      const deadline = Date.now() + withinMs;
      // Each wait is one push or a growing interval (a change made before the watcher was armed is lost).
      for (let wait = 50; seen.length < count; wait = Math.min(wait * 2, 1_000)) {
        assert.ok(Date.now() < deadline, `no push within ${withinMs} ms of a change`);
        await change();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, wait);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = undefined;
      }
    },
  };
}
