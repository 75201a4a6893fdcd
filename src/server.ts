/**
 * Servers that follow the resolver: each new generation is installed with `setSecureContext`, given the
 * COMPLETE options (it resets every option left out: an mTLS server swapped with only key/cert loses its
 * `ca`) and the current ticket keys (a swap drops them otherwise). Live connections keep their context.
 *
 * Revocation must bite: a TLS session resumes without any certificate check (TLS 1.2 tickets, TLS 1.3
 * PSK tickets), so a client revoked by a new CRL, or whose CA was dropped, would keep getting in by
 * resuming. When the trust material (`ca`, `crl`) changes, sessions made under the old one stop resuming:
 * the ticket keys change (fresh random ones, or keys bound to the trust digest where they come from a
 * store or the server's options, so a fleet sharing them still shares sessions) and so does the
 * `sessionIdContext` (OpenSSL refuses to resume a session of another context, which also covers session-ID
 * caches kept through 'newSession'/'resumeSession'). When only the server's own key or certificate
 * changes, the keys and context stay, and resumption continues.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import { type Server, type TLSSocket, type TlsOptions, createServer as tlsCreateServer } from 'node:tls';
import { internal, type Resolver } from './resolver/index.js';
import { type ResolvedOptions, SECRET_FIELDS } from './types.js';

/** The server's own options with the secret fields of the current generation. */
function contextOptions(base: TlsOptions, resolved: ResolvedOptions): TlsOptions {
  const options: TlsOptions = { ...base };
  for (const field of SECRET_FIELDS) {
    if (resolved[field] !== undefined) Object.assign(options, { [field]: resolved[field] });
  }
  return options;
}

/** A digest of who may connect, from the canonical `ca` and `crl` entries the gate validated. */
function trustDigest(resolved: ResolvedOptions): string | undefined {
  const entries = [resolved.ca, resolved.crl].map((value) =>
    value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String),
  );
  if (entries.every((list) => list.length === 0)) return undefined;
  return createHash('sha256').update(JSON.stringify(entries)).digest('hex');
}

/** Ticket keys bound to the trust: equal for equal keys and trust, unrelated once the trust changes. */
function bindTicketKeys(keys: Buffer, trust: string): Buffer {
  return Buffer.from(
    hkdfSync('sha256', keys, Buffer.from(trust, 'hex'), 'tls-secrets server ticket keys', 48),
  );
}

/**
 * Node's tls.Server keeps the options it was last given as properties (`server.key`, `server.pfx`, …), so
 * `inspect(server)` or a logger serialising it would print the private key. The secure context is built by
 * then and Node reads none of them again: they are dropped.
 */
function forgetSecretOptions(server: Server): void {
  const holder = server as unknown as Record<string, unknown>;
  for (const field of SECRET_FIELDS) if (field in holder) holder[field] = undefined;
}

/**
 * Keeps `server` on the resolver's current generation. Resolves once the first generation is installed;
 * the returned function stops following (also done when the server closes).
 */
export async function attach(
  server: Server,
  resolver: Resolver,
  serverOptions: TlsOptions = {},
): Promise<() => void> {
  let installed: { trust: string | undefined } | undefined;
  const install = (resolved: ResolvedOptions) => {
    const options = contextOptions(serverOptions, resolved);
    const trust = trustDigest(resolved);
    const trustChanged = installed !== undefined && trust !== installed.trust;
    if (resolved.ticketKeys !== undefined) {
      // From a store: the gate already bound them to the trust material.
    } else if (serverOptions.ticketKeys !== undefined) {
      if (trust !== undefined) options.ticketKeys = bindTicketKeys(serverOptions.ticketKeys, trust);
    } else {
      // The server's own keys (Node's, or set with setTicketKeys) carry over unless the trust changed.
      options.ticketKeys = trustChanged ? randomBytes(48) : server.getTicketKeys();
    }
    if (trust !== undefined) {
      options.sessionIdContext = createHash('sha256')
        .update(`${serverOptions.sessionIdContext ?? ''}\n${trust}`)
        .digest('hex')
        .slice(0, 32);
    }
    installed = { trust };
    server.setSecureContext(options);
    forgetSecretOptions(server);
  };
  const first = await resolver.resolve();
  // The certificate must allow server auth: the generation about to be installed is checked (once per
  // generation, never per handshake); the role binds later generations only once it passed.
  resolver.declareRole('server');
  install(resolver.current()?.options ?? first);
  // An internal subscription, not a 'rotate' listener: an application listener that throws cannot keep
  // the server on the old certificate.
  const unsubscribe = resolver[internal].onGeneration((_event, options) => install(options));
  const detach = () => {
    unsubscribe();
    server.off('close', detach);
  };
  server.once('close', detach);
  return detach;
}

/**
 * A `tls.Server` served from the resolver. Nothing is fetched until `listen()`, which binds only after
 * the first bundle is in place (a fetch or validation failure is emitted as the server's 'error').
 */
export function createServer(
  resolver: Resolver,
  options: TlsOptions = {},
  secureConnectionListener?: (socket: TLSSocket) => void,
): Server {
  const pskCallback = resolver.serverPskCallback();
  const server = tlsCreateServer(
    { ...(pskCallback ? { pskCallback } : {}), ...options },
    secureConnectionListener,
  );
  const listen = server.listen.bind(server) as (...args: unknown[]) => Server;
  server.listen = ((...args: unknown[]) => {
    attach(server, resolver, options).then(
      () => listen(...args),
      (error: unknown) => server.emit('error', error),
    );
    return server;
  }) as Server['listen'];
  return server;
}
