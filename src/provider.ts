/**
 * The Provider contract: providers do I/O only. Caching, single-flight, refresh scheduling, transforms
 * (jsonKey, encoding, PEM splitting), validation and error wrapping live once, in the resolver.
 */

/** A secret value as a store returns it. Objects are structured secrets (JSON/KV maps) picked by `jsonKey`. */
export type RawSecret = string | Uint8Array | Readonly<Record<string, unknown>>;

export interface FetchResult {
  readonly value: RawSecret;
  /** Store version (KV version, VersionId, content hash). Changes whenever the value changes. */
  readonly version?: string;
  /** When the store says the value stops being valid (lease end, PKI expiration): refresh ahead of it. */
  readonly expiresAt?: Date;
}

/** A version probe's answer, for stores that also know when the next change is due. */
export interface VersionProbe {
  readonly version: string | undefined;
  /** The store's next scheduled change (a rotation date): the resolver checks again just after it. */
  readonly changesAt?: Date;
}

/** Options every reference accepts; the resolver applies them after the fetch. */
export interface RefOptions {
  /** How bytes become the value: `utf8` text (default), `base64` text decoded to bytes, or raw `binary`. */
  readonly encoding?: 'utf8' | 'base64' | 'binary';
  /** Pick this field from a JSON or key/value secret. */
  readonly jsonKey?: string;
}

/** A pointer into one store. `id` is the unit of fetching: references with the same id share one fetch. */
export interface SecretRef {
  readonly provider: Provider;
  readonly id: string;
  readonly options: RefOptions;
}

export interface Provider {
  readonly name: string;
  fetch(ref: SecretRef, signal: AbortSignal): Promise<FetchResult>;
  /** Batch fetch; results in the order of `refs`, an Error where one reference failed. */
  fetchMany?(refs: readonly SecretRef[], signal: AbortSignal): Promise<(FetchResult | Error)[]>;
  /** Cheap version probe; the resolver fetches only when it differs from the cached version. */
  currentVersion?(ref: SecretRef, signal: AbortSignal): Promise<string | VersionProbe | undefined>;
  /** Push notifications: call `onChange` when a reference may have changed. Returns the unsubscribe. */
  watch?(refs: readonly SecretRef[], onChange: (ref: SecretRef) => void): () => void;
  close?(): Promise<void>;
}

/** Builds a reference whose description names store and id, never a value. */
export function createRef(provider: Provider, id: string, options: RefOptions = {}): SecretRef {
  return Object.freeze({ provider, id, options: Object.freeze({ ...options }) });
}

export function isSecretRef(value: unknown): value is SecretRef {
  return (
    typeof value === 'object' &&
    value !== null &&
    'provider' in value &&
    'id' in value &&
    typeof (value as SecretRef).provider?.fetch === 'function'
  );
}

/** How a reference is named in errors, events and status: `<provider>:<id>[#jsonKey]`. */
export function describeRef(ref: SecretRef): string {
  return `${ref.provider.name}:${ref.id}${ref.options.jsonKey ? `#${ref.options.jsonKey}` : ''}`;
}
