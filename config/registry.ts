/**
 * Provider adapters by `type`: the built-in ones are imported lazily on first use (a config naming only
 * `file` loads neither Vault nor AWS code), third-party ones are registered. The registry lives on
 * globalThis under a symbol: the ESM and CommonJS builds (and an adapter module loaded through either) share
 * one, as the CLI's `--adapter` needs.
 */
import { ConfigurationError } from '../src/errors.js';
import type { Provider } from '../src/provider.js';
import { didYouMean } from '../src/suggest.js';
import type { ProviderAdapter } from './adapter.js';

/** What the registry holds: an adapter with its option and provider types erased. */
export type AnyAdapter = ProviderAdapter<Record<string, unknown>, Provider>;

const BUILT_IN: Readonly<Record<string, () => Promise<AnyAdapter>>> = {
  memory: async () => erase((await import('../providers/memory.config.js')).memoryAdapter),
  env: async () => erase((await import('../providers/env.config.js')).envAdapter),
  file: async () => erase((await import('../providers/file.config.js')).fileAdapter),
  'aws-secrets-manager': async () =>
    erase((await import('../providers/aws-secrets-manager.config.js')).awsSecretsManagerAdapter),
  'aws-ssm': async () => erase((await import('../providers/aws-ssm.config.js')).awsSsmAdapter),
  vault: async () => erase((await import('../providers/vault/config.js')).vaultAdapter),
};

export const BUILT_IN_TYPES: readonly string[] = Object.keys(BUILT_IN);

function erase<O, P extends Provider>(adapter: ProviderAdapter<O, P>): AnyAdapter {
  return adapter as unknown as AnyAdapter;
}

const REGISTRY = Symbol.for('tls-secrets.config.adapters');
const store = globalThis as { [REGISTRY]?: Map<string, AnyAdapter> };
store[REGISTRY] ??= new Map();
const registered = store[REGISTRY];

/**
 * Makes `type` usable in config files (and the CLI): a provider that is not built in. A built-in type
 * cannot be replaced, and a type is registered once (the same adapter object again is accepted).
 */
export function registerProviderAdapter<O, P extends Provider>(adapter: ProviderAdapter<O, P>): void {
  const { type } = adapter as { type: unknown };
  if (typeof type !== 'string' || !/^[a-z0-9][a-z0-9_.-]*$/i.test(type)) {
    throw new ConfigurationError('a provider adapter needs a type of letters, digits, _ . -');
  }
  for (const member of ['create', 'ref'] as const) {
    if (typeof adapter[member] !== 'function') {
      throw new ConfigurationError(`provider adapter ${type} needs a ${member}() function`);
    }
  }
  if (Object.hasOwn(BUILT_IN, type)) throw new ConfigurationError(`provider type ${type} is built in`);
  const known = registered.get(type);
  if (known && known !== erase(adapter))
    throw new ConfigurationError(`provider type ${type} is already registered`);
  registered.set(type, erase(adapter));
}

/** The adapter for `type`, or a ConfigurationError listing the known types. */
export async function adapterFor(type: string, extra: readonly AnyAdapter[] = []): Promise<AnyAdapter> {
  const own = extra.find((adapter) => adapter.type === type) ?? registered.get(type);
  if (own) return own;
  const load = Object.hasOwn(BUILT_IN, type) ? BUILT_IN[type] : undefined;
  if (load) return load();
  const known = [...BUILT_IN_TYPES, ...registered.keys(), ...extra.map((adapter) => adapter.type)];
  throw new ConfigurationError(`expected one of ${known.join(', ')}${didYouMean(type, known)}`);
}
