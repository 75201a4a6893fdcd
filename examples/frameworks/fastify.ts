/**
 * Fastify 5 creates its own server (`https`, or `http2.createSecureServer` with `http2: true`). Pass the
 * server's non-secret TLS options at construction, then `attach()` before `listen()`: attach resolves the first
 * bundle and installs it, and every later generation, with `setSecureContext`. In an application, import from
 * 'tls-secrets'.
 */
import type { SecureServerOptions } from 'node:http2';
import type { ServerOptions } from 'node:https';
import fastify from 'fastify';
import { attach, type Resolver } from '../../src/index.js';

/** Asks for and verifies a client certificate; the CA it is verified against comes from the resolver. */
const mtls = { requestCert: true, rejectUnauthorized: true } as const;

/** An HTTPS Fastify app whose certificate, key, CA and CRL follow `tls`. Listening is left to the caller. */
export async function httpsApp(tls: Resolver) {
  const options: ServerOptions = { ...mtls };
  const app = fastify({ https: options });
  app.get('/hello', async (request) => ({ hello: 'world', http: request.raw.httpVersion }));
  await app.ready();
  // Rejects (and nothing listens) when the store or the bundle is bad.
  await attach(app.server, tls, options);
  return app;
}

/** The same over HTTP/2 (with HTTP/1.1 for clients that do not speak it). */
export async function http2App(tls: Resolver) {
  const options: SecureServerOptions = { ...mtls, allowHTTP1: true };
  const app = fastify({ http2: true, https: options });
  app.get('/hello', async (request) => ({ hello: 'world', http: request.raw.httpVersion }));
  await app.ready();
  await attach(app.server, tls, options);
  return app;
}
