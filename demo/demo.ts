/**
 * The tls-secrets demo: a throwaway CA, an mTLS server from createServer(), clients through connect() in a
 * loop, and rotations while traffic flows: server certificate, ticket keys, the CA itself, and one broken
 * bundle that must be refused. Prints a timeline; exits 0 only if no handshake failed.
 */
import type { AddressInfo } from 'node:net';
import { connect, createResolver, createServer, type TlsSecretsError } from '../src/index.js';
import { createTestCA, randomTicketKeys } from '../test/fixtures/ca.js';
import { openStore } from './stores.js';

const started = Date.now();
const stamp = () => `+${((Date.now() - started) / 1000).toFixed(2)}s`.padStart(7);
const counts = { ok: 0, failed: 0, resumed: 0 };
const serialsSeen = new Set<string>();
const log = (what: string) =>
  console.log(
    `${stamp()}  ${what.padEnd(62)} handshakes ok ${counts.ok}, resumed ${counts.resumed}, failed ${counts.failed}`,
  );
const short = (serial: string) => `${serial.slice(0, 8)}…`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<number> {
  const store = await openStore(process.argv.slice(2));
  console.log(`tls-secrets demo: mTLS on loopback, rotating while clients connect; store: ${store.label}\n`);
  const resolverOptions = {
    debounceMs: 20,
    ...(store.refreshIntervalMs ? { refreshIntervalMs: store.refreshIntervalMs, jitter: 0.2 } : {}),
  };
  // Polled stores need a little longer per step for a change to be noticed.
  const settle = store.refreshIntervalMs ? 400 + store.refreshIntervalMs * 2 : 400;
  const ca1 = await createTestCA({ commonName: 'demo CA 1' });
  const serverLeaf = await ca1.issue({ commonName: 'demo-server' });
  const clientLeaf = await ca1.issue({ commonName: 'demo-client' });

  const set = (name: string, value: string | Buffer) => store.write(name, value);
  await Promise.all([
    set('server/key', serverLeaf.keyPem),
    set('server/cert', serverLeaf.certPem),
    set('server/tickets', randomTicketKeys()),
    set('client/key', clientLeaf.keyPem),
    set('client/cert', clientLeaf.certPem),
    set('trust/ca', ca1.certPem),
  ]);
  const serverTls = createResolver(
    {
      key: store.ref('server/key'),
      cert: store.ref('server/cert'),
      ca: store.ref('trust/ca'),
      ticketKeys: store.ref('server/tickets', true),
    },
    resolverOptions,
  );
  const clientTls = createResolver(
    { key: store.ref('client/key'), cert: store.ref('client/cert'), ca: store.ref('trust/ca') },
    resolverOptions,
  );

  serverTls.on('rotate', (event) => {
    const cert = event.certificates[0];
    log(
      `server generation ${event.generation}: ${event.changed.join(', ')}` +
        (cert
          ? ` | serial ${short(cert.serialNumber)} notAfter ${cert.notAfter.toISOString().slice(0, 10)}`
          : ''),
    );
  });
  clientTls.on('rotate', (event) =>
    log(`client generation ${event.generation}: ${event.changed.join(', ')}`),
  );
  let refusals = 0;
  serverTls.on('error', (error: TlsSecretsError) => {
    refusals += 1;
    log(`server REFUSED new bundle: ${error.message}`);
  });
  clientTls.on('error', (error: TlsSecretsError) => log(`client refused new bundle: ${error.message}`));

  const server = createServer(serverTls, { requestCert: true, rejectUnauthorized: true }, (socket) => {
    socket.end('hello');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  let running = true;
  // Half the clients resume sessions (fast, but a resumed session shows no new certificate), half do full
  // handshakes and so see each new server certificate at once.
  const clients = Array.from({ length: 4 }, async (_, index) => {
    while (running) {
      try {
        const socket = await connect(clientTls, {
          host: '127.0.0.1',
          port,
          servername: 'localhost',
          resumeSessions: index % 2 === 0,
        });
        if (socket.isSessionReused()) counts.resumed += 1;
        else serialsSeen.add(socket.getPeerCertificate().serialNumber);
        await new Promise<void>((resolve, reject) => {
          socket.on('data', () => undefined);
          socket.once('end', resolve);
          socket.once('error', reject);
        });
        counts.ok += 1;
      } catch (error) {
        counts.failed += 1;
        console.error(`${stamp()}  handshake failed: ${(error as Error).message}`);
      }
    }
  });

  const step = async (what: string, change: () => Promise<void> | void) => {
    await sleep(settle);
    log(`-> ${what}`);
    await change();
  };

  await step('rotate the server certificate (same CA)', async () => {
    const next = await ca1.issue({ commonName: 'demo-server' });
    await set('server/key', next.keyPem);
    await set('server/cert', next.certPem);
  });
  await step('rotate the session ticket keys', () => set('server/tickets', randomTicketKeys()));

  const ca2 = await createTestCA({ commonName: 'demo CA 2' });
  await step('CA rotation 1/3: trust old and new CA', () =>
    set('trust/ca', `${ca1.certPem}\n${ca2.certPem}`),
  );
  await step('CA rotation 2/3: server and client certificates from the new CA', async () => {
    const [nextServer, nextClient] = await Promise.all([
      ca2.issue({ commonName: 'demo-server' }),
      ca2.issue({ commonName: 'demo-client' }),
    ]);
    await set('server/key', nextServer.keyPem);
    await set('server/cert', nextServer.certPem);
    await set('client/key', nextClient.keyPem);
    await set('client/cert', nextClient.certPem);
  });
  await step('CA rotation 3/3: stop trusting the old CA', () => set('trust/ca', ca2.certPem));

  let generationBeforeBreak = 0;
  await step('a broken bundle: a certificate that does not match the key', async () => {
    generationBeforeBreak = serverTls.generation;
    const stray = await ca2.issue({ commonName: 'stray' });
    await set('server/cert', stray.certPem);
  });
  await sleep(settle);
  const brokenRefused = refusals > 0 && serverTls.generation === generationBeforeBreak;
  log(`broken bundle ${brokenRefused ? 'refused; the previous generation kept serving' : 'NOT refused'}`);
  await step('repair: the matching key and certificate', async () => {
    const fixed = await ca2.issue({ commonName: 'demo-server' });
    await set('server/key', fixed.keyPem);
    await set('server/cert', fixed.certPem);
  });
  await sleep(settle);

  running = false;
  await Promise.all(clients);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await Promise.all([serverTls.close(), clientTls.close()]);
  await store.close();

  console.log(
    `\n${counts.ok} handshakes ok (${counts.resumed} resumed), ${counts.failed} failed; ` +
      `${serialsSeen.size} server certificates seen by clients; server generation ${serverTls.generation}.`,
  );
  if (counts.failed > 0 || !brokenRefused) {
    console.log(
      counts.failed > 0
        ? 'FAIL: handshakes failed during rotation.'
        : 'FAIL: the broken bundle was not refused.',
    );
    return 1;
  }
  console.log('OK: every rotation applied without a failed handshake, and the broken bundle was refused.');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
