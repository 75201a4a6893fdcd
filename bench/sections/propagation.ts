/**
 * Section 5: how long a change in the store takes to reach a new connection. A server built with
 * `createServer` runs in this process; after each change a client opens full handshakes back to back until
 * one presents the new server certificate. Memory store (push), file store with a Kubernetes-style `..data`
 * symlink swap (directory watch), and env (no push: the resolver's periodic check finds it).
 */
import { mkdir, mkdtemp, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { env } from '../../providers/env.js';
import { file } from '../../providers/file.js';
import { memory } from '../../providers/memory.js';
import { createResolver, createServer, type Resolver, type TlsSecretsSpec } from '../../src/index.js';
import { type BenchContext, type SectionResult, type Target, target } from '../lib/context.js';
import { finish, rawOpener } from '../lib/load.js';
import type { Issued } from '../lib/material.js';
import { fmt, median, percentile, round, table } from '../lib/stats.js';

const SECTION = 'rotationPropagation';
const POLL_INTERVAL_MS = 200;
const JITTER = 0.1;
/** Time allowed past the jittered interval for the fetch, the build and the handshake that shows it. */
const POLL_ALLOWANCE_MS = 25;
const GIVE_UP_MS = 5_000;

interface Store {
  readonly label: string;
  readonly mechanism: string;
  readonly spec: TlsSecretsSpec;
  readonly resolverOptions?: Parameters<typeof createResolver>[1];
  publish(bundle: Issued): Promise<void> | void;
  cleanup?(): Promise<void>;
}

interface Figures {
  readonly store: string;
  readonly mechanism: string;
  readonly swaps: number;
  /** Milliseconds from the change to the first handshake showing it; -1 when it never did (given up). */
  readonly latenciesMs: number[];
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  readonly handshakesWhileWaiting: number;
}

/** A Kubernetes secret volume as kubelet writes it: a timestamped payload dir, `..data` swapped by rename. */
async function kubeVolume(dir: string) {
  let serial = 0;
  const publish = async (files: Record<string, string>) => {
    serial += 1;
    const stamp = `..2026_01_01_00_00_00.${String(serial).padStart(9, '0')}`;
    await mkdir(join(dir, stamp));
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, stamp, name), content);
    const previous = await readlink(join(dir, '..data')).catch(() => undefined);
    await symlink(stamp, join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    for (const name of Object.keys(files)) {
      await symlink(join('..data', name), join(dir, name)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
    }
    if (previous) await rm(join(dir, previous), { recursive: true });
  };
  return { publish };
}

async function measure(
  ctx: BenchContext,
  store: Store,
  bundles: readonly Issued[],
  swaps: number,
): Promise<Figures> {
  const { ca, client } = ctx.material.ec;
  const resolver: Resolver = createResolver(store.spec, store.resolverOptions);
  const server = createServer(resolver, { requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.on('error', () => undefined);
    socket.end('ok\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const open = rawOpener({
    host: '127.0.0.1',
    port,
    secureContext: createSecureContext({ key: client.keyPem, cert: client.certPem, ca: ca.certPem }),
  });
  const latencies: number[] = [];
  let handshakes = 0;
  try {
    for (let i = 0; i < swaps; i++) {
      const bundle = bundles[(i + 1) % bundles.length] as Issued;
      // A random pause puts each change at a random point of the periodic check's cycle.
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * (POLL_INTERVAL_MS / 2)));
      const changedAt = performance.now();
      await store.publish(bundle);
      let seenAt = -1;
      while (performance.now() - changedAt < GIVE_UP_MS) {
        const socket = await open();
        const at = performance.now();
        const serial = socket.getPeerCertificate().serialNumber;
        await finish(socket);
        handshakes += 1;
        if (serial === bundle.serial) {
          seenAt = at;
          break;
        }
      }
      latencies.push(seenAt < 0 ? -1 : seenAt - changedAt);
    }
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await resolver.close();
    await store.cleanup?.();
  }
  const seen = latencies.map((l) => (l < 0 ? Number.POSITIVE_INFINITY : l));
  return {
    store: store.label,
    mechanism: store.mechanism,
    swaps,
    latenciesMs: latencies.map((l) => round(l, 1)),
    p50: round(median(seen), 1),
    p95: round(percentile(seen, 95), 1),
    max: round(Math.max(...seen), 1),
    handshakesWhileWaiting: handshakes,
  };
}

export async function runPropagation(ctx: BenchContext): Promise<SectionResult> {
  const { ca, server, rotation } = ctx.material.ec;
  const bundles = [server, ...rotation];
  const swaps = ctx.smoke ? 3 : 20;
  const initial = { key: server.keyPem, cert: server.certPem };

  const mem = memory({ server: initial, ca: ca.certPem });
  const memoryStore: Store = {
    label: 'memory',
    mechanism: 'push, resolver debounce 50 ms (default)',
    spec: {
      key: mem.ref('server', { jsonKey: 'key' }),
      cert: mem.ref('server', { jsonKey: 'cert' }),
      ca: mem.ref('ca'),
    },
    publish: (bundle) => mem.set('server', { key: bundle.keyPem, cert: bundle.certPem }),
  };

  const dir = await mkdtemp(join(tmpdir(), 'tls-secrets-bench-'));
  const volume = await kubeVolume(dir);
  await volume.publish({ 'tls.key': server.keyPem, 'tls.crt': server.certPem });
  const files = file({ baseDir: dir });
  const fileStore: Store = {
    label: 'file, Kubernetes ..data symlink swap',
    mechanism: 'directory watch, debounce 50 ms + resolver debounce 50 ms (defaults)',
    spec: { key: files.ref('tls.key'), cert: files.ref('tls.crt'), ca: ca.certPem },
    publish: (bundle) => volume.publish({ 'tls.key': bundle.keyPem, 'tls.crt': bundle.certPem }),
    cleanup: async () => {
      await files.close();
      await rm(dir, { recursive: true, force: true });
    },
  };

  const variables: NodeJS.ProcessEnv = { SERVER_KEY: server.keyPem, SERVER_CERT: server.certPem };
  const vars = env({ env: variables });
  const pollingStore: Store = {
    label: `env (no push), refreshIntervalMs ${POLL_INTERVAL_MS} ms`,
    mechanism: `periodic check every ${POLL_INTERVAL_MS} ms, jitter ${JITTER}`,
    spec: { key: vars.ref('SERVER_KEY'), cert: vars.ref('SERVER_CERT'), ca: ca.certPem },
    resolverOptions: { refreshIntervalMs: POLL_INTERVAL_MS, jitter: JITTER },
    publish: (bundle) => {
      variables.SERVER_KEY = bundle.keyPem;
      variables.SERVER_CERT = bundle.certPem;
    },
  };

  const figures: Figures[] = [];
  for (const store of [memoryStore, fileStore, pollingStore])
    figures.push(await measure(ctx, store, bundles, swaps));
  const [, fileFigures, pollingFigures] = figures as [Figures, Figures, Figures];
  const pollLimit = round(POLL_INTERVAL_MS * (1 + JITTER) + POLL_ALLOWANCE_MS, 1);
  const targets: Target[] = [
    target(SECTION, 'file (..data swap) p95 ms', fileFigures.p95, '<=', 500),
    target(
      SECTION,
      'polling p95 ms',
      pollingFigures.p95,
      '<=',
      pollLimit,
      `one interval (${POLL_INTERVAL_MS} ms) + jitter (${JITTER}) + ${POLL_ALLOWANCE_MS} ms for fetch, build and handshake`,
    ),
    target(
      SECTION,
      'changes never seen (gave up after 5 s)',
      figures.reduce((n, f) => n + f.latenciesMs.filter((l) => l < 0).length, 0),
      '==',
      0,
    ),
  ];
  return {
    title: '5. Rotation propagation: store change -> first new connection with the new server certificate',
    tables: [
      table(
        `${swaps} changes per store; full handshakes back to back after each change (ms)`,
        ['store', 'mechanism', 'p50', 'p95', 'max', 'handshakes'],
        figures.map((f) => [
          f.store,
          f.mechanism,
          fmt(f.p50),
          fmt(f.p95),
          fmt(f.max),
          String(f.handshakesWhileWaiting),
        ]),
      ),
    ],
    targets,
    data: { swaps, pollIntervalMs: POLL_INTERVAL_MS, jitter: JITTER, stores: figures },
  };
}
