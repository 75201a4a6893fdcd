/** Real servers and real peers for the gate's tests. */
import {
  type ConnectionOptions,
  type TLSSocket,
  type TlsOptions,
  connect as tlsConnect,
  createServer as tlsCreateServer,
} from 'node:tls';
import { afterEach } from 'vitest';
import { createServer, Resolver } from '../../src/index.js';
import type { ResolverOptions, TlsSecretsSpec } from '../../src/types.js';
import { skewedClock } from '../helpers/clock.js';
import { closeServer, listen } from '../helpers/tls.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

export function track<T extends { close(): Promise<void> | void }>(thing: T): T {
  cleanups.push(() => thing.close());
  return thing;
}

const RETRY_MAX_MS = 60_000;
/** Real timers, and a `now` that `pastBackoff()` moves forward. */
const clock = skewedClock();

/**
 * Moves the resolvers' clock past any backoff step: a test that fixes the store right after a refusal
 * wants its next refresh() or resolve() to reach the store, not to be answered with the last error.
 */
export function pastBackoff(): void {
  clock.advance(RETRY_MAX_MS + 1_000);
}

export function resolverFor(spec: TlsSecretsSpec, options: ResolverOptions = {}): Resolver {
  const resolver = new Resolver(
    spec,
    { refreshIntervalMs: 3_600_000, retryMaxDelayMs: RETRY_MAX_MS, ...options },
    { clock },
  );
  resolver.on('error', () => undefined);
  return track(resolver);
}

/** A tls server of the library on the resolver; the server echoes its peer's verdict and closes. */
export async function serve(
  resolver: Resolver,
  options: Parameters<typeof createServer>[1] = {},
): Promise<number> {
  const server = createServer(resolver, options, (socket) => socket.end('hello'));
  server.on('tlsClientError', () => undefined);
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return port;
}

/**
 * A plain Node tls server given `options` as they are, no gate in front: what peers would see if a refused
 * candidate had been served. Proves a refusal is not a false alarm.
 */
export async function servePlain(options: TlsOptions): Promise<number> {
  const server = tlsCreateServer(options, (socket) => socket.end('hello'));
  server.on('tlsClientError', () => undefined);
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return port;
}

export type Outcome =
  | {
      ok: true;
      socket: TLSSocket;
      session: Buffer | undefined;
      reused: boolean;
      /** The serial number of the certificate the server presented. */
      serial: string | undefined;
    }
  | { ok: false; code: string };

/** One handshake; resolves with the result whatever it is. Waits for the server's close (TLS 1.3 tickets). */
export function handshake(port: number, options: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let session: Buffer | undefined;
    let greeted = false;
    let reused = false;
    let serial: string | undefined;
    const socket = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ...options });
    socket.on('session', (next: Buffer) => {
      session = next;
    });
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused();
      serial = socket.getPeerX509Certificate()?.serialNumber;
    });
    socket.on('data', () => {
      greeted = true;
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      resolve({ ok: false, code: error.code ?? error.message });
    });
    socket.once('close', () => {
      // A TLS 1.3 server refuses a client certificate after the client saw "connected": only the server's
      // greeting proves it accepted the peer.
      resolve(
        greeted
          ? { ok: true, socket, session, reused, serial }
          : { ok: false, code: 'CLOSED_WITHOUT_GREETING' },
      );
    });
    socket.once('end', () => socket.end());
  });
}
