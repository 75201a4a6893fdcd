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
  sessions: Map<string, Buffer>;
}

const sessionCaches = new WeakMap<Resolver, SessionCache>();

/** Sessions of an older generation were made with an older client certificate: drop them on rotation. */
function sessionsOf(resolver: Resolver): Map<string, Buffer> {
  let cache = sessionCaches.get(resolver);
  if (!cache || cache.generation !== resolver.generation) {
    // Session state of the old generation is ours alone (tls.connect parses it when called): wipe it.
    for (const session of cache?.sessions.values() ?? []) session.fill(0);
    cache = { generation: resolver.generation, sessions: new Map() };
    sessionCaches.set(resolver, cache);
  }
  return cache.sessions;
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
        if (resolver.generation === generation) sessionsOf(resolver).set(target, next);
      });
    }
    return waitForHandshake(socket);
  };

  try {
    return await attempt(true);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!retryOnVerifyFailure || typeof code !== 'string' || !VERIFY_FAILURES.has(code)) throw error;
    sessionsOf(resolver).delete(target);
    // Shares the resolver's one backoff: a peer that keeps failing verification cannot make a store storm.
    if (!(await resolver[internal].verifyFailed(used))) throw error;
    return attempt(false);
  }
}
