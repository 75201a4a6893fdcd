/** Loopback TLS helpers for tests: real servers, real handshakes. */
import { syncBuiltinESMExports } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import tls, { type Server, type TLSSocket } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Provider, SecretRef } from '../../src/provider.js';

const connections = new WeakMap<Server, Set<Socket>>();

export function listen(server: Server): Promise<number> {
  const open = new Set<Socket>();
  connections.set(server, open);
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Closes the server and whatever connections a failed test left open. */
export function closeServer(server: Server): Promise<void> {
  for (const socket of connections.get(server) ?? []) socket.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Reads until the server ends the connection, so TLS 1.3 session tickets have arrived. */
export function readAll(socket: TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.once('end', () => resolve(data));
    socket.once('error', reject);
  });
}

/** Wraps a provider so tests can count and delay its store calls. */
export function countingProvider<P extends Provider>(
  inner: P,
): P & { fetches: string[]; probes: string[]; delay: number } {
  const counted = Object.create(inner) as P & { fetches: string[]; probes: string[]; delay: number };
  counted.fetches = [];
  counted.probes = [];
  counted.delay = 0;
  counted.fetch = async (ref: SecretRef, signal: AbortSignal) => {
    counted.fetches.push(ref.id);
    if (counted.delay) await new Promise((r) => setTimeout(r, counted.delay));
    return inner.fetch({ ...ref, provider: inner }, signal);
  };
  if (inner.currentVersion) {
    counted.currentVersion = async (ref: SecretRef, signal: AbortSignal) => {
      counted.probes.push(ref.id);
      return inner.currentVersion?.({ ...ref, provider: inner }, signal);
    };
  }
  return counted;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `check` passes or the time is up; returns the last result. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(20);
    }
  }
}

/**
 * Counts `tls.createSecureContext` calls from anywhere (named imports included) until `restore()`: how many
 * contexts were built, and (`live()`, after collecting garbage) how many of them are still reachable.
 */
export function countContexts(): { count(): number; live(): Promise<number>; restore(): void } {
  const original = tls.createSecureContext;
  let calls = 0;
  let collected = 0;
  const registry = new FinalizationRegistry<void>(() => {
    collected += 1;
  });
  (tls as { createSecureContext: typeof original }).createSecureContext = (options) => {
    calls += 1;
    const context = original(options);
    registry.register(context, undefined);
    return context;
  };
  syncBuiltinESMExports();
  return {
    count: () => calls,
    live: async () => {
      await collectGarbage(6);
      return calls - collected;
    },
    restore: () => {
      (tls as { createSecureContext: typeof original }).createSecureContext = original;
      syncBuiltinESMExports();
    },
  };
}

/** `global.gc`, exposed at run time where node started without --expose-gc (vitest's workers, plain tsx). */
function exposedGc(): () => void {
  if (typeof globalThis.gc === 'function') return globalThis.gc as () => void;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * `rounds` collections, each followed by a turn of the loop: finalizers run in a later task than the
 * collection, and a TLS socket's teardown frees its context and buffers over more than one cycle. A few
 * rounds, never a fixed wait.
 */
export async function collectGarbage(rounds: number): Promise<void> {
  const gc = exposedGc();
  for (let round = 0; round < rounds; round++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
