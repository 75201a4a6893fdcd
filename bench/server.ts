/**
 * The bench's TLS servers, run in a child process (`fork` with tsx) so that the client's CPU is measured on
 * its own. Each server is `createServer` from src over a memory store, requires a client certificate, and
 * writes a line before ending: TLS 1.3 sends session tickets only once the server writes.
 *
 * Messages in: `setup` (material per server), `rotate` (start or stop swapping the server certificate every
 * `intervalMs`), `stats`, `close`. Messages out: `ready` (ports), `stats`, `error`.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:tls';
import { memory } from '../providers/memory.js';
import { createResolver, createServer, type Resolver } from '../src/index.js';

export interface ServerMaterial {
  readonly name: string;
  readonly caPem: string;
  readonly keyPem: string;
  readonly certPem: string;
  /** Server bundles to cycle through when rotating (the first is `keyPem`/`certPem`). */
  readonly rotation: readonly { keyPem: string; certPem: string }[];
}

export type ToServer =
  | { type: 'setup'; servers: readonly ServerMaterial[] }
  | { type: 'rotate'; name: string; intervalMs: number }
  | { type: 'stats' }
  | { type: 'close' };

export interface ServerStats {
  readonly rotations: Record<string, number>;
  /** `tlsClientError` events: handshakes the server saw fail. */
  readonly clientErrors: Record<string, number>;
  readonly lastClientError: string | undefined;
  /** CPU time the server process has used (user + system), µs. */
  readonly cpuMicros: number;
}

export type FromServer =
  | { type: 'ready'; ports: Record<string, number> }
  | { type: 'stats'; stats: ServerStats }
  | { type: 'error'; message: string };

interface Running {
  readonly material: ServerMaterial;
  readonly store: ReturnType<typeof memory>;
  readonly resolver: Resolver;
  readonly server: Server;
  timer: NodeJS.Timeout | undefined;
  next: number;
}

const running = new Map<string, Running>();
const rotations: Record<string, number> = {};
const clientErrors: Record<string, number> = {};
let lastClientError: string | undefined;

function cpuMicros(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function send(message: FromServer): void {
  process.send?.(message);
}

async function start(material: ServerMaterial): Promise<number> {
  // Key and certificate live in one secret so that a rotation changes both at once.
  const store = memory({
    server: { key: material.keyPem, cert: material.certPem },
    ca: material.caPem,
  });
  const resolver = createResolver({
    key: store.ref('server', { jsonKey: 'key' }),
    cert: store.ref('server', { jsonKey: 'cert' }),
    ca: store.ref('ca'),
  });
  rotations[material.name] = 0;
  clientErrors[material.name] = 0;
  resolver.on('rotate', (event) => {
    if (event.generation > 1) rotations[material.name] = (rotations[material.name] ?? 0) + 1;
  });
  resolver.on('error', (error) => send({ type: 'error', message: `${material.name}: ${error.message}` }));
  const server = createServer(resolver, { requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.on('error', () => undefined);
    socket.end('ok\n');
  });
  server.on('tlsClientError', (error) => {
    clientErrors[material.name] = (clientErrors[material.name] ?? 0) + 1;
    lastClientError = (error as NodeJS.ErrnoException).code ?? error.message;
  });
  running.set(material.name, { material, store, resolver, server, timer: undefined, next: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A deep backlog: the store section opens 1,000 connections at once.
    server.listen(0, '127.0.0.1', 4096, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

function rotate(name: string, intervalMs: number): void {
  const entry = running.get(name);
  if (!entry) throw new Error(`no server named ${name}`);
  clearInterval(entry.timer);
  entry.timer = undefined;
  if (intervalMs <= 0) return;
  const bundles = [
    { keyPem: entry.material.keyPem, certPem: entry.material.certPem },
    ...entry.material.rotation,
  ];
  entry.timer = setInterval(() => {
    entry.next = (entry.next + 1) % bundles.length;
    const bundle = bundles[entry.next];
    if (!bundle) return;
    entry.store.set('server', { key: bundle.keyPem, cert: bundle.certPem });
    // Refresh at once rather than wait for the push debounce (50 ms by default), which a change every 50 ms
    // would keep postponing.
    entry.resolver.refresh().catch((error: unknown) => send({ type: 'error', message: String(error) }));
  }, intervalMs);
}

async function closeAll(): Promise<void> {
  for (const entry of running.values()) {
    clearInterval(entry.timer);
    entry.server.close();
    await entry.resolver.close();
  }
  process.disconnect?.();
}

process.on('message', (message: ToServer) => {
  const handle = async () => {
    switch (message.type) {
      case 'setup': {
        const ports: Record<string, number> = {};
        for (const material of message.servers) ports[material.name] = await start(material);
        send({ type: 'ready', ports });
        return;
      }
      case 'rotate':
        rotate(message.name, message.intervalMs);
        return;
      case 'stats':
        send({
          type: 'stats',
          stats: {
            rotations: { ...rotations },
            clientErrors: { ...clientErrors },
            lastClientError,
            cpuMicros: cpuMicros(),
          },
        });
        return;
      case 'close':
        await closeAll();
        return;
    }
  };
  handle().catch((error: unknown) => send({ type: 'error', message: String(error) }));
});

// The parent going away must not leave a server behind.
process.on('disconnect', () => process.exit(0));
