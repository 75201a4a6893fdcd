/**
 * HTTP clients that follow the resolver: an `https.Agent` and an HTTP/2 client (the undici dispatcher, which
 * needs the optional undici, is in src/undici.ts and shares the generation bookkeeping below). New
 * connections use the current generation's SecureContext. Pooled connections made with an older generation
 * are drained when a new one arrives (idle ones closed at once, busy ones when their request ends, so no
 * request fails) and whatever is left of a generation is closed at its certificate's notAfter: a
 * long-lived connection never outlives the client certificate it was authenticated with.
 */

import http2 from 'node:http2';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { ClosedError } from './errors.js';
import { internal, type Resolver } from './resolver/index.js';
import { runAt } from './timers.js';
import { type ResolvedOptions, type RotateEvent, SECRET_FIELDS, type SecretField } from './types.js';

/**
 * A timer for a generation's notAfter. None when it has already passed: the resolver is then serving the
 * bundle within `maxStaleMs`, and connections made with it are left alone.
 */
export function atExpiry(notAfter: number | undefined, fn: () => void): { cancel(): void } | undefined {
  return notAfter === undefined || notAfter <= Date.now() ? undefined : runAt(notAfter, fn);
}

/** The resolved options without the secret fields: the SecureContext already carries them. */
export function nonSecret(resolved: ResolvedOptions): Record<string, unknown> {
  const options: Record<string, unknown> = { ...resolved };
  for (const field of SECRET_FIELDS) delete options[field];
  delete options.secureContext;
  delete options.toJSON;
  return options;
}

function defined(options: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

function earliest(event: RotateEvent): number | undefined {
  const times = event.certificates.map((cert) => cert.notAfter.getTime());
  return times.length ? Math.min(...times) : undefined;
}

/** The notAfter of each generation: from `status()` for the one current at creation, then from rotations. */
export class ExpiryBook {
  readonly #byGeneration = new Map<number, number | undefined>();
  latest: number;

  constructor(resolver: Resolver) {
    this.latest = resolver.generation;
    if (this.latest > 0) this.#byGeneration.set(this.latest, resolver.status().notAfter?.getTime());
  }

  record(event: RotateEvent): void {
    this.#byGeneration.set(event.generation, earliest(event));
    this.latest = Math.max(this.latest, event.generation);
    // Only the latest few generations can still own connections worth timing.
    for (const generation of this.#byGeneration.keys()) {
      if (generation < this.latest - 8) this.#byGeneration.delete(generation);
    }
  }

  notAfter(generation: number): number | undefined {
    return this.#byGeneration.get(generation);
  }
}

export interface TlsAgentOptions extends Omit<https.AgentOptions, SecretField | 'secureContext'> {}

interface Cohort {
  readonly generation: number;
  readonly sockets: Set<Duplex>;
  draining: boolean;
  expiry: { cancel(): void } | undefined;
}

/**
 * An `https.Agent` on the resolver. Keep-alive is on by default. TLS sessions are cached per target and
 * dropped at every rotation: a resumed session keeps the client identity of the handshake that created it.
 */
export class TlsSecretsAgent extends https.Agent {
  readonly #resolver: Resolver;
  readonly #book: ExpiryBook;
  readonly #cohorts = new Map<number, Cohort>();
  readonly #cohortOf = new WeakMap<Duplex, Cohort>();
  readonly #unsubscribe: () => void;
  readonly #maxSessions: number;
  #sessions = { generation: 0, byTarget: new Map<string, Buffer>() };

  constructor(resolver: Resolver, options: TlsAgentOptions = {}) {
    super({ keepAlive: true, ...options });
    this.#resolver = resolver;
    this.#book = new ExpiryBook(resolver);
    this.#maxSessions = options.maxCachedSessions ?? 100;
    // Internal subscriptions, not 'rotate' listeners: an application listener that throws cannot stop
    // the agent from draining the old generation.
    this.#unsubscribe = resolver[internal].onGeneration((event) => {
      this.#book.record(event);
      for (const cohort of this.#cohorts.values()) {
        if (cohort.generation < event.generation) this.#drain(cohort);
      }
    });
  }

  override createConnection(
    options: https.RequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    if (!callback)
      throw new TypeError('TlsSecretsAgent connects asynchronously: createConnection needs a callback');
    const fail = (error: unknown) =>
      callback(error instanceof Error ? error : new Error(String(error)), undefined as never);
    this.#resolver.resolve().then((latest) => {
      let socket: TLSSocket;
      // Options and generation read together: a rotation between them would mislabel the socket.
      const { generation, options: resolved } = this.#resolver.current() ?? {
        generation: 0,
        options: latest,
      };
      const target = this.getName(options);
      try {
        this.#resolver.declareRole('client');
        const session = this.#sessionsOf(generation).get(target);
        socket = tlsConnect({
          ...nonSecret(resolved),
          ...defined(options),
          ...(session ? { session } : {}),
          secureContext: resolved.secureContext,
        } as ConnectionOptions);
      } catch (error) {
        return fail(error);
      }
      this.#track(socket, generation, target);
      callback(null, socket);
    }, fail);
    return undefined;
  }

  /** A socket of a draining generation is closed when its request ends instead of returning to the pool. */
  override keepSocketAlive(socket: Duplex): boolean {
    if (this.#cohortOf.get(socket)?.draining) return false;
    return (super.keepSocketAlive(socket) as unknown as boolean | undefined) !== false;
  }

  override destroy(): void {
    this.#unsubscribe();
    for (const cohort of this.#cohorts.values()) cohort.expiry?.cancel();
    this.#cohorts.clear();
    super.destroy();
  }

  #sessionsOf(generation: number): Map<string, Buffer> {
    if (this.#sessions.generation !== generation) this.#sessions = { generation, byTarget: new Map() };
    return this.#sessions.byTarget;
  }

  #track(socket: TLSSocket, generation: number, target: string): void {
    let cohort = this.#cohorts.get(generation);
    if (!cohort) {
      const created: Cohort = {
        generation,
        sockets: new Set(),
        // A rotation may have landed between resolve() and here.
        draining: generation < this.#book.latest,
        expiry: undefined,
      };
      created.expiry = atExpiry(this.#book.notAfter(generation), () => this.#expire(created));
      this.#cohorts.set(generation, created);
      cohort = created;
    }
    cohort.sockets.add(socket);
    this.#cohortOf.set(socket, cohort);
    const owner = cohort;
    if (this.#maxSessions > 0) {
      socket.on('session', (session: Buffer) => {
        if (this.#resolver.generation !== generation) return;
        const sessions = this.#sessionsOf(generation);
        sessions.delete(target);
        sessions.set(target, session);
        const [oldest] = sessions.keys();
        if (sessions.size > this.#maxSessions && oldest !== undefined) sessions.delete(oldest);
      });
    }
    socket.once('close', (hadError: boolean) => {
      if (hadError) this.#sessionsOf(generation).delete(target);
      owner.sockets.delete(socket);
      if (owner.sockets.size === 0 && owner.draining) this.#forget(owner);
    });
  }

  /** Idle sockets of the generation are closed now; busy ones by keepSocketAlive when released. */
  #drain(cohort: Cohort): void {
    cohort.draining = true;
    const idle = new Set<Duplex>(Object.values(this.freeSockets).flatMap((sockets) => sockets ?? []));
    for (const socket of cohort.sockets) if (idle.has(socket)) socket.destroy();
    if (cohort.sockets.size === 0) this.#forget(cohort);
  }

  /** The certificate is expiring now: nothing of its generation may stay open. */
  #expire(cohort: Cohort): void {
    cohort.draining = true;
    for (const socket of cohort.sockets) socket.destroy();
    this.#forget(cohort);
  }

  #forget(cohort: Cohort): void {
    cohort.expiry?.cancel();
    if (this.#cohorts.get(cohort.generation) === cohort) this.#cohorts.delete(cohort.generation);
  }
}

/** An `https.Agent` whose connections use the resolver's current generation; see `TlsSecretsAgent`. */
export function createAgent(resolver: Resolver, options?: TlsAgentOptions): TlsSecretsAgent {
  return new TlsSecretsAgent(resolver, options);
}

export interface Http2ClientOptions
  extends Omit<http2.SecureClientSessionOptions, SecretField | 'secureContext'> {}

/** HTTP/2 sessions to one authority on the resolver's current generation. */
export interface Http2Client {
  /**
   * The session of the current generation, connected on first use and again after a rotation or when the
   * previous one closed. Sessions of older generations close gracefully (their streams finish).
   */
  session(): Promise<http2.ClientHttp2Session>;
  /** Closes every session gracefully. */
  close(): Promise<void>;
}

function closeSession(session: http2.ClientHttp2Session): Promise<void> {
  if (session.closed || session.destroyed) return Promise.resolve();
  return new Promise((resolve) => session.close(() => resolve()));
}

/**
 * An HTTP/2 client for `authority` (`https://host:port`). One multiplexed session per generation: after a
 * rotation the next `session()` connects with the new certificate, and the old session closes once its
 * streams end, or at its certificate's notAfter at the latest.
 */
export function createHttp2Client(
  resolver: Resolver,
  authority: string | URL,
  options: Http2ClientOptions = {},
): Http2Client {
  interface Entry {
    readonly generation: number;
    readonly session: Promise<http2.ClientHttp2Session>;
  }
  const book = new ExpiryBook(resolver);
  const open = new Set<http2.ClientHttp2Session>();
  let current: Entry | undefined;
  let closed = false;

  const retire = (entry: Entry) => {
    if (current === entry) current = undefined;
    entry.session.then(closeSession, () => {});
  };
  const onRotate = (event: RotateEvent) => {
    book.record(event);
    if (current && current.generation < event.generation) retire(current);
  };
  const unsubscribe = resolver[internal].onGeneration(onRotate);

  const connect = async (resolved: ResolvedOptions, generation: number) => {
    const session = http2.connect(authority, {
      ...nonSecret(resolved),
      ...options,
      secureContext: resolved.secureContext,
    } as http2.SecureClientSessionOptions);
    open.add(session);
    const expiry = atExpiry(book.notAfter(generation), () => session.destroy());
    session.once('close', () => {
      open.delete(session);
      expiry?.cancel();
    });
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => {
        session.off('error', reject);
        resolve();
      });
      session.once('error', reject);
    });
    // A later error ends that session only; the next session() call connects again.
    session.on('error', () => {});
    return session;
  };

  return {
    async session() {
      for (let attempt = 0; ; attempt++) {
        if (closed) throw new ClosedError('HTTP/2 client');
        const latest = await resolver.resolve();
        resolver.declareRole('client');
        const { generation, options: resolved } = resolver.current() ?? { generation: 0, options: latest };
        let entry = current;
        if (!entry || entry.generation !== generation) {
          if (entry) retire(entry);
          entry = { generation, session: connect(resolved, generation) };
          current = entry;
        }
        const claimed = entry;
        const session = await claimed.session.catch((error: unknown) => {
          if (current === claimed) current = undefined;
          throw error;
        });
        if (!session.closed && !session.destroyed) return session;
        if (current === claimed) current = undefined;
        if (attempt >= 2)
          throw new Error(`HTTP/2 session to ${String(authority)} closed right after connecting`);
      }
    },
    async close() {
      closed = true;
      unsubscribe();
      current = undefined;
      await Promise.all([...open].map(closeSession));
    },
  };
}
