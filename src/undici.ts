/**
 * The undici dispatcher on the resolver, its own entry point (`tls-secrets/undici`) because its types come
 * from undici, an optional peer: the main entry's declarations need nothing optional. The generation
 * bookkeeping (expiry timers, non-secret options) is the one the https and HTTP/2 clients use.
 */
import type { buildConnector, Dispatcher, Agent as UndiciAgent } from 'undici';
import { atExpiry, ExpiryBook, nonSecret } from './agent.js';
import { importOptional } from './optional.js';
import { internal, type Resolver } from './resolver/index.js';
import { runAt } from './timers.js';
import type { ResolvedOptions, RotateEvent, SecretField } from './types.js';

export interface DispatcherOptions extends Omit<UndiciAgent.Options, 'connect'> {
  /** Options for undici's connector (timeout, keepAlive, maxCachedSessions, …); not TLS material. */
  connect?: Omit<buildConnector.BuildOptions, SecretField | 'secureContext'>;
}

type Undici = typeof import('undici');

function loadUndici(): Promise<Undici> {
  return importOptional('undici', 'createDispatcher', () => import('undici'));
}

/**
 * An undici dispatcher (for `undici.fetch`, `undici.request`, or `setGlobalDispatcher`) doing mutual TLS
 * with the resolver's current generation. Each generation gets its own undici Agent; at a rotation the old
 * one is closed gracefully (requests in flight finish, its connections close) and destroyed at its
 * certificate's notAfter if anything is still open. undici is an optional peer, loaded here.
 */
export async function createDispatcher(
  resolver: Resolver,
  options: DispatcherOptions = {},
): Promise<Dispatcher> {
  const undici = await loadUndici();
  const { connect: connectOptions = {}, ...agentOptions } = options;
  const connectors = new WeakMap<ResolvedOptions, buildConnector.connector>();

  const connect: buildConnector.connector = (target, callback) => {
    resolver.resolve().then(
      (latest) => {
        try {
          resolver.declareRole('client');
        } catch (error) {
          callback(error instanceof Error ? error : new Error(String(error)), null);
          return;
        }
        // The generation just checked for the client role (a rotation may have landed since resolve()).
        const resolved = resolver.current()?.options ?? latest;
        let connector = connectors.get(resolved);
        if (!connector) {
          // One connector per generation: undici's TLS session cache goes with it.
          connector = undici.buildConnector({
            ...(nonSecret(resolved) as buildConnector.BuildOptions),
            ...connectOptions,
            ...(agentOptions.allowH2 === undefined ? {} : { allowH2: agentOptions.allowH2 }),
            secureContext: resolved.secureContext,
          } as buildConnector.BuildOptions);
          connectors.set(resolved, connector);
        }
        try {
          connector(target, callback);
        } catch (error) {
          callback(error instanceof Error ? error : new Error(String(error)), null);
        }
      },
      (error: unknown) => callback(error instanceof Error ? error : new Error(String(error)), null),
    );
  };

  class TlsSecretsDispatcher extends undici.Dispatcher {
    readonly #book = new ExpiryBook(resolver);
    #current = this.#newAgent();
    #currentExpiry: { cancel(): void } | undefined;
    readonly #retired = new Set<{ agent: UndiciAgent; expiry: { cancel(): void } | undefined }>();
    readonly #onRotate = (event: RotateEvent) => {
      const previous = this.#book.latest;
      this.#book.record(event);
      // The first generation finds nothing to drain: the agent's first connection may be opening with it.
      if (previous > 0) this.#retire(this.#book.notAfter(previous));
      this.#armCurrent(event.generation);
    };

    #unsubscribe = () => {};

    constructor() {
      super();
      this.#unsubscribe = resolver[internal].onGeneration(this.#onRotate);
      if (resolver.generation > 0) this.#armCurrent(resolver.generation);
    }

    #newAgent(): UndiciAgent {
      return new undici.Agent({ ...agentOptions, connect });
    }

    /** At the current generation's notAfter its connections close even if no rotation came. */
    #armCurrent(generation: number): void {
      this.#currentExpiry?.cancel();
      this.#currentExpiry = atExpiry(this.#book.notAfter(generation), () => this.#retire(Date.now()));
    }

    #retire(notAfter: number | undefined): void {
      const agent = this.#current;
      this.#current = this.#newAgent();
      this.#currentExpiry?.cancel();
      this.#currentExpiry = undefined;
      const entry = {
        agent,
        expiry:
          notAfter === undefined ? undefined : runAt(notAfter, () => void agent.destroy().catch(() => {})),
      };
      this.#retired.add(entry);
      agent.close().then(
        () => {
          entry.expiry?.cancel();
          this.#retired.delete(entry);
        },
        () => {},
      );
    }

    override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      return this.#current.dispatch(opts, handler);
    }

    override close(): Promise<void>;
    override close(callback: () => void): void;
    override close(callback?: () => void): Promise<void> | void {
      const done = this.#shutdown((agent) => agent.close());
      if (!callback) return done;
      done.then(callback, callback);
    }

    override destroy(): Promise<void>;
    override destroy(err: Error | null): Promise<void>;
    override destroy(callback: () => void): void;
    override destroy(err: Error | null, callback: () => void): void;
    override destroy(
      errOrCallback?: Error | null | (() => void),
      callback?: () => void,
    ): Promise<void> | void {
      const err = typeof errOrCallback === 'function' ? null : (errOrCallback ?? null);
      const cb = typeof errOrCallback === 'function' ? errOrCallback : callback;
      const done = this.#shutdown((agent) => agent.destroy(err));
      if (!cb) return done;
      done.then(cb, cb);
    }

    async #shutdown(end: (agent: UndiciAgent) => Promise<void>): Promise<void> {
      this.#unsubscribe();
      this.#currentExpiry?.cancel();
      const agents = [this.#current, ...[...this.#retired].map((entry) => entry.agent)];
      for (const entry of this.#retired) entry.expiry?.cancel();
      this.#retired.clear();
      await Promise.all(agents.map((agent) => end(agent).catch(() => {})));
    }
  }

  return new TlsSecretsDispatcher();
}
