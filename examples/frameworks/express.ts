/**
 * Express and Koa hand you a request listener; you create the `https` server yourself, so it is the plain
 * `attach()` case: the server's non-secret TLS options at construction, then `attach()` before `listen()`.
 * In an application, import from 'tls-secrets'.
 */
import https from 'node:https';
import express from 'express';
import Koa from 'koa';
import { attach, type Resolver } from '../../src/index.js';

/** Asks for and verifies a client certificate; the CA it is verified against comes from the resolver. */
const mtls = { requestCert: true, rejectUnauthorized: true } as const;

/** An Express app on an HTTPS server that follows `tls`. Listening is left to the caller. */
export async function expressServer(tls: Resolver): Promise<https.Server> {
  const app = express();
  app.get('/hello', (_request, response) => {
    response.json({ hello: 'express' });
  });
  const server = https.createServer({ ...mtls }, app);
  // Rejects (and nothing listens) when the store or the bundle is bad.
  await attach(server, tls, { ...mtls });
  return server;
}

/** A Koa app on an HTTPS server that follows `tls`. Listening is left to the caller. */
export async function koaServer(tls: Resolver): Promise<https.Server> {
  const app = new Koa();
  app.use((context) => {
    context.body = { hello: 'koa' };
  });
  const server = https.createServer({ ...mtls }, app.callback());
  await attach(server, tls, { ...mtls });
  return server;
}
