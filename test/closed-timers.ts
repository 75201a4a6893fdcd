/**
 * Child process of test/closed-timers.test.ts: uses every part that arms timers (resolvers with refresh,
 * debounce and watches; the file provider watching and polling; the Vault provider with a renewable token;
 * the AWS provider; connect(), the https agent, the undici dispatcher, the HTTP/2 client), closes them all,
 * and prints `CLOSED {"leaked": [...]}`: every timer or handle created after start that is still alive, with
 * where it was created. Alone in its own process, nothing else (a test runner's own timers) is counted.
 * Env: VAULT_ADDR + VAULT_TOKEN and MOTO_ENDPOINT add the Vault and AWS parts; without them those are left
 * out and named in `skipped`. CLOSED_TIMERS_FULL=1 prints whole creation stacks (Node internals included).
 */
import { createHook } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TRACKED = new Set([
  'Timeout',
  'TCPWRAP',
  'TLSWRAP',
  'TCPSERVERWRAP',
  'FSEVENTWRAP',
  'STATWATCHER',
  'HTTP2SESSION',
]);
const live = new Map<number, { type: string; stack: string }>();
const hook = createHook({
  init(id, type) {
    if (!TRACKED.has(type)) return;
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 40;
    // The first frame is this hook itself.
    const frames = (new Error().stack ?? '').split('\n').slice(2);
    Error.stackTraceLimit = limit;
    // Where it was made: the first frames outside Node's own code.
    const where = frames
      .map((line) => line.trim())
      .filter(
        (line) =>
          process.env.CLOSED_TIMERS_FULL || (!line.includes('(node:') && !line.startsWith('at node:')),
      )
      .slice(0, process.env.CLOSED_TIMERS_FULL ? 40 : 3)
      .join(' < ');
    live.set(id, { type, stack: where });
  },
  destroy(id) {
    live.delete(id);
  },
});

const { createResolver, connect, createAgent, createHttp2Client, attach } = await import('../src/index.js');
const { createDispatcher } = await import('../src/undici.js');
const { file } = await import('../providers/file.js');
const { memory } = await import('../providers/memory.js');
const { createTestCA } = await import('./fixtures/ca.js');

const skipped: string[] = [];
const closers: (() => Promise<unknown> | unknown)[] = [];
const dir = await mkdtemp(join(tmpdir(), 'tls-secrets-timers-'));
const ca = await createTestCA();
const serverLeaf = await ca.issue({
  commonName: 'localhost',
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
});
const clientLeaf = await ca.issue({ commonName: 'client' });

// The stores are filled before counting starts: this script's own requests are not the library's.
const vaultAddr = process.env.VAULT_ADDR;
const rootToken = process.env.VAULT_TOKEN;
let vaultSeed: { path: string; token: string } | undefined;
if (vaultAddr && rootToken) {
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${vaultAddr}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': rootToken, 'Content-Type': 'application/json', Connection: 'close' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!response.ok) throw new Error(`Vault ${method} ${path}: ${response.status}`);
    return (await response.json()) as { auth?: { client_token: string } };
  };
  const path = `closed-timers/${randomUUID()}`;
  await call('POST', `secret/data/${path}`, { data: { key: clientLeaf.keyPem, cert: clientLeaf.certPem } });
  // A periodic (renewable) token: the provider arms a renewal timer for it.
  const periodic = await call('POST', 'auth/token/create', { policies: ['root'], period: '1h' });
  vaultSeed = { path, token: periodic.auth?.client_token ?? '' };
} else skipped.push('vault (no VAULT_ADDR/VAULT_TOKEN)');

const motoEndpoint = process.env.MOTO_ENDPOINT;
const awsOptions = {
  region: 'eu-west-1',
  endpoint: motoEndpoint ?? '',
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
};
let awsSecret: string | undefined;
if (motoEndpoint) {
  const sdk = await import('@aws-sdk/client-secrets-manager');
  const admin = new sdk.SecretsManagerClient(awsOptions);
  awsSecret = `closed-timers/${randomUUID()}`;
  await admin.send(new sdk.CreateSecretCommand({ Name: awsSecret, SecretString: ca.certPem }));
  admin.destroy();
} else skipped.push('aws (no MOTO_ENDPOINT)');
await writeFile(join(dir, 'server.key'), serverLeaf.keyPem);
await writeFile(join(dir, 'server.crt'), serverLeaf.certPem);
await writeFile(join(dir, 'ca.pem'), ca.certPem);

hook.enable();

// Server: key and cert from files (fs.watch), the CA from a polled file provider.
const watched = file({ baseDir: dir, watch: true, debounceMs: 20 });
const polled = file({ baseDir: dir, watch: 'poll', pollIntervalMs: 50 });
closers.push(
  () => watched.close(),
  () => polled.close(),
);
const serverTls = createResolver(
  { key: watched.ref('server.key'), cert: watched.ref('server.crt'), ca: polled.ref('ca.pem') },
  { refreshIntervalMs: 200, debounceMs: 20 },
);

// Client: key and cert from Vault KV v2, the CA from Secrets Manager; memory where a store is missing.
const fallback = memory({ key: clientLeaf.keyPem, cert: clientLeaf.certPem, ca: ca.certPem });
closers.push(() => fallback.close());
let clientKey = fallback.ref('key');
let clientCert = fallback.ref('cert');
let clientCa = fallback.ref('ca');
if (vaultAddr && vaultSeed) {
  const { vault } = await import('../providers/vault/index.js');
  const provider = vault({ endpoint: vaultAddr, auth: { token: vaultSeed.token } });
  closers.push(() => provider.close());
  clientKey = provider.kv(`secret/${vaultSeed.path}`, { field: 'key' });
  clientCert = provider.kv(`secret/${vaultSeed.path}`, { field: 'cert' });
}
if (awsSecret) {
  const { awsSecretsManager } = await import('../providers/aws-secrets-manager.js');
  const provider = awsSecretsManager(awsOptions);
  closers.push(() => provider.close());
  clientCa = provider.secret(awsSecret);
}

const clientTls = createResolver(
  { key: clientKey, cert: clientCert, ca: clientCa },
  { refreshIntervalMs: 200, debounceMs: 20 },
);

// One server for TLS, HTTP/1.1 and HTTP/2, following the server resolver.
const server = http2.createSecureServer(
  { allowHTTP1: true, requestCert: true, rejectUnauthorized: true },
  (_req, res) => res.end('ok'),
);
await attach(server, serverTls, { requestCert: true, rejectUnauthorized: true });
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as AddressInfo).port;
const origin = `https://localhost:${port}`;

const socket = await connect(clientTls, {
  host: '127.0.0.1',
  port,
  servername: 'localhost',
  ALPNProtocols: ['http/1.1'],
});
if (!socket.authorized) throw new Error(`connect(): not authorized (${String(socket.authorizationError)})`);
socket.destroy();

const agent = createAgent(clientTls, { keepAlive: true });
const viaAgent = await new Promise<string>((resolve, reject) => {
  https
    .get(`${origin}/`, { agent }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      res.on('end', () => resolve(body));
    })
    .on('error', reject);
});

const dispatcher = await createDispatcher(clientTls);
const undici = await import('undici');
const viaUndici = await (await undici.request(`${origin}/`, { dispatcher })).body.text();

const h2 = createHttp2Client(clientTls, origin);
const session = await h2.session();
const viaHttp2 = await new Promise<string>((resolve, reject) => {
  const stream = session.request({ ':path': '/' });
  let body = '';
  stream.on('data', (chunk: Buffer) => {
    body += chunk.toString();
  });
  stream.on('end', () => resolve(body));
  stream.on('error', reject);
  stream.end();
});

// A rotation through the watched file, so the watch, debounce and rebuild paths have all run.
const rotated = new Promise<void>((resolve) => serverTls.once('rotate', () => resolve()));
const next = await ca.issue({ commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
await writeFile(join(dir, 'server.key'), next.keyPem);
await writeFile(join(dir, 'server.crt'), next.certPem);
await rotated;
await Promise.all([serverTls.refresh(), clientTls.refresh()]);

// Everything closed, in the order an application shuts down.
agent.destroy();
await dispatcher.close();
await h2.close();
await new Promise<void>((resolve) => server.close(() => resolve()));
await Promise.all([serverTls.close(), clientTls.close()]);
for (const close of closers) await close();
await rm(dir, { recursive: true, force: true });

// Handles closed a moment ago finish tearing down over a few loop turns (destroy hooks run from a queue), and
// a TLS wrap reports its end only when collected: collect garbage between turns (--expose-gc).
const gc = typeof globalThis.gc === 'function' ? (globalThis.gc as () => void) : () => {};
const deadline = Date.now() + 2_000;
while (live.size > 0 && Date.now() < deadline) {
  gc();
  await new Promise((resolve) => setImmediate(resolve));
}
hook.disable();
const leaked = [...live.values()];
console.log(`CLOSED ${JSON.stringify({ leaked, skipped, answers: [viaAgent, viaUndici, viaHttp2] })}`);
