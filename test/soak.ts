/**
 * Soak: mutual-TLS handshakes through `connect()` against a server from `createServer()`, `--concurrency`
 * at once (default 32) for `--seconds` (default 60), while the server's and the client's certificates
 * rotate in the store every `--rotate-ms` (default 50). Reports handshakes ok/failed, rotations, the heap
 * after GC at the start and the end of the run (both at rest, with server and resolvers still live, so a
 * generation the resolver failed to let go of would show), and the handles before and after `close()`.
 * Exits non-zero on any failed handshake, heap growth over 10 % or a leaked handle; on success it does not
 * call `process.exit()`, so a timer or socket left behind would keep it alive (the test that runs it checks
 * that it ends by itself).
 *
 *   npm run soak -- --seconds 60
 */
import { createHook } from 'node:async_hooks';
import { parseArgs } from 'node:util';
import { memory } from '../providers/memory.js';
import { connect, createResolver, createServer } from '../src/index.js';
import { createTestCA, type Issued, randomTicketKeys } from './fixtures/ca.js';
import { closeServer, collectGarbage, listen, readAll } from './helpers/tls.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    concurrency: { type: 'string', default: '32' },
    'rotate-ms': { type: 'string', default: '50' },
  },
});
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);
const rotateMs = Number(values['rotate-ms']);
for (const [name, value] of [
  ['seconds', seconds],
  ['concurrency', concurrency],
  ['rotate-ms', rotateMs],
] as const) {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
}

const MAX_HEAP_GROWTH = 0.1;

async function settledHeap(): Promise<number> {
  await collectGarbage(4);
  return process.memoryUsage().heapUsed;
}

/**
 * Timers, sockets and watchers alive right now, unref'ed ones included: `getActiveResourcesInfo()` lists only
 * what holds the loop open, and a forgotten unref'ed interval is a leak too.
 */
const TRACKED = new Set(['Timeout', 'TCPWRAP', 'TCPSERVERWRAP', 'TLSWRAP', 'FSEVENTWRAP', 'STATWATCHER']);
const live = new Map<number, string>();
createHook({
  init(id, type) {
    if (TRACKED.has(type)) live.set(id, type);
  },
  destroy(id) {
    live.delete(id);
  },
}).enable();
const liveResources = () => [...live.values()].sort();

/** Resource names present after but not before, counted as a multiset. */
function leakedResources(before: string[], after: string[]): string[] {
  const left = [...before];
  const leaked: string[] = [];
  for (const name of after) {
    const at = left.indexOf(name);
    if (at >= 0) left.splice(at, 1);
    else leaked.push(name);
  }
  return leaked;
}

async function main(): Promise<number> {
  const handlesBefore = process.getActiveResourcesInfo();
  const liveBefore = liveResources();

  const ca = await createTestCA();
  // A pool to rotate through: minting a certificate every 50 ms would measure the CA, not the library.
  const servers: Issued[] = [];
  const clients: Issued[] = [];
  for (let i = 0; i < 6; i++) {
    servers.push(await ca.issue({ commonName: 'localhost' }));
    clients.push(await ca.issue({ commonName: `client-${i}` }));
  }
  const first = (pool: Issued[]) => pool[0] as Issued;
  const store = memory({
    'server/key': first(servers).keyPem,
    'server/cert': first(servers).certPem,
    'client/key': first(clients).keyPem,
    'client/cert': first(clients).certPem,
    ca: ca.certPem,
    tickets: randomTicketKeys(),
  });
  const serverTls = createResolver(
    {
      key: store.ref('server/key'),
      cert: store.ref('server/cert'),
      ca: store.ref('ca'),
      ticketKeys: store.ref('tickets'),
    },
    { debounceMs: 5 },
  );
  const clientTls = createResolver(
    { key: store.ref('client/key'), cert: store.ref('client/cert'), ca: store.ref('ca') },
    { debounceMs: 5 },
  );
  const server = createServer(serverTls, { requestCert: true, rejectUnauthorized: true }, (socket) =>
    socket.end('ok'),
  );
  const port = await listen(server);

  let ok = 0;
  let failed = 0;
  const failures = new Map<string, number>();
  const handshake = async () => {
    try {
      const socket = await connect(clientTls, { host: '127.0.0.1', port, servername: 'localhost' });
      const reply = await readAll(socket);
      socket.destroy();
      if (reply !== 'ok') throw new Error(`unexpected reply ${JSON.stringify(reply)}`);
      ok += 1;
    } catch (error) {
      failed += 1;
      const code = (error as { code?: string }).code ?? (error as Error).message;
      failures.set(code, (failures.get(code) ?? 0) + 1);
    }
  };

  let tick = 0;
  const rotate = () => {
    tick += 1;
    const side = tick % 2 === 0 ? 'server' : 'client';
    const pool = side === 'server' ? servers : clients;
    const next = pool[Math.floor(tick / 2) % pool.length] as Issued;
    store.set(`${side}/key`, next.keyPem);
    store.set(`${side}/cert`, next.certPem);
  };
  /** Handshakes and rotations for `ms`, then quiet: nothing in flight when it returns. */
  const phase = async (ms: number) => {
    const rotation = setInterval(rotate, rotateMs);
    const deadline = Date.now() + ms;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (Date.now() < deadline) await handshake();
      }),
    );
    clearInterval(rotation);
    // Let a rotation pushed just before the end land, so both heaps are taken at rest.
    await new Promise((resolve) => setTimeout(resolve, 50));
  };

  // Warm up on the same workload (rotations included), so the starting heap already holds the compiled code
  // and caches a running service holds; then the measured run, compared with the start at rest.
  await phase(Math.min(2_000, (seconds * 1_000) / 5));
  const heapStart = await settledHeap();
  await phase(seconds * 1_000);
  const heapEnd = await settledHeap();
  const rotations = serverTls.generation - 1 + (clientTls.generation - 1);

  await closeServer(server);
  await Promise.all([serverTls.close(), clientTls.close(), store.close()]);
  const heapAfterClose = await settledHeap();
  // Sockets closed a moment ago may still be tearing down: give them the loop turns they need.
  await new Promise((resolve) => setTimeout(resolve, 100));
  // A timer's destroy hook runs after its callback: let the one just awaited report itself gone.
  for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
  const handlesAfter = process.getActiveResourcesInfo();
  const liveAfter = liveResources();
  const leaked = [
    ...leakedResources(handlesBefore, handlesAfter),
    ...leakedResources(liveBefore, liveAfter).map((name) => `${name} (unref'ed or not)`),
  ];

  const growth = (heapEnd - heapStart) / heapStart;
  const report = {
    seconds,
    concurrency,
    rotateMs,
    handshakesOk: ok,
    handshakesFailed: failed,
    failures: Object.fromEntries(failures),
    rotations,
    heapStartMB: Number((heapStart / 2 ** 20).toFixed(2)),
    heapEndMB: Number((heapEnd / 2 ** 20).toFixed(2)),
    heapAfterCloseMB: Number((heapAfterClose / 2 ** 20).toFixed(2)),
    heapGrowthPercent: Number((growth * 100).toFixed(2)),
    handlesBefore,
    handlesAfter,
    liveResourcesBefore: liveBefore,
    liveResourcesAfter: liveAfter,
    leakedHandles: leaked,
  };
  console.log(`SOAK ${JSON.stringify(report)}`);
  const problems = [
    failed > 0 && `${failed} failed handshakes`,
    growth > MAX_HEAP_GROWTH && `heap grew ${report.heapGrowthPercent} %`,
    leaked.length > 0 && `leaked handles: ${leaked.join(', ')}`,
    rotations === 0 && 'no rotation happened',
  ].filter(Boolean);
  if (problems.length > 0) {
    console.error(`soak FAILED: ${problems.join('; ')}`);
    return 1;
  }
  console.log(
    `soak passed: ${ok} handshakes, 0 failed, ${rotations} rotations, heap ${report.heapGrowthPercent} %, no leaked handles`,
  );
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 2;
  },
);
