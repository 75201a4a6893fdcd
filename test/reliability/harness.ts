/**
 * The outage harness shared by the fault-matrix tests: a server from `createServer()` and a client through
 * `connect()` keep handshaking while a fault is on; store calls are counted per resolver with timestamps,
 * and the figures (handshakes, calls during the outage, recovery time) come back for assertions and report.
 */
import type { Server } from 'node:tls';
import {
  connect,
  createResolver,
  createServer,
  type FetchResult,
  type Provider,
  type Resolver,
  type ResolverOptions,
  type SecretRef,
  type TlsSecretsError,
  type TlsSecretsSpec,
} from '../../src/index.js';
import type { VersionProbe } from '../../src/provider.js';
import { createRef } from '../../src/provider-kit.js';
import { closeServer, listen, sleep } from '../helpers/tls.js';

/** Resolver settings of the fault matrix: short steps so an outage of OUTAGE_MS spans several backoffs. */
export const FAULT_OPTIONS = {
  refreshIntervalMs: 200,
  jitter: 0.1,
  retryInitialDelayMs: 50,
  retryMaxDelayMs: 400,
  fetchTimeoutMs: 300,
} satisfies ResolverOptions;
export const OUTAGE_MS = 1_200;
/**
 * Recovery must come within one capped backoff step; a request in flight when the fault clears may still
 * take up to fetchTimeoutMs, and the rest covers the probe, the fetch and a busy CI box.
 */
export const RECOVERY_SLACK_MS = FAULT_OPTIONS.fetchTimeoutMs + 350;
/** A store host that never resolves (the .invalid TLD is reserved). */
export const DNS_FAILURE = 'http://tls-secrets-nonexistent.invalid:1';

/** A provider whose store calls (fetches and version probes; it offers no batching) are timestamped. */
export interface CountedProvider extends Provider {
  readonly calls: number[];
  /** The same reference, addressed through this counter. */
  wrap(ref: SecretRef): SecretRef;
  /** Calls started within [from, to). */
  between(from: number, to: number): number;
}

/**
 * Counts what the resolver asks of `inner`. `route` picks, per call, which provider serves it: the DNS fault
 * swaps in a provider whose endpoint host does not resolve, with references of the same id.
 */
export function counted(
  inner: Provider,
  route: (ref: SecretRef) => { provider: Provider; ref: SecretRef } = (ref) => ({
    provider: inner,
    ref: { ...ref, provider: inner },
  }),
): CountedProvider {
  const calls: number[] = [];
  const provider: CountedProvider = {
    name: inner.name,
    calls,
    wrap: (ref) => createRef(provider, ref.id, ref.options),
    between: (from, to) => calls.filter((at) => at >= from && at < to).length,
    fetch(ref: SecretRef, signal: AbortSignal): Promise<FetchResult> {
      calls.push(Date.now());
      const target = route(ref);
      return target.provider.fetch(target.ref, signal);
    },
  };
  if (inner.currentVersion) {
    Object.assign(provider, {
      currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | VersionProbe | undefined> {
        calls.push(Date.now());
        const target = route(ref);
        return target.provider.currentVersion?.(target.ref, signal) ?? Promise.resolve(undefined);
      },
    });
  }
  return provider;
}

export interface BackoffOptions {
  retryInitialDelayMs: number;
  retryMaxDelayMs: number;
}

/**
 * The most refresh cycles a resolver can start within `durationMs` of failures. After the k-th failure in a
 * row it waits at least half of min(retryMaxDelayMs, retryInitialDelayMs * 2^(k-1)) (equal jitter), so the
 * count is 1 (a cycle may start right at the fault) plus the waits that fit, plus 1 for timer slop.
 */
export function maxCycles(durationMs: number, options: BackoffOptions): number {
  let elapsed = 0;
  let cycles = 1;
  for (let k = 1; ; k++) {
    const step = Math.min(options.retryMaxDelayMs, options.retryInitialDelayMs * 2 ** Math.min(k - 1, 30));
    elapsed += step / 2;
    if (elapsed > durationMs) break;
    cycles += 1;
  }
  return cycles + 1;
}

export interface Handshake {
  readonly at: number;
  readonly ok: boolean;
  readonly serial?: string;
  readonly error?: unknown;
}

export interface Traffic {
  readonly handshakes: Handshake[];
  stop(): Promise<void>;
  okBetween(from: number, to: number): number;
  failedBetween(from: number, to: number): Handshake[];
  /** Serial of the server certificate seen by the last successful handshake. */
  lastSerial(): string | undefined;
}

/** Keeps `loops` clients connecting through `connect()` one after another until stopped. */
export function startTraffic(client: Resolver, port: number, loops = 2, pauseMs = 5): Traffic {
  const handshakes: Handshake[] = [];
  let running = true;
  const once = async () => {
    const at = Date.now();
    try {
      // Full handshakes, so that every one shows the server certificate in use.
      const socket = await connect(client, {
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        resumeSessions: false,
      });
      const serial = socket.getPeerCertificate().serialNumber;
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.once('end', resolve);
        socket.resume();
      });
      socket.destroy();
      handshakes.push({ at, ok: true, serial });
    } catch (error) {
      handshakes.push({ at, ok: false, error });
    }
  };
  const loop = async () => {
    while (running) {
      await once();
      await sleep(pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: loops }, loop));
  return {
    handshakes,
    async stop() {
      running = false;
      await done;
    },
    okBetween: (from, to) => handshakes.filter((h) => h.ok && h.at >= from && h.at < to).length,
    failedBetween: (from, to) => handshakes.filter((h) => !h.ok && h.at >= from && h.at < to),
    lastSerial: () => handshakes.findLast((h) => h.ok)?.serial,
  };
}

export interface Stage {
  readonly server: Server;
  readonly port: number;
  readonly serverTls: Resolver;
  readonly clientTls: Resolver;
  readonly errors: TlsSecretsError[];
  readonly stales: number[];
  readonly rotations: { at: number; generation: number }[];
  close(): Promise<void>;
}

/** A server whose key and certificate come from `serverSpec`, and a client trusting `clientSpec`'s CA. */
export async function startStage(
  serverSpec: TlsSecretsSpec,
  clientSpec: TlsSecretsSpec,
  options: ResolverOptions,
): Promise<Stage> {
  const serverTls = createResolver(serverSpec, options);
  const clientTls = createResolver(clientSpec, options);
  const errors: TlsSecretsError[] = [];
  const stales: number[] = [];
  const rotations: { at: number; generation: number }[] = [];
  for (const resolver of [serverTls, clientTls]) {
    resolver.on('error', (error) => errors.push(error));
    resolver.on('stale', () => stales.push(Date.now()));
  }
  serverTls.on('rotate', (event) => rotations.push({ at: Date.now(), generation: event.generation }));
  const server = createServer(serverTls, {}, (socket) => socket.end('ok'));
  const port = await listen(server);
  await clientTls.resolve();
  return {
    server,
    port,
    serverTls,
    clientTls,
    errors,
    stales,
    rotations,
    async close() {
      await closeServer(server);
      await Promise.all([serverTls.close(), clientTls.close()]);
    },
  };
}

/** Polls until `check` returns a value, or undefined once `timeoutMs` has passed. */
export async function waitFor<T>(check: () => T | undefined, timeoutMs: number, everyMs = 5) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) return undefined;
    await sleep(everyMs);
  }
}

export interface Outage {
  /** Turns the fault on. */
  inject(): Promise<void> | void;
  /** Turns it off again. */
  clear(): Promise<void> | void;
  /** Writes a new server bundle to the store, a third into the outage, bypassing the fault. */
  rotate?(): Promise<void>;
  /** Runs a third into the outage, after `rotate`: checks that need the fault on. */
  during?(): Promise<void>;
  readonly outageMs: number;
}

export interface OutageFigures {
  readonly handshakesOk: number;
  readonly handshakesFailed: number;
  readonly okDuringOutage: number;
  /** Store calls of the server's and of the client's resolver while the fault was on. */
  readonly serverCalls: number;
  readonly clientCalls: number;
  /** What `maxCycles` allows each resolver (one store call per cycle here: one reference id each). */
  readonly allowedCalls: number;
  /** From clearing the fault to the rotation (or to both resolvers no longer stale); undefined if never. */
  readonly recoveryMs: number | undefined;
  readonly staleDuringOutage: boolean;
  readonly errorsDuringOutage: readonly TlsSecretsError[];
  /** Server certificate serials the client saw before the fault and after recovery. */
  readonly serialBefore: string | undefined;
  readonly serialAfter: string | undefined;
  readonly failures: readonly Handshake[];
}

/** Runs traffic through `stage`, applies `outage`, and measures; the caller asserts. */
export async function runOutage(
  stage: Stage,
  counters: { server: CountedProvider; client: CountedProvider },
  outage: Outage,
  options: BackoffOptions & { recoveryTimeoutMs: number },
): Promise<OutageFigures> {
  const traffic = startTraffic(stage.clientTls, stage.port);
  try {
    // A few healthy cycles first, so the outage starts from a steady state.
    await sleep(250);
    const serialBefore = traffic.lastSerial();
    const errorsBefore = stage.errors.length;
    const faultAt = Date.now();
    await outage.inject();
    let staleDuringOutage = false;
    const watchStale = setInterval(() => {
      staleDuringOutage ||= stage.serverTls.status().stale;
    }, 10);
    await sleep(outage.outageMs / 3);
    await outage.rotate?.();
    await outage.during?.();
    await sleep(outage.outageMs - (Date.now() - faultAt));
    clearInterval(watchStale);
    const clearAt = Date.now();
    await outage.clear();
    const errorsDuringOutage = stage.errors.slice(errorsBefore);

    const recoveredAt = await waitFor(() => {
      if (outage.rotate) return stage.rotations.find((r) => r.at >= clearAt)?.at;
      const calm = !stage.serverTls.status().stale && !stage.clientTls.status().stale;
      return calm ? Date.now() : undefined;
    }, options.recoveryTimeoutMs);
    // Let the client see the recovered server before stopping.
    await sleep(150);
    await traffic.stop();
    const failures = traffic.handshakes.filter((h) => !h.ok);
    return {
      handshakesOk: traffic.handshakes.length - failures.length,
      handshakesFailed: failures.length,
      okDuringOutage: traffic.okBetween(faultAt, clearAt),
      serverCalls: counters.server.between(faultAt, clearAt),
      clientCalls: counters.client.between(faultAt, clearAt),
      allowedCalls: maxCycles(clearAt - faultAt, options),
      recoveryMs: recoveredAt === undefined ? undefined : recoveredAt - clearAt,
      staleDuringOutage,
      errorsDuringOutage,
      serialBefore,
      serialAfter: traffic.lastSerial(),
      failures,
    };
  } finally {
    await traffic.stop();
  }
}

/** One line per fault for the issue note. */
export function describeFigures(label: string, figures: OutageFigures, outageMs: number): string {
  const perMinute = (calls: number) => Math.round((calls * 60_000) / outageMs);
  return (
    `[fault] ${label}: handshakes ok ${figures.handshakesOk} (${figures.okDuringOutage} during the outage), ` +
    `failed ${figures.handshakesFailed}; store calls during ${outageMs} ms: server ${figures.serverCalls}, ` +
    `client ${figures.clientCalls} (allowed ${figures.allowedCalls} each; ~${perMinute(figures.serverCalls)}/min ` +
    `at these test delays); recovery ${figures.recoveryMs ?? 'none'} ms`
  );
}
