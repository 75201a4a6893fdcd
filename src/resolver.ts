/**
 * The resolver: fills ConnectionOptions from stores lazily, caches them as one validated generation with a
 * prebuilt SecureContext, and rotates: periodic checks, refresh-ahead of expiry, pushes from watching
 * providers. A new generation is swapped in whole or not at all; store failures keep the last good one.
 */
import { createHash } from 'node:crypto';
import { EventEmitter, setMaxListeners } from 'node:events';
import type { SecureContextOptions } from 'node:tls';
import { inspect } from 'node:util';
import {
  CertificateExpiredError,
  ConfigurationError,
  FetchError,
  ResolverClosedError,
  TlsSecretsError,
} from './errors.js';
import { describeRef, type FetchResult, isSecretRef, type Provider, type SecretRef } from './provider.js';
import { redactOptions } from './redact.js';
import { transformValue } from './transform.js';
import {
  type CertificateInfo,
  type FieldStatus,
  type KeySource,
  type PfxSource,
  type ResolvedOptions,
  type ResolverEvents,
  type ResolverOptions,
  type ResolverStatus,
  type RotateEvent,
  SECRET_FIELDS,
  type Source,
  type StoreCallEvent,
  type TlsSecretsSpec,
} from './types.js';
import {
  type Item,
  type Material,
  type ValidatedBundle,
  validateMaterial,
  type WithPassphrase,
} from './validate.js';

const DEFAULTS = {
  refreshInterval: 300_000,
  jitter: 0.1,
  refreshAhead: 2 / 3,
  retryInitialDelay: 1_000,
  retryMaxDelay: 60_000,
  maxStale: 0,
  fetchTimeout: 10_000,
  debounce: 50,
  verifyChain: false,
} satisfies Required<ResolverOptions>;

/** After a store's scheduled change (e.g. an AWS rotation date), probe at these offsets until it lands. */
const SCHEDULED_CHANGE_PROBES = [1_000, 10_000, 60_000, 300_000];

const TIMER_SLACK = 5;

/** setTimeout fires at once for delays above 2^31-1 ms; longer waits are re-armed. */
const MAX_TIMER = 2 ** 31 - 1;

/** A position in the spec that one source fills. */
interface Slot {
  readonly path: string;
  readonly source: Source;
  /** Byte-valued fields default to raw bytes; text fields to UTF-8. */
  readonly binary: boolean;
}

interface Shape {
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

/** One fetch: every reference with the same provider and id shares it. */
interface Unit {
  readonly provider: Provider;
  readonly ref: SecretRef;
  readonly paths: string[];
  result?: FetchResult;
  fetchedAt?: number;
  lastError?: TlsSecretsError;
  lastErrorAt?: number;
  /** When the store says the next change is due (epoch ms). */
  changesAt?: number;
  /** Fetch even when the version probe says unchanged (pushed change, lease or certificate ahead of expiry). */
  forceFetch: boolean;
}

interface Generation {
  readonly number: number;
  readonly options: ResolvedOptions;
  readonly resolved: Promise<ResolvedOptions>;
  readonly bundle: ValidatedBundle;
  readonly digest: string;
  readonly slotDigests: ReadonlyMap<string, string>;
  readonly versions: Readonly<Record<string, string | undefined>>;
  /** `expiring:<fingerprint>` / `expired:<fingerprint>` events already emitted for this generation. */
  readonly sent: Set<string>;
}

interface RefreshRequest {
  units: Set<Unit> | 'all';
  force: boolean;
}

export interface RefreshResult {
  readonly rotated: boolean;
  readonly generation: number;
  readonly errors: readonly TlsSecretsError[];
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

function parseSpec(spec: TlsSecretsSpec): Shape {
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

function allSlots(shape: Shape): Slot[] {
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

function checkOptions(options: ResolverOptions): Required<ResolverOptions> {
  const merged = { ...DEFAULTS, ...options };
  const positive = ['refreshInterval', 'retryInitialDelay', 'retryMaxDelay', 'fetchTimeout'] as const;
  for (const name of positive) {
    if (!Number.isFinite(merged[name]) || merged[name] <= 0) {
      throw new ConfigurationError(`option ${name} must be a positive number of milliseconds`);
    }
  }
  for (const name of ['maxStale', 'debounce'] as const) {
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

function asTlsError(err: unknown, unit: Unit): TlsSecretsError {
  const [field] = unit.paths;
  const error =
    err instanceof TlsSecretsError
      ? err
      : new FetchError(
          err instanceof Error && err.name === 'TimeoutError'
            ? 'store did not answer in time'
            : 'fetch failed',
          {
            ref: describeRef(unit.ref),
            provider: unit.provider.name,
            cause: err,
          },
        );
  return field ? error.withField(field) : error;
}

/** A field's last problem: its store's fetch error, else a refusal of the bundle that named the field. */
function lastErrorOf(
  path: string,
  unit: Unit | undefined,
  refused: { field: string; error: TlsSecretsError; at: number } | undefined,
) {
  const [error, at] =
    unit?.lastError && unit.lastErrorAt !== undefined
      ? [unit.lastError, unit.lastErrorAt]
      : refused?.field === path
        ? [refused.error, refused.at]
        : [undefined, 0];
  return error ? { code: error.code, message: error.message, at: new Date(at) } : undefined;
}

/** Rejects when the signal aborts, for providers that ignore it: a hung store must not block later refreshes. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

export class Resolver extends EventEmitter<ResolverEvents> {
  readonly #options: Required<ResolverOptions>;
  readonly #passThrough: Omit<TlsSecretsSpec, (typeof SECRET_FIELDS)[number] | 'psk'>;
  readonly #shape: Shape;
  readonly #slots: Slot[];
  readonly #units: Unit[] = [];
  readonly #unitBySlot = new Map<Slot, Unit>();
  #generation: Generation | undefined;
  #running: Promise<RefreshResult> | undefined;
  #queued: { request: RefreshRequest; promise: Promise<RefreshResult> } | undefined;
  #caCache: ReadonlyMap<string, CertificateInfo> = new Map();
  /** The jittered refresh-ahead fraction of each certificate and lease in use. */
  #aheadFractions = new Map<string, number>();
  /** The last candidate bundle refused by validation, since the generation being served. */
  #refused: { field: string; error: TlsSecretsError; at: number } | undefined;
  #failureStreak = 0;
  /** While the store fails: when the backoff allows the next attempt (epoch ms). */
  #nextRetryAt = 0;
  #staleSince: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #debounceTimer: NodeJS.Timeout | undefined;
  readonly #pushed = new Set<Unit>();
  readonly #unwatch: (() => void)[] = [];
  #watching = false;
  #closed = false;
  readonly #cycleAbort = new AbortController();
  /** The fetch deadline of each cycle in flight; cleared when its cycle ends and on close (#fetchDeadline). */
  readonly #cycleTimeouts = new Set<NodeJS.Timeout>();

  constructor(spec: TlsSecretsSpec, options: ResolverOptions = {}) {
    super();
    this.#options = checkOptions(options);
    this.#shape = parseSpec(spec);
    this.#slots = allSlots(this.#shape);
    const passThrough: Record<string, unknown> = { ...spec };
    for (const field of SECRET_FIELDS) delete passThrough[field];
    delete passThrough.psk;
    this.#passThrough = passThrough;

    const byProvider = new Map<Provider, Map<string, Unit>>();
    for (const slot of this.#slots) {
      if (!isSecretRef(slot.source)) continue;
      const ref = slot.source;
      let units = byProvider.get(ref.provider);
      if (!units) {
        units = new Map();
        byProvider.set(ref.provider, units);
      }
      let unit = units.get(ref.id);
      if (!unit) {
        unit = { provider: ref.provider, ref, paths: [], forceFetch: false };
        units.set(ref.id, unit);
        this.#units.push(unit);
      }
      unit.paths.push(slot.path);
      this.#unitBySlot.set(slot, unit);
    }
  }

  /** The current options; fetches on first use only. A warm call does no I/O and returns the same object. */
  resolve(): Promise<ResolvedOptions> {
    const generation = this.#generation;
    // The warm path allocates nothing: one settled promise per generation.
    if (generation && !this.#closed && !this.#isPastMaxStale(generation)) return generation.resolved;
    return this.#resolveSlow();
  }

  async #resolveSlow(): Promise<ResolvedOptions> {
    if (this.#closed) throw new ResolverClosedError();
    // Cold callers join the load in flight: N concurrent first calls make one fetch per reference.
    if (!this.#generation) await (this.#running ?? this.#request({ units: 'all', force: true }));
    let generation = this.#generation;
    if (!generation) throw new ResolverClosedError();
    if (this.#isPastMaxStale(generation)) {
      // The bundle is beyond use: one attempt at a fresh one before refusing, unless the store is failing
      // and its next retry is not due (callers in a loop must not defeat the backoff).
      const retryDue = this.#failureStreak === 0 || Date.now() >= this.#nextRetryAt;
      if (retryDue) await this.#request({ units: 'all', force: true }).catch(() => undefined);
      else await this.#running?.catch(() => undefined);
      generation = this.#generation ?? generation;
      const notAfter = generation.bundle.notAfter;
      if (notAfter && this.#isPastMaxStale(generation)) {
        const [cert] = generation.bundle.certificates.filter(
          (c) => c.notAfter.getTime() === notAfter.getTime(),
        );
        throw new CertificateExpiredError(notAfter, { field: cert?.field, ref: cert?.ref });
      }
    }
    return generation.options;
  }

  /**
   * A server `pskCallback` answering from the generation being served, for `tls.createServer` and other
   * servers you create (`createServer()` installs it by itself). Unknown identities are refused.
   * Undefined when the spec has no `psk`.
   */
  serverPskCallback(): ((socket: unknown, identity: string) => Buffer | null) | undefined {
    if (this.#shape.psk.length === 0) return undefined;
    return (_socket, identity) => this.#generation?.bundle.psk.get(identity) ?? null;
  }

  /** Checks every source now (version probes where the store offers them) and rotates if anything changed. */
  refresh(): Promise<RefreshResult> {
    if (this.#closed) return Promise.reject(new ResolverClosedError());
    return this.#request({ units: 'all', force: false });
  }

  /**
   * The generation being served and its options, read together (no await between them), or undefined
   * before the first resolve. Unlike `resolve()` it never fetches and never refuses an expired bundle.
   */
  current(): { readonly generation: number; readonly options: ResolvedOptions } | undefined {
    const generation = this.#generation;
    return generation && { generation: generation.number, options: generation.options };
  }

  /** The generation being served, 0 before the first resolve. */
  get generation(): number {
    return this.#generation?.number ?? 0;
  }

  status(): ResolverStatus {
    const generation = this.#generation;
    // A field's notAfter is its certificate's; for a CA bundle, the earliest of its entries (`ca#0`, `ca#1`…).
    const certs = new Map<string, CertificateInfo>();
    const bundle = generation?.bundle;
    for (const cert of [...(bundle?.certificates ?? []), ...(bundle?.authorities ?? [])]) {
      const field = cert.field.replace(/#\d+$/, '');
      const known = certs.get(field);
      if (!known || cert.notAfter < known.notAfter) certs.set(field, cert);
    }
    const fields: FieldStatus[] = this.#slots.map((slot) => {
      const unit = this.#unitBySlot.get(slot);
      return {
        field: slot.path,
        source: unit ? describeRef(slot.source as SecretRef) : 'literal',
        version: unit?.result?.version,
        fetchedAt: unit?.fetchedAt === undefined ? undefined : new Date(unit.fetchedAt),
        notAfter: certs.get(slot.path)?.notAfter,
        lastError: lastErrorOf(slot.path, unit, this.#refused),
      };
    });
    return {
      generation: this.generation,
      stale: this.#staleSince !== undefined,
      notAfter: generation?.bundle.notAfter,
      fields,
    };
  }

  /** Stops timers and watchers. Providers stay open: they may serve other resolvers. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cycleAbort.abort(new ResolverClosedError());
    for (const timer of [this.#timer, this.#expiryTimer, this.#debounceTimer, ...this.#cycleTimeouts])
      clearTimeout(timer);
    this.#cycleTimeouts.clear();
    for (const unwatch of this.#unwatch.splice(0)) unwatch();
    await this.#running?.catch(() => undefined);
  }

  [inspect.custom](): string {
    return `Resolver { generation: ${this.generation}, fields: [${this.#slots.map((s) => s.path).join(', ')}] }`;
  }

  toJSON(): ResolverStatus {
    return this.status();
  }

  /** Coalesces requests: at most one cycle runs and one waits, carrying the union of what was asked. */
  #request(request: RefreshRequest): Promise<RefreshResult> {
    if (!this.#running) return this.#start(request);
    if (this.#queued) {
      const queued = this.#queued.request;
      if (request.units === 'all' || queued.units === 'all') queued.units = 'all';
      else for (const unit of request.units) queued.units.add(unit);
      queued.force ||= request.force;
      return this.#queued.promise;
    }
    const promise = this.#running
      .catch(() => undefined)
      .then(() => {
        const next = this.#queued;
        this.#queued = undefined;
        return this.#start(next?.request ?? request);
      });
    this.#queued = { request, promise };
    return promise;
  }

  #start(request: RefreshRequest): Promise<RefreshResult> {
    const deadline = this.#fetchDeadline();
    const running = this.#cycle(request, deadline.signal).finally(() => {
      deadline.clear();
      if (this.#running === running) this.#running = undefined;
      this.#schedule();
    });
    this.#running = running;
    return running;
  }

  /**
   * A cycle's signal: aborted by close() or when the cycle outlives fetchTimeout. Not AbortSignal.timeout():
   * on Node 22+ its timer lives until it fires, so every finished cycle would leave one behind (up to
   * fetchTimeout) after close(). Each cycle has its own timer, cleared when it ends (#start) or by close().
   */
  #fetchDeadline(): { signal: AbortSignal; clear(): void } {
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')),
      Math.min(this.#options.fetchTimeout, MAX_TIMER),
    );
    // Like AbortSignal.timeout's: a pending fetch deadline alone does not keep the process alive.
    timer.unref();
    this.#cycleTimeouts.add(timer);
    return {
      signal: AbortSignal.any([this.#cycleAbort.signal, deadline.signal]),
      clear: () => {
        clearTimeout(timer);
        this.#cycleTimeouts.delete(timer);
      },
    };
  }

  async #cycle(request: RefreshRequest, signal: AbortSignal): Promise<RefreshResult> {
    if (this.#closed) throw new ResolverClosedError();
    const now = Date.now();
    const targets = request.units === 'all' ? this.#units : [...request.units];
    const errors: TlsSecretsError[] = [];
    // One abort listener per reference in flight: many references are normal, not a leak.
    setMaxListeners(0, signal);

    const toFetch = await this.#unitsToFetch(targets, request.force, signal, errors);
    const fetched = await this.#fetch(toFetch, signal);
    let changed = false;
    toFetch.forEach((unit, index) => {
      const outcome = fetched[index];
      if (outcome instanceof Error || outcome === undefined) {
        unit.lastError = asTlsError(outcome, unit);
        unit.lastErrorAt = now;
        errors.push(unit.lastError);
        return;
      }
      unit.result = outcome;
      unit.fetchedAt = now;
      unit.lastError = undefined;
      unit.lastErrorAt = undefined;
      unit.forceFetch = false;
      changed = true;
    });
    if (this.#closed) throw new ResolverClosedError();

    const current = this.#generation;
    if (!current) {
      // Cold: there is nothing to fall back on, so the caller gets the failure (and listeners hear of it).
      const [firstError] = errors;
      if (firstError) {
        for (const error of errors) this.#emitError(error);
        throw firstError;
      }
      let generation: Generation;
      try {
        generation = this.#build(1, undefined);
      } catch (error) {
        if (error instanceof TlsSecretsError) this.#emitError(error);
        throw error;
      }
      this.#swap(generation, undefined);
      this.#failureStreak = 0;
      this.#startWatching();
      return { rotated: true, generation: generation.number, errors };
    }

    let rotated = false;
    if (changed && this.#units.every((unit) => unit.result)) {
      try {
        const candidate = this.#build(current.number + 1, current);
        if (candidate.digest !== current.digest) {
          this.#swap(candidate, current);
          rotated = true;
        }
      } catch (err) {
        const error =
          err instanceof TlsSecretsError ? err : new FetchError('bundle build failed', { cause: err });
        errors.push(error);
        // A refused bundle is reported on its field until a generation is swapped in.
        if (error.field) this.#refused = { field: error.field.replace(/#\d+$/, ''), error, at: now };
      }
    }
    this.#afterCycle(errors, now);
    return { rotated, generation: this.generation, errors };
  }

  async #unitsToFetch(
    targets: Unit[],
    force: boolean,
    signal: AbortSignal,
    errors: TlsSecretsError[],
  ): Promise<Unit[]> {
    const probes = targets.map(async (unit) => {
      const probe = unit.provider.currentVersion;
      if (force || unit.forceFetch || !unit.result || !probe || unit.result.version === undefined)
        return true;
      try {
        const answer = await this.#timed(unit.provider, 'probe', 1, () =>
          abortable(probe.call(unit.provider, unit.ref, signal), signal),
        );
        const version = typeof answer === 'object' ? answer.version : answer;
        if (typeof answer === 'object') unit.changesAt = answer.changesAt?.getTime();
        return version === undefined || version !== unit.result.version;
      } catch (err) {
        unit.lastError = asTlsError(err, unit);
        unit.lastErrorAt = Date.now();
        errors.push(unit.lastError);
        return false;
      }
    });
    const decisions = await Promise.all(probes);
    return targets.filter((_, index) => decisions[index]);
  }

  /** One request per unit, batched per provider where it can. */
  async #fetch(units: Unit[], signal: AbortSignal): Promise<(FetchResult | Error)[]> {
    const results = new Map<Unit, FetchResult | Error>();
    const byProvider = new Map<Provider, Unit[]>();
    for (const unit of units) byProvider.set(unit.provider, [...(byProvider.get(unit.provider) ?? []), unit]);
    await Promise.all(
      [...byProvider].map(async ([provider, group]) => {
        const fetchMany = provider.fetchMany?.bind(provider);
        if (fetchMany && group.length > 1) {
          try {
            const refs = group.map((unit) => unit.ref);
            const batch = await this.#timed(provider, 'batch', group.length, () =>
              abortable(fetchMany(refs, signal), signal),
            );
            for (const [i, unit] of group.entries()) {
              results.set(unit, batch[i] ?? new FetchError('batch returned no result'));
            }
          } catch (err) {
            for (const unit of group) results.set(unit, err instanceof Error ? err : new Error(String(err)));
          }
          return;
        }
        await Promise.all(
          group.map(async (unit) => {
            try {
              results.set(
                unit,
                await this.#timed(provider, 'fetch', 1, () =>
                  abortable(provider.fetch(unit.ref, signal), signal),
                ),
              );
            } catch (err) {
              results.set(unit, err instanceof Error ? err : new Error(String(err)));
            }
          }),
        );
      }),
    );
    return units.map((unit) => results.get(unit) ?? new FetchError('no result'));
  }

  /** Runs one store call and reports its duration (listeners only: no cost without them). */
  async #timed<T>(
    provider: Provider,
    kind: StoreCallEvent['kind'],
    refs: number,
    call: () => Promise<T>,
  ): Promise<T> {
    if (this.listenerCount('storeCall') === 0) return call();
    const started = performance.now();
    let ok = false;
    try {
      const result = await call();
      ok = true;
      return result;
    } finally {
      this.emit('storeCall', {
        provider: provider.name,
        kind,
        refs,
        durationMs: performance.now() - started,
        ok,
      });
    }
  }

  /** Assembles and validates a candidate generation from the latest fetched values. Throws if invalid. */
  #build(number: number, previous: Generation | undefined): Generation {
    const slotDigests = new Map<string, string>();
    const versions: Record<string, string | undefined> = {};
    const item = (slot: Slot): Item => {
      const unit = this.#unitBySlot.get(slot);
      let value: string | Buffer;
      let ref = 'literal';
      if (unit && isSecretRef(slot.source)) {
        ref = describeRef(slot.source);
        const raw = unit.result?.value;
        if (raw === undefined) throw new FetchError('no value fetched yet', { field: slot.path, ref });
        const options = slot.source.options;
        const transformRef =
          slot.binary && !options.encoding
            ? { ...slot.source, options: { ...options, encoding: 'binary' as const } }
            : slot.source;
        value = transformValue(transformRef, raw, slot.path);
        versions[slot.path] = unit.result?.version;
      } else {
        value = slot.source as string | Buffer;
      }
      slotDigests.set(slot.path, createHash('sha256').update(value).digest('hex'));
      return { path: slot.path, ref, value };
    };
    const withPassphrase = (entry: { pem: Slot; passphrase?: Slot }): WithPassphrase => {
      const base = item(entry.pem);
      return entry.passphrase ? { ...base, passphrase: item(entry.passphrase) } : base;
    };
    const shape = this.#shape;
    const material: Material = {
      key: shape.key.map(withPassphrase),
      cert: shape.cert.map(item),
      ca: shape.ca.map(item),
      crl: shape.crl.map(item),
      pfx: shape.pfx.map(withPassphrase),
      ...(shape.passphrase ? { passphrase: item(shape.passphrase) } : {}),
      ...(shape.ticketKeys ? { ticketKeys: item(shape.ticketKeys) } : {}),
      ...(shape.dhparam ? { dhparam: item(shape.dhparam) } : {}),
      psk: shape.psk.map(({ identity, slot }) => ({ identity, item: item(slot) })),
    };
    const digest = createHash('sha256')
      .update([...slotDigests].map(([path, hash]) => `${path}=${hash}`).join('\n'))
      .digest('hex');
    if (previous && digest === previous.digest) return previous;

    const caCache = { previous: this.#caCache, next: new Map<string, CertificateInfo>() };
    const bundle = validateMaterial(material, {
      now: Date.now(),
      verifyChain: this.#options.verifyChain,
      contextOptions: this.#passThrough as SecureContextOptions,
      caCache,
    });
    // Only the entries of the bundle just validated are kept: the cache never outgrows one generation.
    this.#caCache = caCache.next;
    const { pskIdentity, ...passThrough } = this.#passThrough;
    const options: ResolvedOptions = {
      ...passThrough,
      ...bundle.options,
      secureContext: bundle.secureContext,
    };
    if (bundle.psk.size > 0) {
      const identity = pskIdentity ?? [...bundle.psk.keys()][0] ?? '';
      const psk = bundle.psk.get(identity);
      if (psk) options.pskCallback = () => ({ psk, identity });
    }
    redactOptions(options);
    return {
      number,
      options,
      resolved: Promise.resolve(options),
      bundle,
      digest,
      slotDigests,
      versions,
      sent: new Set(),
    };
  }

  #swap(next: Generation, previous: Generation | undefined): void {
    this.#generation = next;
    this.#refused = undefined;
    this.#staleSince = undefined;
    const changed = [...next.slotDigests]
      .filter(([path, hash]) => previous?.slotDigests.get(path) !== hash)
      .map(([path]) => path);
    const event: RotateEvent = {
      generation: next.number,
      changed,
      versions: next.versions,
      certificates: next.bundle.certificates,
      authorities: next.bundle.authorities,
    };
    this.emit('rotate', event);
    this.#armExpiryTimer();
  }

  #afterCycle(errors: TlsSecretsError[], now: number): void {
    if (errors.length === 0) {
      this.#failureStreak = 0;
      this.#staleSince = undefined;
      return;
    }
    this.#failureStreak += 1;
    this.#staleSince ??= now;
    for (const error of errors) this.#emitError(error);
    const generation = this.#generation;
    const [first] = errors;
    if (generation && first) {
      this.emit('stale', {
        generation: generation.number,
        since: new Date(this.#staleSince),
        notAfter: generation.bundle.notAfter,
        error: first,
      });
    }
  }

  /** An 'error' with no listener would crash the process; background failures must not. */
  #emitError(error: TlsSecretsError): void {
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }

  #isPastMaxStale(generation: Generation): boolean {
    const notAfter = generation.bundle.notAfter;
    return notAfter !== undefined && Date.now() > notAfter.getTime() + this.#options.maxStale;
  }

  #jittered(delay: number): number {
    const spread = delay * this.#options.jitter;
    return Math.max(0, delay - spread + Math.random() * 2 * spread);
  }

  /**
   * Refresh-ahead points: a fraction of each certificate's and each lease's lifetime (these force a fetch
   * of the lease), and probes just after a store's scheduled change, which can take a while to land.
   */
  #aheadPoints(): { at: number; unit?: Unit; cert?: CertificateInfo }[] {
    const points: { at: number; unit?: Unit; cert?: CertificateInfo }[] = [];
    const fractions = new Map<string, number>();
    // Each lifetime gets its own jittered fraction, drawn once and kept while it lasts, so that a fleet
    // started together does not renew together, and a point does not move each time it is computed.
    const fraction = (key: string) => {
      const drawn =
        this.#aheadFractions.get(key) ??
        this.#options.refreshAhead * (1 - this.#options.jitter * Math.random());
      fractions.set(key, drawn);
      return drawn;
    };
    for (const cert of this.#generation?.bundle.certificates ?? []) {
      const start = cert.notBefore.getTime();
      points.push({
        at: start + fraction(`cert:${cert.fingerprint256}`) * (cert.notAfter.getTime() - start),
        cert,
      });
    }
    for (const unit of this.#units) {
      const expiresAt = unit.result?.expiresAt?.getTime();
      if (expiresAt !== undefined && unit.fetchedAt !== undefined) {
        const lease = `lease:${describeRef(unit.ref)}:${unit.fetchedAt}`;
        points.push({ at: unit.fetchedAt + fraction(lease) * (expiresAt - unit.fetchedAt), unit });
      }
      if (unit.changesAt !== undefined) {
        for (const after of SCHEDULED_CHANGE_PROBES) points.push({ at: unit.changesAt + after });
      }
    }
    this.#aheadFractions = fractions;
    return points;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed || !this.#generation || this.#units.length === 0) return;
    const now = Date.now();
    let delay: number;
    if (this.#failureStreak > 0) {
      const base = Math.min(
        this.#options.retryMaxDelay,
        this.#options.retryInitialDelay * 2 ** Math.min(this.#failureStreak - 1, 30),
      );
      // Equal jitter: never less than half the step, so a fleet spreads out without hammering a recovering store.
      delay = base / 2 + (Math.random() * base) / 2;
      this.#nextRetryAt = now + delay;
    } else {
      delay = this.#jittered(this.#options.refreshInterval);
      for (const point of this.#aheadPoints()) {
        if (point.at > now) delay = Math.min(delay, point.at - now);
        // A lease point that passed while its cycle ran (a slow store, a busy loop) is due now, not at the
        // next interval: the refetch it triggers draws a new point. A lease with no time left after its
        // fetch (point at or before fetchedAt) is not retried in a loop.
        else if (point.unit?.fetchedAt !== undefined && point.at > point.unit.fetchedAt) delay = 0;
      }
    }
    this.#timer = setTimeout(() => this.#onTimer(), Math.min(delay, MAX_TIMER));
    this.#timer.unref();
  }

  #onTimer(): void {
    const now = Date.now();
    for (const point of this.#aheadPoints()) {
      // Timers may fire a millisecond before Date.now() reaches their point.
      if (point.unit && point.at <= now + TIMER_SLACK) point.unit.forceFetch = true;
    }
    this.#request({ units: 'all', force: false }).catch(() => undefined);
  }

  /**
   * `expiring` at each certificate's refresh-ahead point and `expired` at its notAfter, on a timer of their
   * own: the refresh timer follows the retry backoff while a store is down, and these must not wait for it.
   */
  #armExpiryTimer(): void {
    clearTimeout(this.#expiryTimer);
    const generation = this.#generation;
    if (!generation || this.#closed) return;
    const ratio = this.#options.refreshAhead;
    const events = generation.bundle.certificates.flatMap((certificate) => {
      const start = certificate.notBefore.getTime();
      const end = certificate.notAfter.getTime();
      return [
        { kind: 'expiring' as const, at: start + ratio * (end - start), certificate },
        { kind: 'expired' as const, at: end, certificate },
      ].filter((event) => !generation.sent.has(`${event.kind}:${event.certificate.fingerprint256}`));
    });
    if (events.length === 0) return;
    const next = Math.min(...events.map((event) => event.at));
    this.#expiryTimer = setTimeout(
      () => {
        if (this.#generation !== generation) return;
        const now = Date.now();
        for (const event of events) {
          if (event.at > now + TIMER_SLACK) continue;
          generation.sent.add(`${event.kind}:${event.certificate.fingerprint256}`);
          const remainingMs = event.certificate.notAfter.getTime() - now;
          this.emit(event.kind, {
            generation: generation.number,
            certificate: event.certificate,
            remainingMs,
          });
        }
        this.#armExpiryTimer();
      },
      Math.max(0, Math.min(next - Date.now(), MAX_TIMER)),
    );
    this.#expiryTimer.unref();
  }

  #startWatching(): void {
    if (this.#watching || this.#closed) return;
    this.#watching = true;
    const byProvider = new Map<Provider, Unit[]>();
    for (const unit of this.#units)
      byProvider.set(unit.provider, [...(byProvider.get(unit.provider) ?? []), unit]);
    for (const [provider, units] of byProvider) {
      if (!provider.watch) continue;
      const byId = new Map(units.map((unit) => [unit.ref.id, unit]));
      this.#unwatch.push(
        provider.watch(
          units.map((unit) => unit.ref),
          (ref) => {
            const unit = byId.get(ref.id);
            if (unit) this.#onPush(unit);
          },
        ),
      );
    }
  }

  /**
   * Collects pushed changes for `debounce` ms from the first one, then refreshes them together. The window
   * is not restarted by later pushes: a store that changes faster than the window must still be followed.
   */
  #onPush(unit: Unit): void {
    if (this.#closed) return;
    this.#pushed.add(unit);
    if (this.#debounceTimer) return;
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = undefined;
      const units = new Set(this.#pushed);
      this.#pushed.clear();
      this.#request({ units, force: true }).catch(() => undefined);
    }, this.#options.debounce);
    this.#debounceTimer.unref();
  }
}

/** Creates a resolver. Nothing is fetched until the first `resolve()` (or `connect()`, or server start). */
export function createResolver(spec: TlsSecretsSpec, options?: ResolverOptions): Resolver {
  return new Resolver(spec, options);
}
