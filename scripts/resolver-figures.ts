/**
 * The figures of issue 12, measured once against the public API (not a test: it takes minutes and prints
 * numbers). Run: `npx tsx scripts/resolver-figures.ts [cold|verify|late|pki]...` (default: all).
 *
 * - cold: a cold resolver whose store is down, `connect()` in a loop for 3 s: store calls.
 * - verify: a warm client, its store down, 200 `connect()` to a peer that fails verification: store calls.
 * - late: a server certificate that the store renews 3.5 s before notAfter (no push, default interval),
 *   a handshake every 50 ms until 3 s past the old notAfter: failed handshakes and store calls.
 * - pki: a 20 s PKI certificate from a real OpenBao server over 2 minutes: issues (goal about 10).
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { memory } from '../providers/memory.js';
import { vault } from '../providers/vault/index.js';
import { connect, createResolver, createServer, type Provider, type Resolver } from '../src/index.js';
import { createRef } from '../src/provider-kit.js';
import { createTestCA } from '../test/fixtures/ca.js';
import { startBao } from '../test/helpers/bao.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function countCalls(resolver: Resolver): { calls: number } {
  const counter = { calls: 0 };
  resolver.on('storeCall', () => {
    counter.calls += 1;
  });
  resolver.on('error', () => undefined);
  return counter;
}

/** A store without push that can be taken down. */
function switchable(values: Record<string, string>) {
  const store = memory(values);
  const state = { down: false };
  const provider: Provider = {
    name: 'switchable',
    fetch: (ref, signal) =>
      state.down
        ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8200'))
        : store.fetch(createRef(store, ref.id), signal),
    currentVersion: (ref, signal) =>
      state.down
        ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8200'))
        : store.currentVersion(createRef(store, ref.id), signal),
  };
  return { store, state, ref: (id: string) => createRef(provider, id) };
}

async function cold(): Promise<string> {
  const { state, ref } = switchable({});
  state.down = true;
  const resolver = createResolver({ ca: ref('ca') });
  const counter = countCalls(resolver);
  let attempts = 0;
  const until = Date.now() + 3_000;
  while (Date.now() < until) {
    attempts += 1;
    await connect(resolver, { host: '127.0.0.1', port: 1 }).catch(() => undefined);
  }
  await resolver.close();
  return `cold outage, connect() loop 3 s: ${attempts} connects, ${counter.calls} store calls`;
}

async function verify(): Promise<string> {
  const trusted = await createTestCA({ commonName: 'trusted' });
  const other = await createTestCA({ commonName: 'other' });
  const peerLeaf = await other.issue();
  const peer = createResolver({ key: peerLeaf.keyPem, cert: peerLeaf.certPem });
  const server = createServer(peer, {}, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const { state, ref } = switchable({ ca: trusted.certPem });
  const client = createResolver({ ca: ref('ca') });
  await client.resolve();
  const counter = countCalls(client);
  state.down = true;
  const started = Date.now();
  for (let i = 0; i < 200; i++) await connect(client, { host: '127.0.0.1', port }).catch(() => undefined);
  const elapsed = Date.now() - started;
  await client.close();
  await peer.close();
  server.close();
  return `verify-failure loop, store down: 200 connects in ${elapsed} ms, ${counter.calls} store calls`;
}

async function late(): Promise<string> {
  const ca = await createTestCA();
  const lifetime = 12_000;
  const first = await ca.issue({
    notBefore: new Date(Date.now() - 1_000),
    notAfter: new Date(Date.now() + lifetime),
  });
  const { store, ref } = switchable({ key: first.keyPem, cert: first.certPem });
  const resolver = createResolver({ key: ref('key'), cert: ref('cert') });
  const counter = countCalls(resolver);
  const server = createServer(resolver, {}, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const renewAt = first.notAfter.getTime() - 3_500;
  const stopAt = first.notAfter.getTime() + 3_000;
  let renewed = false;
  let ok = 0;
  let failed = 0;
  while (Date.now() < stopAt) {
    if (!renewed && Date.now() >= renewAt) {
      const next = await ca.issue();
      store.set('key', next.keyPem);
      store.set('cert', next.certPem);
      renewed = true;
    }
    const handshake = await new Promise<boolean>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port, ca: ca.certPem, servername: 'localhost' });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (handshake) ok += 1;
    else failed += 1;
    await sleep(50);
  }
  await resolver.close();
  server.close();
  return `late store renewal (3.5 s before notAfter): ${ok} handshakes ok, ${failed} failed, ${counter.calls} store calls, generation ${resolver.generation}`;
}

async function pki(): Promise<string> {
  const bao = await startBao({ install: true });
  if (typeof bao === 'string') return `pki: no OpenBao (${bao})`;
  try {
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(`${bao.url}/v1/${path}`, {
        method,
        headers: { 'X-Vault-Token': bao.rootToken, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    };
    const mount = `figures-${randomUUID().slice(0, 8)}`;
    await api('POST', `sys/mounts/${mount}`, { type: 'pki', config: { max_lease_ttl: '87600h' } });
    await api('POST', `${mount}/root/generate/internal`, { common_name: 'figures root', ttl: '8760h' });
    await api('POST', `${mount}/roles/web`, { allowed_domains: 'localhost', allow_bare_domains: true });
    const v = vault({ endpoint: bao.url, auth: { token: bao.rootToken } });
    const resolver = createResolver({ ...v.pki(mount, 'web', { commonName: 'localhost', ttl: '20s' }) });
    // Each fetch of a PKI reference issues a certificate; probes (the provider answers "no version") do not.
    let issues = 0;
    resolver.on('storeCall', (call) => {
      if (call.kind === 'fetch') issues += 1;
    });
    resolver.on('error', () => undefined);
    await resolver.resolve();
    await sleep(120_000);
    await resolver.close();
    return `PKI 20 s certificate over 2 min (real ${bao.description}): ${issues} issues (the first included), generation ${resolver.generation}`;
  } finally {
    await bao.close();
  }
}

const scenarios = { cold, verify, late, pki } as const;
const names = process.argv.slice(2);
for (const name of names.length ? names : Object.keys(scenarios)) {
  const run = scenarios[name as keyof typeof scenarios];
  if (!run) throw new Error(`unknown scenario ${name}`);
  console.log(await run());
}
process.exit(0);
