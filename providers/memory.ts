/**
 * In-memory store: for tests, demos and values computed at run time. `set` pushes the change to resolvers.
 */
import { contentVersion } from '../src/content-version.js';
import { SecretNotFoundError } from '../src/errors.js';
import {
  createRef,
  describeRef,
  type Provider,
  type RawSecret,
  type RefOptions,
  type SecretRef,
} from '../src/provider.js';
import { redactProvider } from '../src/redact.js';

export interface MemoryProvider extends Provider {
  /** A reference to `key`; the key need not exist yet (a missing key fails at resolve time). */
  ref(key: string, options?: RefOptions): SecretRef;
  /** Stores a value and notifies watching resolvers. */
  set(key: string, value: RawSecret): void;
  delete(key: string): void;
  currentVersion: NonNullable<Provider['currentVersion']>;
  watch: NonNullable<Provider['watch']>;
  close: NonNullable<Provider['close']>;
}

export interface MemoryOptions {
  /** Provider name shown in errors and status. Default `memory`. */
  name?: string;
}

interface Entry {
  value: RawSecret;
  version: string;
}

export function memory(initial: Record<string, RawSecret> = {}, options: MemoryOptions = {}): MemoryProvider {
  const entries = new Map<string, Entry>();
  const listeners = new Set<{ ids: ReadonlySet<string>; onChange: (id: string) => void }>();
  let counter = 0;

  const put = (key: string, value: RawSecret) => {
    counter += 1;
    entries.set(key, { value, version: `${counter}:${contentVersion(value)}` });
  };
  for (const [key, value] of Object.entries(initial)) put(key, value);

  const notify = (key: string) => {
    for (const listener of listeners) if (listener.ids.has(key)) listener.onChange(key);
  };

  const provider: MemoryProvider = {
    name: options.name ?? 'memory',
    ref: (key, refOptions) => createRef(provider, key, refOptions),
    async fetch(ref) {
      const entry = entries.get(ref.id);
      if (!entry)
        throw new SecretNotFoundError('secret not found', { ref: describeRef(ref), provider: provider.name });
      return { value: entry.value, version: entry.version };
    },
    async currentVersion(ref) {
      return entries.get(ref.id)?.version;
    },
    watch(refs, onChange) {
      const byId = new Map(refs.map((ref) => [ref.id, ref]));
      const listener = {
        ids: new Set(byId.keys()),
        onChange: (id: string) => {
          const ref = byId.get(id);
          if (ref) onChange(ref);
        },
      };
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    set(key, value) {
      put(key, value);
      notify(key);
    },
    delete(key) {
      entries.delete(key);
      notify(key);
    },
    async close() {
      listeners.clear();
    },
  };
  // The store holds secret values: show how many keys only.
  return redactProvider(provider, 'MemoryProvider', () => ({ keys: entries.size }));
}
