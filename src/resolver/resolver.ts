/**
 * The resolver: fills ConnectionOptions from stores lazily, caches them as one validated generation with a
 * prebuilt SecureContext, and rotates: periodic checks, refresh-ahead of expiry, pushes from watching
 * providers. A new generation is swapped in whole or not at all; store failures keep the last good one.
 *
 * States (docs/resolver.md has the diagram; `stateOf` in plan.ts names them from the facts kept here):
 *   cold ──resolve()──▶ loading ──ok──▶ serving ◀──ok── stale
 *   loading ──fails──▶ cold (with a backoff)        serving ──store fails / bundle refused──▶ stale
 *   serving|stale ──notAfter passes──▶ expired ──good bundle──▶ serving        any ──close()──▶ closed
 *
 * Every way to the store (cold resolve, refresh(), connect()'s verify-failure retry, the plan's timer,
 * pushes) goes through `#request` and then `#cycle`, which consults ONE backoff before any store call, and
 * at most one cycle runs at a time. The plan (plan.ts) decides when the next cycle is due; one timer, on
 * one clock, waits for it.
 */
import { EventEmitter } from 'node:events';
import { inspect } from 'node:util';
import {
  CertificateExpiredError,
  ClosedError,
  ConfigurationError,
  FetchError,
  InvalidMaterialError,
  ListenerError,
  TlsSecretsError,
} from '../errors.js';
import { fieldOf } from '../field-path.js';
import { describeRef, isSecretRef, type Provider, type SecretRef } from '../provider.js';
import {
  after,
  type Clock,
  MAX_TIMER,
  nextTurn,
  runAt,
  systemClock,
  TIMER_SLACK,
  type TimerHandle,
} from '../timers.js';
import {
  type CertificateInfo,
  type FieldStatus,
  type ResolvedOptions,
  type ResolverEvents,
  type ResolverOptions,
  type ResolverState,
  type ResolverStatus,
  type Role,
  type RotateEvent,
  SECRET_FIELDS,
  type SecretField,
  type TlsSecretsSpec,
} from '../types.js';
import { checkRoles, type ValidatedBundle } from '../validate.js';
import { buildGeneration, type ContextProfile, type Generation } from './build.js';
import { fetchStep, type Unit } from './fetch.js';
import {
  aheadPoint,
  backoffDelay,
  deadlinesOf,
  nextRetryAt,
  planCheck,
  planEvents,
  scheduledProbes,
  stateOf,
  type TimedDeadline,
  type UnitFacts,
} from './plan.js';
import { allSlots, checkOptions, checkSpecKeys, parseSpec, type Shape, type Slot } from './spec.js';

interface RefreshRequest {
  units: Set<Unit> | 'all';
  force: boolean;
}

export interface RefreshResult {
  readonly rotated: boolean;
  readonly generation: number;
  readonly errors: readonly TlsSecretsError[];
}

/** Seams for tests and for this package's own helpers; not part of the public API. */
export interface ResolverInternals {
  /** The clock for every timer and every `now`. Default: the system clock. */
  readonly clock?: Clock;
  /**
   * Draws in [0, 1) for every spread this instance makes: of scheduled-change probes, of backoff steps, of
   * poll intervals and refresh-ahead points. Default: Math.random.
   */
  readonly random?: () => number;
}

/** Whether the cold start may try again: every error met was a store error that retrying can help. */
function allTransient(errors: readonly TlsSecretsError[]): boolean {
  return errors.length > 0 && errors.every((error) => error instanceof FetchError && error.transient);
}

/** Receives each new generation before any user listener; one that throws cannot stop the others. */
export type GenerationSubscriber = (event: RotateEvent, options: ResolvedOptions) => void;

/** The package's own helpers (servers, agents, connect) reach the resolver through this key. */
export const internal: unique symbol = Symbol('tls-secrets.internal');

export interface InternalAccess {
  /** Follow every new generation, independently of user `rotate` listeners. Returns the unsubscribe. */
  onGeneration(subscriber: GenerationSubscriber): () => void;
  /**
   * Build this helper's own context in the validation of every later candidate (instead of the resolver's,
   * which is then built only if asked for), and install it when the candidate is swapped in, before any
   * subscriber or listener hears of it. Returns the unsubscribe.
   */
  serveContext(profile: ContextProfile): () => void;
  /** The spec's options other than the secret fields, as written (servers apply them too). */
  passThrough(): Readonly<Record<string, unknown>>;
  /** Called once at close(), before it returns: what a helper keeps for the resolver is let go of. */
  onClose(callback: () => void): void;
  /** How many helpers follow the resolver now: a helper that stops must unsubscribe. */
  subscriberCount(): number;
  /**
   * A handshake made with `generation` failed verification: a refresh, at most once per generation and per
   * backoff step (and never while the store's backoff holds). Resolves true when a newer generation is
   * served, so the caller may try again.
   */
  verifyFailed(generation: number): Promise<boolean>;
}

export class Resolver extends EventEmitter<ResolverEvents> {
  readonly #options: Required<ResolverOptions>;
  readonly #clock: Clock;
  /**
   * Roles in use (server, client): each was declared while a generation that allows it was served; the gate
   * checks every later generation for each.
   */
  readonly #roles = new Set<Role>();
  /** Each bundle's verdict per role, so that a role declared late is checked once per generation. */
  readonly #roleVerdicts = new WeakMap<ValidatedBundle, Map<Role, TlsSecretsError | undefined>>();
  readonly #passThrough: Omit<TlsSecretsSpec, SecretField | 'psk'>;
  readonly #shape: Shape;
  readonly #slots: Slot[];
  readonly #units: Unit[] = [];
  readonly #unitBySlot = new Map<Slot, Unit>();
  #generation: Generation | undefined;
  #running: Promise<RefreshResult> | undefined;
  #queued: { request: RefreshRequest; promise: Promise<RefreshResult> } | undefined;
  #caCache: ReadonlyMap<string, CertificateInfo> = new Map();
  /** The jittered refresh-ahead fraction of each lifetime in use, drawn once per lifetime. */
  #fractions = new Map<string, number>();
  /** When each lifetime in use (by what, field and end) was first obtained: see #deadlines. */
  #origins = new Map<string, number>();
  /** The last candidate refused by validation, while no good generation has been swapped in since. */
  #refused: { field: string; error: TlsSecretsError; at: number; version: string | undefined } | undefined;
  /** The one backoff: failed cycles in a row, when the store may be asked again, and what it said last. */
  #backoff: { streak: number; retryAt: number; errors: readonly TlsSecretsError[] } = {
    streak: 0,
    retryAt: 0,
    errors: [],
  };
  #staleSince: number | undefined;
  /** The next regular poll: a jittered refreshIntervalMs after the last cycle. */
  #pollAt = Number.POSITIVE_INFINITY;
  /** The one timer of the plan: the next due cycle or event. */
  #wake: TimerHandle | undefined;
  #debounce: TimerHandle | undefined;
  readonly #pushed = new Set<Unit>();
  /** Verify-failure refreshes: generations already tried, and the spacing of such refreshes. */
  #verify = { tried: new Set<number>(), streak: 0, lastAt: Number.NEGATIVE_INFINITY, notBefore: 0 };
  readonly #cycles = new Set<AbortController>();
  readonly #subscribers = new Set<GenerationSubscriber>();
  readonly #onClose: (() => void)[] = [];
  readonly #profiles = new Set<ContextProfile>();
  readonly #unwatch: (() => void)[] = [];
  #watching = false;
  #closed = false;
  /** The cold start in progress: every cold caller shares its attempts and its budget (single flight). */
  #starting: Promise<void> | undefined;
  /** Ends the cold start's wait for the next backoff step at close(). */
  #stopWaiting: (() => void) | undefined;
  /** This instance's draw for the spread of probes after a scheduled change (scheduledProbes). */
  readonly #probeDraw: number;
  readonly #random: () => number;
  /** When the current run of failed checks or refusals began; cleared (with `recovered`) by a clean cycle. */
  #troubleSince: number | undefined;

  constructor(spec: TlsSecretsSpec, options: ResolverOptions = {}, internals: ResolverInternals = {}) {
    super();
    this.#options = checkOptions(options);
    this.#clock = internals.clock ?? systemClock;
    this.#random = internals.random ?? Math.random;
    this.#probeDraw = this.#random();
    this.#shape = parseSpec(spec);
    checkSpecKeys(spec);
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
        unit = { provider: ref.provider, ref, paths: [], owed: false };
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
    if (this.#closed) throw new ClosedError('resolver');
    // Cold callers join the start in flight: N concurrent first calls make one fetch per reference.
    if (!this.#generation) {
      this.#starting ??= this.#coldStart().finally(() => {
        this.#starting = undefined;
      });
      await this.#starting;
    }
    let generation = this.#generation;
    if (!generation) throw new ClosedError('resolver');
    if (this.#isPastMaxStale(generation)) {
      // The bundle is beyond use: one attempt at a fresh one before refusing (the backoff permitting).
      await this.#request({ units: 'all', force: true }).catch(() => undefined);
      generation = this.#generation ?? generation;
      const notAfter = generation.bundle.notAfter;
      if (notAfter && this.#isPastMaxStale(generation)) {
        // The earliest deadline may be an intermediate or a CRL: the error names the one that ran out.
        const [cert] = generation.bundle.deadlines.filter((c) => c.notAfter.getTime() === notAfter.getTime());
        throw new CertificateExpiredError(notAfter, { field: cert?.field, ref: cert?.ref });
      }
    }
    return generation.options;
  }

  /**
   * The first load, kept trying while the store fails transiently, for up to `startBudgetMs` from its
   * start: each attempt waits for the backoff's next step (on the resolver's clock), so a throttled fleet
   * starts slowly rather than failing. A permanent error, a step that would fall past the budget, or a
   * close() ends it; it then rejects with the last error (or the closed error).
   */
  async #coldStart(): Promise<void> {
    // Callers await this start, so, like pending I/O, it keeps the process alive until it ends (the clock's
    // timers do not): without it a service whose store failed once at boot, or whose provider hung on
    // something of its own, exited with code 0 between attempts or during the fetch deadline.
    const hold = setInterval(() => undefined, MAX_TIMER);
    try {
      await this.#coldStartAttempts();
    } finally {
      clearInterval(hold);
    }
  }

  async #coldStartAttempts(): Promise<void> {
    const budgetEnd = this.#clock.now() + this.#options.startBudgetMs;
    let assembled = false;
    for (;;) {
      // A retry asks only for what has not arrived yet. Under a store quota, refetching everything made a
      // fleet of cold instances livelock: each attempt lost a different few of its 25 reads to throttling,
      // so almost none ever held a complete bundle while the store served ten thousand reads.
      const missing = this.#units.filter((unit) => !unit.result);
      const partial = missing.length > 0 && missing.length < this.#units.length;
      try {
        await (this.#running ?? this.#request({ units: partial ? new Set(missing) : 'all', force: true }));
      } catch (err) {
        if (this.#closed) throw new ClosedError('resolver');
        // A cycle held by the backoff rejects with the last errors without a store call: the same test.
        const { errors, retryAt } = this.#backoff;
        if (retryAt > budgetEnd + TIMER_SLACK) throw err;
        if (!allTransient(errors)) {
          // Values read in different attempts may straddle a rotation in the store (the key of one version,
          // the certificate of the next): a refused assembly is read again whole, once, before it counts.
          if (!partial || assembled || !(err instanceof InvalidMaterialError)) throw err;
          assembled = true;
          for (const unit of this.#units) unit.result = undefined;
        }
        await this.#waitUntil(retryAt);
        continue;
      }
      if (this.#closed) throw new ClosedError('resolver');
      if (this.#generation) return;
    }
  }

  /** Waits on the clock until `at`; close() ends the wait with the closed error. */
  #waitUntil(at: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = runAt(
        at,
        () => {
          this.#stopWaiting = undefined;
          resolve();
        },
        this.#clock,
      );
      this.#stopWaiting = () => {
        timer.cancel();
        this.#stopWaiting = undefined;
        reject(new ClosedError('resolver'));
      };
    });
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

  /**
   * Declares that this resolver's material is about to be used as a `server` or a `client` (the helpers do
   * it before each use): the generation being served is checked for the role, once per generation and role.
   * If it passes, the role is recorded and every later generation must allow it too, for the resolver's
   * life. If it fails, this throws InvalidMaterialError and records nothing: a use that never happened does
   * not bind later rotations. On a cold resolver there is nothing to check: it throws ConfigurationError
   * (call it after `resolve()`), rather than let a role believed declared bind nothing.
   */
  declareRole(role: Role): void {
    // Recorded: every generation since was validated with it (the one current when it was recorded, here).
    if (this.#roles.has(role)) return;
    const bundle = this.#generation?.bundle;
    if (!bundle) {
      throw new ConfigurationError(
        `declareRole('${role}') checks the generation being served and there is none yet: call it after resolve()`,
      );
    }
    let verdicts = this.#roleVerdicts.get(bundle);
    if (!verdicts) {
      verdicts = new Map();
      this.#roleVerdicts.set(bundle, verdicts);
    }
    if (!verdicts.has(role)) {
      try {
        checkRoles(bundle, [role]);
        verdicts.set(role, undefined);
      } catch (err) {
        verdicts.set(
          role,
          err instanceof TlsSecretsError ? err : new FetchError('role check failed', { cause: err }),
        );
      }
    }
    const verdict = verdicts.get(role);
    if (verdict) throw verdict;
    this.#roles.add(role);
  }

  /**
   * Checks every source now (version probes where the store offers them) and rotates if anything changed.
   * While the store is failing and its backoff holds, answers with the last errors without asking it.
   */
  refresh(): Promise<RefreshResult> {
    if (this.#closed) return Promise.reject(new ClosedError('resolver'));
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

  /** cold, loading, serving, stale, expired or closed: see docs/resolver.md. */
  get state(): ResolverState {
    return stateOf(
      {
        closed: this.#closed,
        serving: this.#generation !== undefined,
        loading: this.#running !== undefined,
        failing: this.#staleSince !== undefined,
        notAfter: this.#generation?.bundle.notAfter?.getTime(),
      },
      this.#clock.now(),
    );
  }

  /** The served generation, field by field, and the refused candidate while one is pending. */
  status(): ResolverStatus {
    const generation = this.#generation;
    // A field's notAfter is its certificate's; for a CA bundle, the earliest of its entries (`ca#0`, `ca#1`…).
    const certs = new Map<string, CertificateInfo>();
    const bundle = generation?.bundle;
    for (const cert of [...(bundle?.deadlines ?? []), ...(bundle?.authorities ?? [])]) {
      const field = fieldOf(cert.field);
      const known = certs.get(field);
      if (!known || cert.notAfter < known.notAfter) certs.set(field, cert);
    }
    const refused = this.#refused;
    const fields: FieldStatus[] = this.#slots.map((slot) => {
      const unit = this.#unitBySlot.get(slot);
      const fetchedAt = generation?.fetchedAt[slot.path];
      // The field's last problem: its store's error until the next clean answer, else a pending refusal.
      const [error, at] =
        unit?.lastError && unit.lastErrorAt !== undefined
          ? [unit.lastError, unit.lastErrorAt]
          : refused?.field === slot.path
            ? [refused.error, refused.at]
            : [undefined, 0];
      return {
        field: slot.path,
        source: unit ? describeRef(slot.source as SecretRef) : 'literal',
        version: generation?.versions[slot.path],
        fetchedAt: fetchedAt === undefined ? undefined : new Date(fetchedAt),
        notAfter: certs.get(slot.path)?.notAfter,
        lastError: error ? { code: error.code, message: error.message, at: new Date(at) } : undefined,
      };
    });
    return {
      generation: this.generation,
      state: this.state,
      stale: this.#staleSince !== undefined,
      notAfter: generation?.bundle.notAfter,
      fields,
      refused: refused && {
        field: refused.field,
        version: refused.version,
        code: refused.error.code,
        message: refused.error.message,
        at: new Date(refused.at),
      },
    };
  }

  /** Stops timers and watchers and aborts a cycle in flight. Providers stay open: they may serve others. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const controller of this.#cycles) controller.abort(new ClosedError('resolver'));
    this.#wake?.cancel();
    this.#debounce?.cancel();
    this.#stopWaiting?.();
    for (const unwatch of this.#unwatch.splice(0)) unwatch();
    this.#subscribers.clear();
    this.#profiles.clear();
    for (const callback of this.#onClose.splice(0)) callback();
    await this.#running?.catch(() => undefined);
  }

  [inspect.custom](): string {
    return `Resolver { generation: ${this.generation}, fields: [${this.#slots.map((s) => s.path).join(', ')}] }`;
  }

  toJSON(): ResolverStatus {
    return this.status();
  }

  readonly [internal]: InternalAccess = {
    onGeneration: (subscriber) => {
      this.#subscribers.add(subscriber);
      return () => this.#subscribers.delete(subscriber);
    },
    serveContext: (profile) => {
      this.#profiles.add(profile);
      return () => this.#profiles.delete(profile);
    },
    onClose: (callback) => {
      if (this.#closed) callback();
      else this.#onClose.push(callback);
    },
    passThrough: () => this.#passThrough as Readonly<Record<string, unknown>>,
    subscriberCount: () => this.#subscribers.size + this.#profiles.size,
    verifyFailed: async (generation) => {
      if (this.#closed) return false;
      if (this.generation !== generation) return true;
      const now = this.#clock.now();
      const verify = this.#verify;
      if (verify.tried.has(generation) || now < verify.notBefore) {
        // Already asked for this generation or within this step: share the answer in flight, if any.
        await this.#running?.catch(() => undefined);
        return this.generation !== generation;
      }
      verify.tried.add(generation);
      for (const old of verify.tried) if (old < generation - 8) verify.tried.delete(old);
      // Consecutive verify-failure refreshes are spaced like retries (a healthy PKI store would otherwise
      // issue a certificate per failed handshake); a quiet retryMaxDelayMs starts the spacing over.
      verify.streak = now - verify.lastAt > this.#options.retryMaxDelayMs ? 1 : verify.streak + 1;
      verify.lastAt = now;
      verify.notBefore = now + backoffDelay(verify.streak, this.#options, 1);
      await this.#request({ units: 'all', force: false }).catch(() => undefined);
      return this.generation !== generation;
    },
  };

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
    const running = this.#cycle(request).finally(() => {
      if (this.#running === running) this.#running = undefined;
      this.#arm();
    });
    this.#running = running;
    return running;
  }

  /** While the store fails, the backoff holds every path until its next step. */
  #holding(now: number): boolean {
    return this.#backoff.streak > 0 && now < this.#backoff.retryAt - TIMER_SLACK;
  }

  /** One cycle: backoff gate, fetch step, build step, swap or refusal, then the backoff's bookkeeping. */
  async #cycle(request: RefreshRequest): Promise<RefreshResult> {
    if (this.#closed) throw new ClosedError('resolver');
    const now = this.#clock.now();
    if (this.#holding(now)) {
      // No store call: the current answer, or on a cold resolver the last error.
      const [last] = this.#backoff.errors;
      if (!this.#generation) throw last ?? new FetchError('store unavailable');
      return { rotated: false, generation: this.generation, errors: this.#backoff.errors };
    }
    const targets = request.units === 'all' ? this.#units : [...request.units];
    // A per-cycle controller and timeout, both ended with the cycle: nothing is left behind by a close().
    const controller = new AbortController();
    this.#cycles.add(controller);
    const timeout = after(this.#clock, this.#options.fetchTimeoutMs, () =>
      controller.abort(new DOMException('store did not answer in time', 'TimeoutError')),
    );
    let step: Awaited<ReturnType<typeof fetchStep>>;
    try {
      step = await fetchStep(targets, request.force, now, controller.signal, this.#timed);
    } finally {
      timeout.cancel();
      this.#cycles.delete(controller);
    }
    if (this.#closed) throw new ClosedError('resolver');
    const errors = [...step.errors];

    const current = this.#generation;
    if (!current) {
      // Cold: there is nothing to fall back on, so the caller gets the failure (and listeners hear of it).
      if (errors.length === 0) {
        try {
          const generation = await this.#settle(this.#build(1, undefined), undefined);
          this.#swap(generation, undefined);
          this.#afterCycle([], now);
          this.#startWatching();
          return { rotated: true, generation: generation.number, errors };
        } catch (err) {
          if (err instanceof ClosedError) throw err;
          const error =
            err instanceof TlsSecretsError ? err : new FetchError('bundle build failed', { cause: err });
          errors.push(error);
          // status() says why a cold resolver has nothing to serve, as it does for a refused rotation.
          this.#noteRefusal(error, now);
        }
      }
      this.#afterCycle(errors, now);
      throw errors[0];
    }

    let rotated = false;
    // A pending refusal is checked again even when nothing changed: it is reported until it is resolved.
    if ((step.fetched || this.#refused) && this.#units.every((unit) => unit.result)) {
      try {
        const candidate = this.#build(current.number + 1, current);
        if (candidate !== current) {
          this.#swap(await this.#settle(candidate, current), current);
          rotated = true;
        } else this.#refused = undefined; // the store went back to what is served
      } catch (err) {
        if (err instanceof ClosedError) throw err;
        const error =
          err instanceof TlsSecretsError ? err : new FetchError('bundle build failed', { cause: err });
        errors.push(error);
        this.#noteRefusal(error, now);
      }
    }
    this.#afterCycle(errors, now);
    return { rotated, generation: this.generation, errors };
  }

  /** A refused candidate is reported on the field it names (status().refused) until one is swapped in. */
  #noteRefusal(error: TlsSecretsError, now: number): void {
    if (!error.field) return;
    const field = fieldOf(error.field);
    const slot = this.#slots.find((s) => s.path === field);
    const unit = slot && this.#unitBySlot.get(slot);
    this.#refused = { field, error, at: now, version: unit?.result?.version };
  }

  #build(number: number, previous: Generation | undefined): Generation {
    const { generation, caCache } = buildGeneration({
      number,
      previous,
      shape: this.#shape,
      unitBySlot: this.#unitBySlot,
      passThrough: this.#passThrough,
      verifyChain: this.#options.verifyChain,
      now: this.#clock.now(),
      caCache: this.#caCache,
      roles: this.#roles,
      profiles: [...this.#profiles],
    });
    this.#caCache = caCache;
    return generation;
  }

  /**
   * The candidate's context builds (the gate's last check) in a turn of their own, between the checks' turn
   * and the swap's: a rotation stalls the event loop for one context build at most, where the three in one
   * turn stalled it twice as long (146 CAs: 11 ms against 7 for the build). Nothing is served from the
   * candidate before the swap, so the turns in between see the served generation. A helper that began to
   * serve meanwhile (a server attached) has no context in the candidate: it is built again, in one turn.
   */
  async #settle(candidate: Generation, previous: Generation | undefined): Promise<Generation> {
    await nextTurn();
    if (this.#closed) throw new ClosedError('resolver');
    candidate.bundle.buildContexts();
    await nextTurn();
    if (this.#closed) throw new ClosedError('resolver');
    if ([...this.#profiles].every((profile) => candidate.installs.has(profile))) return candidate;
    const again = this.#build(candidate.number, previous);
    again.bundle.buildContexts();
    return again;
  }

  /** Runs one store call and reports its duration (listeners only: no cost without them). */
  readonly #timed = async <T>(
    provider: Provider,
    kind: 'fetch' | 'batch' | 'probe',
    refs: number,
    call: () => Promise<T>,
  ): Promise<T> => {
    if (this.listenerCount('storeCall') === 0) return call();
    const started = performance.now();
    let ok = false;
    try {
      const result = await call();
      ok = true;
      return result;
    } finally {
      this.#deliver('storeCall', {
        provider: provider.name,
        kind,
        refs,
        durationMs: performance.now() - started,
        ok,
      });
    }
  };

  /**
   * Installs the new generation, re-plans its deadlines, hands it to internal subscribers (servers, agents),
   * and only then tells user listeners, each on its own: a listener that throws changes none of this.
   */
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
    this.#arm();
    for (const [profile, install] of next.installs) {
      if (!this.#profiles.has(profile)) continue;
      try {
        install();
      } catch (error) {
        this.#listenerFailed('rotate', install, error);
      }
    }
    for (const subscriber of this.#subscribers) {
      try {
        subscriber(event, next.options);
      } catch (error) {
        this.#listenerFailed('rotate', subscriber, error);
      }
    }
    this.#deliver('rotate', event);
  }

  #afterCycle(errors: readonly TlsSecretsError[], now: number): void {
    const end = this.#clock.now();
    this.#pollAt = end + this.#jittered(this.#options.refreshIntervalMs);
    if (errors.length === 0) {
      this.#backoff = { streak: 0, retryAt: 0, errors: [] };
      this.#staleSince = undefined;
      const since = this.#troubleSince;
      this.#troubleSince = undefined;
      if (since !== undefined && this.#generation && !this.#refused) {
        this.#deliver('recovered', { generation: this.#generation.number, since: new Date(since) });
      }
      return;
    }
    this.#troubleSince ??= now;
    const streak = this.#backoff.streak + 1;
    // The store's own Retry-After (a 429), the longest any error carried: the plan caps it.
    const retryAfterMs = Math.max(
      0,
      ...errors.map((error) => (error instanceof FetchError ? (error.retryAfterMs ?? 0) : 0)),
    );
    const retryAt = nextRetryAt(end, streak, this.#deadlines(), this.#options, this.#random(), retryAfterMs);
    this.#backoff = { streak, retryAt, errors };
    const generation = this.#generation;
    if (generation) this.#staleSince ??= now;
    for (const error of errors) this.#emitError(error);
    const [first] = errors;
    if (generation && first && this.#staleSince !== undefined) {
      this.#deliver('stale', {
        generation: generation.number,
        since: new Date(this.#staleSince),
        notAfter: generation.bundle.notAfter,
        error: first,
      });
    }
  }

  /** Calls each listener on its own: one that throws is reported and the others still run. */
  #deliver<K extends keyof ResolverEvents>(name: K, ...args: ResolverEvents[K]): void {
    for (const listener of this.rawListeners(name) as ((...a: unknown[]) => void)[]) {
      try {
        listener.apply(this, args);
      } catch (error) {
        this.#listenerFailed(name, listener, error);
      }
    }
  }

  #listenerFailed(event: string, listener: { name: string }, cause: unknown): void {
    this.#emitError(new ListenerError(event, listener.name, cause));
  }

  /** An 'error' with no listener would crash the process; background failures must not. */
  #emitError(error: TlsSecretsError): void {
    const listeners = this.rawListeners('error') as ((error: TlsSecretsError) => void)[];
    if (listeners.length === 0 && error instanceof ListenerError) process.emitWarning(error);
    for (const listener of listeners) {
      try {
        listener.call(this, error);
      } catch (failure) {
        // An error listener that throws has nobody left to tell but the process's warnings.
        process.emitWarning(new ListenerError('error', listener.name, failure));
      }
    }
  }

  #isPastMaxStale(generation: Generation): boolean {
    const notAfter = generation.bundle.notAfter;
    return notAfter !== undefined && this.#clock.now() > notAfter.getTime() + this.#options.maxStaleMs;
  }

  #jittered(delay: number): number {
    const spread = delay * this.#options.jitter;
    return Math.max(0, delay - spread + this.#random() * 2 * spread);
  }

  #unitFacts(): UnitFacts[] {
    return this.#units.map((unit) => ({
      ref: describeRef(unit.ref),
      paths: unit.paths,
      fetchedAt: unit.fetchedAt,
      checkedAt: unit.checkedAt,
      expiresAt: unit.result?.expiresAt?.getTime(),
      owed: unit.owed,
    }));
  }

  /**
   * The deadlines in use with their refresh points. Each lifetime keeps the jittered fraction drawn for it
   * while it lasts, so that a fleet started together does not renew together, and a point does not move.
   */
  #deadlines(units = this.#unitFacts()): TimedDeadline[] {
    const generation = this.#generation;
    const served = generation && {
      certificates: generation.bundle.deadlines,
      fetchedAt: generation.fetchedAt,
    };
    const fractions = new Map<string, number>();
    const origins = new Map<string, number>();
    const timed = deadlinesOf(served, units).map((deadline) => {
      // A lifetime that ends where one already in use ends is that lifetime: a store that answers with the
      // same end again (a lease it did not extend, PKI capped at its CA's notAfter) must not restart the
      // count at each fetch, or the refresh points would close in on notAfter at ever shorter gaps. Its
      // start and jitter draw are kept, its point stays done, and the late-check rule takes over.
      const end = `${deadline.what}|${deadline.field}|${deadline.notAfter}`;
      const start = Math.min(deadline.start, this.#origins.get(end) ?? deadline.start);
      origins.set(end, start);
      const fraction =
        this.#fractions.get(end) ?? this.#options.refreshAhead * (1 - this.#options.jitter * this.#random());
      fractions.set(end, fraction);
      const lifetime = start === deadline.start ? deadline : { ...deadline, start };
      return { ...lifetime, aheadAt: aheadPoint(lifetime, fraction) };
    });
    this.#fractions = fractions;
    this.#origins = origins;
    return timed;
  }

  /** Plans and arms the one timer: the next due event or cycle (cycles only while none runs). */
  #arm(): void {
    this.#wake?.cancel();
    this.#wake = undefined;
    const generation = this.#generation;
    if (this.#closed || !generation) return;
    const now = this.#clock.now();
    const units = this.#unitFacts();
    const deadlines = this.#deadlines(units);
    const events = planEvents(deadlines, generation.sent, this.#options.refreshAhead, now);
    let at = events.due.length > 0 ? now : events.nextAt;
    if (!this.#running && this.#units.length > 0) at = Math.min(at, this.#planCheck(units, deadlines).at);
    if (at === Number.POSITIVE_INFINITY) return;
    this.#wake = after(this.#clock, at - now, () => this.#onWake());
  }

  #planCheck(units: UnitFacts[], deadlines: TimedDeadline[]) {
    const probes = this.#units.flatMap((unit, index) =>
      unit.changesAt === undefined
        ? []
        : scheduledProbes(unit.changesAt, this.#probeDraw).map((at) => ({ at, unit: index })),
    );
    return planCheck({
      deadlines,
      units,
      pollAt: this.#pollAt,
      probes,
      retryAt: this.#backoff.streak > 0 ? this.#backoff.retryAt : undefined,
      retryInitialDelayMs: this.#options.retryInitialDelayMs,
      retryMaxDelayMs: this.#options.retryMaxDelayMs,
    });
  }

  #onWake(): void {
    this.#wake = undefined;
    const generation = this.#generation;
    if (this.#closed || !generation) return;
    const now = this.#clock.now();
    const units = this.#unitFacts();
    const deadlines = this.#deadlines(units);
    for (const event of planEvents(deadlines, generation.sent, this.#options.refreshAhead, now).due) {
      const certificate = event.deadline.certificate;
      if (!certificate) continue;
      generation.sent.add(event.sentKey);
      this.#deliver(event.kind, {
        generation: generation.number,
        certificate,
        remainingMs: event.deadline.notAfter - now,
      });
    }
    if (!this.#running && this.#units.length > 0) {
      const decision = this.#planCheck(units, deadlines);
      if (decision.at <= now + TIMER_SLACK) {
        for (const index of decision.refetch) {
          const unit = this.#units[index];
          if (unit) unit.owed = true;
        }
        this.#request({ units: 'all', force: false }).catch(() => undefined);
        return;
      }
    }
    this.#arm();
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
   * Collects pushed changes for `debounceMs` ms from the first one, then refreshes them together. The window
   * is not restarted by later pushes: a store that changes faster than the window must still be followed.
   * A pushed unit owes a fetch until one succeeds: during a backoff the plan fetches it at the next step.
   */
  #onPush(unit: Unit): void {
    if (this.#closed) return;
    this.#pushed.add(unit);
    if (this.#debounce) return;
    this.#debounce = after(this.#clock, this.#options.debounceMs, () => {
      this.#debounce = undefined;
      const units = new Set(this.#pushed);
      this.#pushed.clear();
      for (const pushed of units) pushed.owed = true;
      this.#request({ units, force: true }).catch(() => undefined);
    });
  }
}

/** Creates a resolver. Nothing is fetched until the first `resolve()` (or `connect()`, or server start). */
export function createResolver(spec: TlsSecretsSpec, options?: ResolverOptions): Resolver {
  return new Resolver(spec, options);
}
