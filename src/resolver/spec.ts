/**
 * The spec and options, checked once at creation: which positions (slots) of ConnectionOptions each source
 * fills, and the resolver's options with their defaults. Misconfiguration fails here, not at a handshake.
 */
import { createSecureContext, type TlsOptions } from 'node:tls';
import { ConfigurationError, safeCause } from '../errors.js';
import { isSecretRef } from '../provider.js';
import { didYouMean } from '../suggest.js';
import {
  type KeySource,
  type PfxSource,
  type ResolverOptions,
  SECRET_FIELDS,
  type SecretField,
  type Source,
  type TlsSecretsSpec,
} from '../types.js';

/**
 * Every resolver option, its kind and its default: the one table `checkOptions` and the config layer both
 * read. Adding an option is one line here (and its documented field in ResolverOptions, which `satisfies`
 * keeps in step).
 */
export const RESOLVER_OPTIONS = {
  refreshIntervalMs: { kind: 'positiveMs', default: 300_000 },
  jitter: { kind: 'fraction', default: 0.1 },
  refreshAhead: { kind: 'openFraction', default: 2 / 3 },
  retryInitialDelayMs: { kind: 'positiveMs', default: 1_000 },
  retryMaxDelayMs: { kind: 'positiveMs', default: 60_000 },
  maxStaleMs: { kind: 'nonNegativeMs', default: 0 },
  fetchTimeoutMs: { kind: 'positiveMs', default: 10_000 },
  startBudgetMs: { kind: 'nonNegativeMs', default: 30_000 },
  debounceMs: { kind: 'nonNegativeMs', default: 50 },
  verifyChain: { kind: 'boolean', default: false },
} as const satisfies Record<keyof ResolverOptions, OptionSpec>;

export type OptionKind = 'positiveMs' | 'nonNegativeMs' | 'fraction' | 'openFraction' | 'boolean';

export interface OptionSpec {
  readonly kind: OptionKind;
  readonly default: number | boolean;
}

/** What a value of each kind must be, as `checkOptions` says it. */
const OPTION_KINDS: Record<OptionKind, { type: 'number' | 'boolean'; ok(v: number): boolean; must: string }> =
  {
    positiveMs: {
      type: 'number',
      ok: (v) => Number.isFinite(v) && v > 0,
      must: 'a positive number of milliseconds',
    },
    nonNegativeMs: {
      type: 'number',
      ok: (v) => Number.isFinite(v) && v >= 0,
      must: 'a number of milliseconds, 0 or more',
    },
    fraction: { type: 'number', ok: (v) => v >= 0 && v <= 1, must: 'within 0..1' },
    openFraction: { type: 'number', ok: (v) => v > 0 && v < 1, must: 'a fraction between 0 and 1' },
    boolean: { type: 'boolean', ok: () => true, must: 'true or false' },
  };

/** The JSON type of each option, for the config layer's validator. */
export function optionType(name: keyof ResolverOptions): 'number' | 'boolean' {
  return OPTION_KINDS[RESOLVER_OPTIONS[name].kind].type;
}

export const DEFAULTS = Object.fromEntries(
  Object.entries(RESOLVER_OPTIONS).map(([name, option]) => [name, option.default]),
) as unknown as Required<ResolverOptions>;

/**
 * The spec's keys that are not secret fields: every option of ConnectionOptions and the server's TlsOptions
 * (a spec serves servers too), passed through as written. `satisfies` keeps the list equal to Node's types.
 */
const PASS_THROUGH_KEYS = {
  host: true,
  port: true,
  path: true,
  socket: true,
  checkServerIdentity: true,
  servername: true,
  session: true,
  minDHSize: true,
  lookup: true,
  timeout: true,
  pskCallback: true,
  ALPNCallback: true,
  allowPartialTrustChain: true,
  sigalgs: true,
  ciphers: true,
  clientCertEngine: true,
  ecdhCurve: true,
  honorCipherOrder: true,
  privateKeyEngine: true,
  privateKeyIdentifier: true,
  maxVersion: true,
  minVersion: true,
  secureOptions: true,
  secureProtocol: true,
  sessionIdContext: true,
  sessionTimeout: true,
  enableTrace: true,
  requestCert: true,
  ALPNProtocols: true,
  SNICallback: true,
  rejectUnauthorized: true,
  pskIdentity: true,
  handshakeTimeout: true,
  pskIdentityHint: true,
  allowHalfOpen: true,
  pauseOnConnect: true,
  noDelay: true,
  keepAlive: true,
  keepAliveInitialDelay: true,
  highWaterMark: true,
  blockList: true,
} as const satisfies Record<
  Exclude<keyof TlsSecretsSpec | keyof TlsOptions, SecretField | 'psk' | 'secureContext'>,
  true
>;

/**
 * What tls.connect hands on to net.connect (and requestOCSP to the handshake): Node's ConnectionOptions
 * type does not list them, tls.connect takes them, and refusing them broke a working client.
 */
const SOCKET_KEYS = [
  'requestOCSP',
  'family',
  'localAddress',
  'localPort',
  'autoSelectFamily',
  'autoSelectFamilyAttemptTimeout',
  'signal',
  'hints',
  'onread',
] as const;

/** Every key a spec may have: the secret fields, `psk`, and the pass-through options. */
export const SPEC_KEYS: ReadonlySet<string> = new Set([
  ...SECRET_FIELDS,
  'psk',
  ...Object.keys(PASS_THROUGH_KEYS),
  ...SOCKET_KEYS,
]);

/**
 * Pass-through options that shape the SecureContext: each is tried on its own at creation, so a wrong one
 * (`minVersion: 'TLSv9'`, unknown `ciphers`) is a ConfigurationError naming it, not a refused bundle.
 */
const CONTEXT_OPTIONS = [
  'ciphers',
  'sigalgs',
  'ecdhCurve',
  'minVersion',
  'maxVersion',
  'secureOptions',
  'secureProtocol',
  'honorCipherOrder',
  'sessionIdContext',
  'sessionTimeout',
] as const;

/** Refuses unknown spec keys (a JavaScript caller has no types to catch a typo) and bad context options. */
export function checkSpecKeys(spec: TlsSecretsSpec): void {
  for (const key of Object.keys(spec)) {
    if (key === 'secureContext') {
      throw new ConfigurationError('spec.secureContext is built by the resolver, not given', { field: key });
    }
    if (!SPEC_KEYS.has(key)) {
      throw new ConfigurationError(`spec has an unknown key "${key}"${didYouMean(key, SPEC_KEYS)}`, {
        field: key,
      });
    }
  }
  const options = spec as Record<string, unknown>;
  for (const name of CONTEXT_OPTIONS) {
    if (options[name] === undefined) continue;
    try {
      createSecureContext({ [name]: options[name] });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      throw new ConfigurationError(
        `option ${name} is not accepted by Node's TLS${typeof code === 'string' ? ` (${code})` : ''}`,
        { field: name, cause: safeCause(err) },
      );
    }
  }
}

/** A position in the spec that one source fills. */
export interface Slot {
  readonly path: string;
  readonly source: Source;
  /** Byte-valued fields default to raw bytes; text fields to UTF-8. */
  readonly binary: boolean;
}

export interface Shape {
  key: { pem: Slot; passphrase?: Slot }[];
  cert: Slot[];
  ca: Slot[];
  crl: Slot[];
  pfx: { pem: Slot; passphrase?: Slot }[];
  passphrase?: Slot;
  ticketKeys?: Slot;
  dhparam?: Slot;
  psk: { identity: string; slot: Slot }[];
}

function isKeySource(value: unknown): value is KeySource {
  return typeof value === 'object' && value !== null && !isSecretRef(value) && 'pem' in value;
}

function isPfxSource(value: unknown): value is PfxSource {
  return typeof value === 'object' && value !== null && !isSecretRef(value) && 'buf' in value;
}

function isLiteral(value: unknown): value is string | Buffer {
  return typeof value === 'string' || Buffer.isBuffer(value);
}

function checkSource(value: unknown, path: string): Source {
  if (isSecretRef(value) || isLiteral(value)) return value;
  throw new ConfigurationError('expected a secret reference, a string or a Buffer', { field: path });
}

function listOf<T>(value: T | readonly T[] | undefined): readonly T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

function indexed(field: string, index: number, count: number): string {
  return count > 1 ? `${field}[${index}]` : field;
}

export function parseSpec(spec: TlsSecretsSpec): Shape {
  if (typeof spec !== 'object' || spec === null) throw new ConfigurationError('spec must be an object');
  const slot = (path: string, value: unknown, binary = false): Slot => ({
    path,
    source: checkSource(value, path),
    binary,
  });
  const plain = (field: 'cert' | 'ca' | 'crl') => {
    const items = listOf(spec[field]);
    return items.map((value, i) => slot(indexed(field, i, items.length), value));
  };
  const withPassphrase = (field: 'key' | 'pfx', items: readonly unknown[]) =>
    items.map((value, i) => {
      const path = indexed(field, i, items.length);
      if (field === 'key' ? isKeySource(value) : isPfxSource(value)) {
        const object = value as { pem?: unknown; buf?: unknown; passphrase?: unknown };
        return {
          pem: slot(path, field === 'key' ? object.pem : object.buf, field === 'pfx'),
          ...(object.passphrase === undefined
            ? {}
            : { passphrase: slot(`${path}.passphrase`, object.passphrase) }),
        };
      }
      return { pem: slot(path, value, field === 'pfx') };
    });
  return {
    key: withPassphrase('key', listOf(spec.key)),
    cert: plain('cert'),
    ca: plain('ca'),
    crl: plain('crl'),
    pfx: withPassphrase('pfx', listOf(spec.pfx)),
    ...(spec.passphrase === undefined ? {} : { passphrase: slot('passphrase', spec.passphrase) }),
    ...(spec.ticketKeys === undefined ? {} : { ticketKeys: slot('ticketKeys', spec.ticketKeys, true) }),
    ...(spec.dhparam === undefined ? {} : { dhparam: slot('dhparam', spec.dhparam) }),
    psk: parsePsk(spec, slot),
  };
}

function parsePsk(spec: TlsSecretsSpec, slot: (path: string, value: unknown, binary?: boolean) => Slot) {
  if (spec.psk === undefined) {
    if (spec.pskIdentity !== undefined) throw new ConfigurationError('pskIdentity is given without psk');
    return [];
  }
  if (typeof spec.psk !== 'object' || spec.psk === null) {
    throw new ConfigurationError('psk must map identities to keys', { field: 'psk' });
  }
  const entries = Object.entries(spec.psk).map(([identity, value]) => ({
    identity,
    slot: slot(`psk[${identity}]`, value, true),
  }));
  if (entries.length === 0) throw new ConfigurationError('psk names no identity', { field: 'psk' });
  if (spec.pskIdentity !== undefined && !Object.hasOwn(spec.psk, spec.pskIdentity)) {
    throw new ConfigurationError(`pskIdentity "${spec.pskIdentity}" is not an identity in psk`, {
      field: 'pskIdentity',
    });
  }
  return entries;
}

export function allSlots(shape: Shape): Slot[] {
  const slots: Slot[] = [];
  for (const entry of [...shape.key, ...shape.pfx]) {
    slots.push(entry.pem);
    if (entry.passphrase) slots.push(entry.passphrase);
  }
  slots.push(...shape.cert, ...shape.ca, ...shape.crl);
  for (const single of [shape.passphrase, shape.ticketKeys, shape.dhparam]) if (single) slots.push(single);
  for (const { slot } of shape.psk) slots.push(slot);
  return slots;
}

/** Durations were renamed to say their unit (0.1 → 0.2); the old names would otherwise be ignored silently. */
const RENAMED_OPTIONS: Readonly<Record<string, string>> = {
  refreshInterval: 'refreshIntervalMs',
  retryInitialDelay: 'retryInitialDelayMs',
  retryMaxDelay: 'retryMaxDelayMs',
  maxStale: 'maxStaleMs',
  fetchTimeout: 'fetchTimeoutMs',
  debounce: 'debounceMs',
};

export function checkOptions(options: ResolverOptions): Required<ResolverOptions> {
  if (typeof options !== 'object' || options === null)
    throw new ConfigurationError('options must be an object');
  for (const [name, value] of Object.entries(options)) {
    const renamed = Object.hasOwn(RENAMED_OPTIONS, name) ? RENAMED_OPTIONS[name] : undefined;
    if (renamed) throw new ConfigurationError(`option ${name} is now ${renamed} (milliseconds)`);
    if (!Object.hasOwn(RESOLVER_OPTIONS, name)) {
      throw new ConfigurationError(
        `unknown option "${name}"${didYouMean(name, Object.keys(RESOLVER_OPTIONS))}`,
      );
    }
    if (value === undefined) continue;
    const kind = OPTION_KINDS[RESOLVER_OPTIONS[name as keyof ResolverOptions].kind];
    if (typeof value !== kind.type || (kind.type === 'number' && !kind.ok(value as number))) {
      // A number is shown (no option is a secret); anything else by its type only.
      const got = typeof value === 'number' ? String(value) : value === null ? 'null' : typeof value;
      throw new ConfigurationError(`option ${name} must be ${kind.must}, got ${got}`);
    }
  }
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  return { ...DEFAULTS, ...defined };
}
