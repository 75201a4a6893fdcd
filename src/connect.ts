/**
 * `tls.connect` on the resolver's cached SecureContext: one context per generation, never one per
 * connection, and the last TLS session per target offered again (resumption is ~2x a full mTLS handshake).
 */
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { internal, type Resolver } from './resolver/index.js';
import type { SecretField } from './types.js';

export interface ConnectOptions extends Omit<ConnectionOptions, SecretField | 'secureContext' | 'session'> {
  /**
   * After a certificate verification failure, ask the resolver for a newer bundle and, if one is served,
   * try once more. The resolver refreshes at most once per generation and backoff step. Default true.
   */
  retryOnVerifyFailure?: boolean;
  /** Offer the last session made with the current generation to the same target. Default true. */
  resumeSessions?: boolean;
}

/** Failures that a newer CA bundle or client certificate in the store can cure. */
const VERIFY_FAILURES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
]);

interface SessionCache {
  generation: number;
  readonly sessions: Map<string, Buffer>;
}

const sessionCaches = new WeakMap<Resolver, SessionCache>();

/** Session state is ours alone (tls.connect parses a session when called): zero-filled when let go of. */
function wipe(session: Buffer | undefined): void {
  session?.fill(0);
}

function wipeAll(cache: SessionCache): void {
  for (const session of cache.sessions.values()) wipe(session);
  cache.sessions.clear();
}

/**
 * Sessions of an older generation were made with an older client certificate: wiped at the swap itself (a
 * client that rotates and then goes idle keeps none) and at close().
 */
function sessionsOf(resolver: Resolver): Map<string, Buffer> {
  let cache = sessionCaches.get(resolver);
  if (!cache) {
    const created: SessionCache = { generation: resolver.generation, sessions: new Map() };
    resolver[internal].onGeneration((event) => {
      wipeAll(created);
      created.generation = event.generation;
    });
    resolver[internal].onClose(() => wipeAll(created));
    sessionCaches.set(resolver, created);
    cache = created;
  }
  if (cache.generation !== resolver.generation) {
    wipeAll(cache);
    cache.generation = resolver.generation;
  }
  return cache.sessions;
}

/** Keeps `session` as the one offered to `target` next; the one it replaces is wiped. */
function keepSession(resolver: Resolver, target: string, session: Buffer): void {
  const sessions = sessionsOf(resolver);
  const replaced = sessions.get(target);
  if (replaced !== session) wipe(replaced);
  sessions.set(target, session);
}

function dropSession(resolver: Resolver, target: string): void {
  const sessions = sessionsOf(resolver);
  wipe(sessions.get(target));
  sessions.delete(target);
}

function waitForHandshake(socket: TLSSocket): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => {
      socket.off('secureConnect', onConnect);
      socket.destroy();
      reject(error);
    };
    const onConnect = () => {
      socket.off('error', onError);
      resolve(socket);
    };
    socket.once('error', onError);
    socket.once('secureConnect', onConnect);
  });
}

/** Resolves on 'secureConnect' with a socket whose context comes from the resolver's current generation. */
export async function connect(resolver: Resolver, options: ConnectOptions): Promise<TLSSocket> {
  const { retryOnVerifyFailure = true, resumeSessions = true, ...connectOptions } = options;
  const target = `${connectOptions.host ?? 'localhost'}:${connectOptions.port ?? ''}:${connectOptions.servername ?? ''}`;

  /** The generation of the last handshake attempted, read with its options. */
  let used = 0;
  const attempt = async (offerSession: boolean): Promise<TLSSocket> => {
    const latest = await resolver.resolve();
    // The client certificate must allow client auth: the generation about to be used is checked (once per
    // generation); the role binds later generations only once it passed.
    resolver.declareRole('client');
    // Options and generation read together, as checked: a rotation during the await is not mislabelled.
    const { generation, options: resolved } = resolver.current() ?? { generation: 0, options: latest };
    const sessions = sessionsOf(resolver);
    used = generation;
    const session = offerSession && resumeSessions ? sessions.get(target) : undefined;
    const socket = tlsConnect({ ...resolved, ...connectOptions, ...(session ? { session } : {}) });
    if (resumeSessions) {
      socket.on('session', (next: Buffer) => {
        // TLS 1.3 sends two tickets per handshake: the second replaces (and wipes) the first.
        if (resolver.generation === generation) keepSession(resolver, target, next);
      });
    }
    return waitForHandshake(socket);
  };

  try {
    return await attempt(true);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!retryOnVerifyFailure || typeof code !== 'string' || !VERIFY_FAILURES.has(code)) throw error;
    dropSession(resolver, target);
    // Shares the resolver's one backoff: a peer that keeps failing verification cannot make a store storm.
    if (!(await resolver[internal].verifyFailed(used))) throw error;
    return attempt(false);
  }
}
