/**
 * Servers that follow the resolver: each new generation is installed with `setSecureContext`, given the
 * COMPLETE options (it resets every option left out: an mTLS server swapped with only key/cert loses its
 * `ca`) and the current ticket keys (a swap drops them otherwise). Live connections keep their context.
 */
import { type Server, type TLSSocket, type TlsOptions, createServer as tlsCreateServer } from 'node:tls';
import type { Resolver } from './resolver.js';
import { type ResolvedOptions, SECRET_FIELDS } from './types.js';

/** The server's own options with the secret fields of the current generation. */
function contextOptions(base: TlsOptions, resolved: ResolvedOptions): TlsOptions {
  const options: TlsOptions = { ...base };
  for (const field of SECRET_FIELDS) {
    if (resolved[field] !== undefined) Object.assign(options, { [field]: resolved[field] });
  }
  return options;
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
  const install = (resolved: ResolvedOptions) => {
    const options = contextOptions(serverOptions, resolved);
    options.ticketKeys ??= server.getTicketKeys();
    server.setSecureContext(options);
  };
  const onRotate = () => {
    // resolve() answers from the generation just swapped in; a failure is already reported by the resolver.
    resolver.resolve().then(install, () => undefined);
  };
  // The certificate must allow server auth: checked at the gate, once per generation, never per handshake.
  resolver.declareRole('server');
  const first = await resolver.resolve();
  resolver.declareRole('server');
  install(first);
  resolver.on('rotate', onRotate);
  const detach = () => {
    resolver.off('rotate', onRotate);
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
