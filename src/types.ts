import type { ConnectionOptions, SecureContext } from 'node:tls';
import type { TlsSecretsError } from './errors.js';
import type { SecretRef } from './provider.js';

/** A field's value: a reference into a store, or a literal. */
export type Source<Literal = string | Buffer> = SecretRef | Literal;

export interface KeySource {
  readonly pem: Source;
  readonly passphrase?: Source<string>;
}

export interface PfxSource {
  readonly buf: Source;
  readonly passphrase?: Source<string>;
}

/** The ConnectionOptions fields that carry secrets, which the resolver fills. */
export const SECRET_FIELDS = [
  'key',
  'cert',
  'ca',
  'crl',
  'passphrase',
  'pfx',
  'ticketKeys',
  'dhparam',
] as const;
export type SecretField = (typeof SECRET_FIELDS)[number];

type OneOrMany<T> = T | readonly T[];

/** ConnectionOptions with secret fields taken from sources; every other option passes through unchanged. */
export interface TlsSecretsSpec extends Omit<ConnectionOptions, SecretField | 'secureContext'> {
  key?: OneOrMany<Source | KeySource>;
  cert?: OneOrMany<Source>;
  ca?: OneOrMany<Source>;
  crl?: OneOrMany<Source>;
  passphrase?: Source<string>;
  pfx?: OneOrMany<Source | PfxSource>;
  ticketKeys?: Source<Buffer>;
  dhparam?: Source;
  /**
   * Pre-shared keys by identity. The resolver builds the client `pskCallback` (offering `pskIdentity`) and
   * the server's (see `Resolver.serverPskCallback`). Keys are bytes: `binary` or `base64` references.
   */
  psk?: Readonly<Record<string, Source<Buffer | string>>>;
  /** The identity a client offers. Default: the only identity in `psk`. */
  pskIdentity?: string;
}

export interface ResolverOptions {
  /** Milliseconds between checks of every source. Default 300_000 (5 min). Jittered by `jitter`. */
  refreshIntervalMs?: number;
  /** Fraction of randomness applied to every scheduled delay, 0..1. Default 0.1. */
  jitter?: number;
  /**
   * Refresh when this fraction of a certificate's or lease's lifetime has passed, less up to `jitter` of it
   * (drawn once per lifetime, so a fleet started together does not renew together). The lifetime counts
   * from `max(notBefore, fetchedAt)` (Vault's PKI backdates notBefore by 30 s). Default 2/3.
   */
  refreshAhead?: number;
  /**
   * First retry delay after a failed refresh, doubled each time; every path to the store waits for it.
   * Also the shortest wait between checks past a refresh point. Default 1_000 ms.
   */
  retryInitialDelayMs?: number;
  /** Cap on the retry delay. Default 60_000 ms. */
  retryMaxDelayMs?: number;
  /** How long past the certificate's notAfter the last good bundle may still be served. Default 0. */
  maxStaleMs?: number;
  /** Abort a store fetch after this many milliseconds. Default 10_000. */
  fetchTimeoutMs?: number;
  /**
   * How long a cold `resolve()` keeps trying while the store fails transiently (throttling, 5xx, timeouts,
   * unreachable), on the backoff's steps, before it rejects with the last error. Permanent errors (not
   * found, denied, invalid material, configuration) reject at once. 0 rejects at the first failure.
   * Default 30_000 ms: three full `fetchTimeoutMs` of a hung store, or four or five backoff steps.
   */
  startBudgetMs?: number;
  /** Coalesce pushed changes arriving within this window into one refresh. Default 50 ms. */
  debounceMs?: number;
  /** Also require every leaf certificate to be signed by a certificate in `ca` or its own chain. Default false. */
  verifyChain?: boolean;
}

/**
 * What a dated entry of the bundle is: a presented certificate (`leaf`, or an `intermediate` of its chain), a
 * CA entry (`authority`), or a CRL (`crl`: `notBefore`/`notAfter` are its thisUpdate/nextUpdate, `subject` its
 * issuer, `serialNumber` its CRL number when it has one).
 */
export type DeadlineKind = 'leaf' | 'intermediate' | 'authority' | 'crl';

/** The role a resolver's material is used in: its certificates need the matching (extended) key usage. */
export type Role = 'server' | 'client';

export interface CertificateInfo {
  /** Absent on records made before kinds existed: read as `leaf`. */
  readonly kind?: DeadlineKind;
  readonly field: string;
  readonly ref: string;
  readonly subject: string;
  readonly serialNumber: string;
  readonly fingerprint256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface RotateEvent {
  readonly generation: number;
  /** Paths of fields whose value changed, e.g. `cert`, `key[0]`, `ca[2]`. */
  readonly changed: readonly string[];
  /** Version per field path, where the store reports one. */
  readonly versions: Readonly<Record<string, string | undefined>>;
  /**
   * Presented certificates (from `cert` and `pfx`): leaves (`cert`, `cert[1]`) and the intermediates of their
   * chains (`cert#1`, kind `intermediate`), CA entries OpenSSL sends to complete a leaf-only chain among them
   * (`ca#1`, kind `intermediate`). Their notAfter drives refresh-ahead and expiry.
   */
  readonly certificates: readonly CertificateInfo[];
  /**
   * CA entries (`ca`, one per certificate, e.g. `ca#1`): reported for monitoring, not enforced unless also
   * presented in a chain (then in `certificates` too).
   */
  readonly authorities: readonly CertificateInfo[];
}

export interface StaleEvent {
  readonly generation: number;
  readonly since: Date;
  /** Earliest notAfter of the bundle still being served. */
  readonly notAfter: Date | undefined;
  readonly error: TlsSecretsError;
}

/** The resolver serves a good generation again after a `stale` or `error` (a failed check or a refused bundle). */
export interface RecoveredEvent {
  /** The generation now served. */
  readonly generation: number;
  /** When the trouble began: the first failed check or refusal since the resolver last was healthy. */
  readonly since: Date;
}

export interface ExpiringEvent {
  readonly generation: number;
  /**
   * What is expiring: a leaf, an intermediate of a presented chain, a CA entry or a CRL (its nextUpdate);
   * `kind` says which.
   */
  readonly certificate: CertificateInfo;
  readonly remainingMs: number;
}

/** One call to a store, as timed by the resolver: for latency metrics. Names no secret. */
export interface StoreCallEvent {
  readonly provider: string;
  /** `fetch` of one reference, `batch` fetch of several, `probe` of a version. */
  readonly kind: 'fetch' | 'batch' | 'probe';
  readonly refs: number;
  readonly durationMs: number;
  readonly ok: boolean;
}

export interface ResolverEvents {
  rotate: [RotateEvent];
  storeCall: [StoreCallEvent];
  error: [TlsSecretsError];
  stale: [StaleEvent];
  recovered: [RecoveredEvent];
  expiring: [ExpiringEvent];
  expired: [ExpiringEvent];
}

/** One field of the SERVED generation: what is in use, not what was fetched last. */
export interface FieldStatus {
  readonly field: string;
  /** `<provider>:<id>` or `literal`. */
  readonly source: string;
  /** The store's version of the value being served. */
  readonly version: string | undefined;
  /** When the value being served was fetched. */
  readonly fetchedAt: Date | undefined;
  /** The served certificate's notAfter (for a CA bundle, its earliest entry's). */
  readonly notAfter: Date | undefined;
  /**
   * The field's last problem: its store's error, cleared by the field's next successful probe or fetch;
   * else the refusal of a candidate bundle naming the field, while that refusal is pending.
   */
  readonly lastError: { readonly code: string; readonly message: string; readonly at: Date } | undefined;
}

/** A candidate bundle refused by validation, while no good generation has been swapped in since. */
export interface RefusedStatus {
  readonly field: string;
  /** The store's version of the refused value. */
  readonly version: string | undefined;
  readonly code: string;
  readonly message: string;
  /** When it was (last) refused. */
  readonly at: Date;
}

/** See docs/resolver.md for the states and what moves the resolver between them. */
export type ResolverState = 'cold' | 'loading' | 'serving' | 'stale' | 'expired' | 'closed';

export interface ResolverStatus {
  readonly generation: number;
  readonly state: ResolverState;
  /** The last check failed or a refused candidate is pending: the served generation is kept. */
  readonly stale: boolean;
  readonly notAfter: Date | undefined;
  readonly fields: readonly FieldStatus[];
  readonly refused: RefusedStatus | undefined;
}

/** What `resolve()` returns: ConnectionOptions with the secret fields filled and a cached SecureContext. */
export type ResolvedOptions = ConnectionOptions & { secureContext: SecureContext };
