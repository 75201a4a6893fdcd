/**
 * What a provider offers the config layer: its options and reference keys (as declarative types, checked
 * with paths before anything is created), how to create it and how to build a reference from a config
 * entry. Each built-in provider has its adapter next to it (`providers/*.config.ts`); a third-party provider
 * registers its own with `registerProviderAdapter`. Providers import this file type-only.
 */
import type { Provider, SecretRef } from '../src/provider.js';
import type { Fields } from './schema.js';

export type { Fields, FieldType } from './schema.js';

export interface AdapterContext {
  /** The provider's name in the config: how references and errors call it. */
  readonly name: string;
  /** Where relative paths are resolved: the config file's directory (the cwd for a config object). */
  readonly baseDir: string;
}

/** A reference object of the config without its `provider` key, already checked against `refFields`. */
export type RefEntry = Readonly<Record<string, unknown>>;

export interface ProviderAdapter<Options = Record<string, unknown>, P extends Provider = Provider> {
  /** The `type` a config names it by, e.g. `vault`. */
  readonly type: string;
  /** The provider's options besides `type`: unknown keys and wrong types are refused with their path. */
  readonly optionFields: Fields;
  /** The keys of a reference object besides `provider`. */
  readonly refFields: Fields;
  /** Keys a reference object must have. */
  readonly refRequired?: readonly string[];
  /** Creates the provider from checked options. */
  create(options: Options, context: AdapterContext): P | Promise<P>;
  /** A reference from a checked entry; a ConfigurationError it throws is placed at the entry's path. */
  ref(provider: P, entry: RefEntry): SecretRef;
  /** How `"<name>:<text>"` reads, split at the last `#`. Default `{ id, jsonKey: key }`. */
  shorthand?(id: string, key: string | undefined): RefEntry;
  /** What resolving the entry does besides reading, said by `tls-secrets check` (e.g. issuing a certificate). */
  effect?(entry: RefEntry): string | undefined;
}
