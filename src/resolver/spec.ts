/**
 * The spec and options, checked once at creation: which positions (slots) of ConnectionOptions each source
 * fills, and the resolver's options with their defaults. Misconfiguration fails here, not at a handshake.
 */
import { ConfigurationError } from '../errors.js';
import { isSecretRef } from '../provider.js';
import type { KeySource, PfxSource, ResolverOptions, Source, TlsSecretsSpec } from '../types.js';

export const DEFAULTS = {
  refreshIntervalMs: 300_000,
  jitter: 0.1,
  refreshAhead: 2 / 3,
  retryInitialDelayMs: 1_000,
  retryMaxDelayMs: 60_000,
  maxStaleMs: 0,
  fetchTimeoutMs: 10_000,
  startBudgetMs: 30_000,
  debounceMs: 50,
  verifyChain: false,
} satisfies Required<ResolverOptions>;

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
  for (const name of Object.keys(options)) {
    const renamed = RENAMED_OPTIONS[name];
    if (renamed) throw new ConfigurationError(`option ${name} is now ${renamed} (milliseconds)`);
  }
  const merged = { ...DEFAULTS, ...options };
  const positive = ['refreshIntervalMs', 'retryInitialDelayMs', 'retryMaxDelayMs', 'fetchTimeoutMs'] as const;
  for (const name of positive) {
    if (!Number.isFinite(merged[name]) || merged[name] <= 0) {
      throw new ConfigurationError(`option ${name} must be a positive number of milliseconds`);
    }
  }
  for (const name of ['maxStaleMs', 'debounceMs', 'startBudgetMs'] as const) {
    if (!Number.isFinite(merged[name]) || merged[name] < 0)
      throw new ConfigurationError(`option ${name} must be >= 0`);
  }
  if (!(merged.jitter >= 0 && merged.jitter <= 1))
    throw new ConfigurationError('option jitter must be within 0..1');
  if (!(merged.refreshAhead > 0 && merged.refreshAhead < 1)) {
    throw new ConfigurationError('option refreshAhead must be a fraction between 0 and 1');
  }
  return merged;
}
