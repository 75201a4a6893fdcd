/**
 * Leak class 1: content-derived versions. Stores without versions of their own (memory, env, files, Vault KV
 * v1) report a version computed from the value, and that version is shown in status(), rotate events, logger
 * lines and the CLI. It must detect change without being testable against guesses: the weak passphrase of
 * the report (`Summer2024!`) must not be found by hashing a small dictionary, for any provider.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { env } from '../../providers/env.js';
import { file } from '../../providers/file.js';
import { memory } from '../../providers/memory.js';
import { vault } from '../../providers/vault/index.js';
import { createResolver, type Provider, type SecretRef } from '../../src/index.js';
import { createTestCA, encryptKey } from '../fixtures/ca.js';
import { baoApi } from './bao-api.js';

const vaultAddr = inject('vaultAddr');
const vaultToken = inject('vaultToken');
const NO_BAO = !vaultAddr;
if (NO_BAO) console.warn('[canary versions] Vault KV v1 part SKIPPED: no OpenBao server');

const WEAK = 'Summer2024!';
const DICTIONARY = ['Winter2023!', 'Password1', 'Summer2024!', 'Spring2025?', 'letmein', 'Autumn2022#'];
const sha = (text: string) => createHash('sha256').update(text).digest('hex');
/** Every unkeyed form a version could take for `word`: the bare value and the KV v1 map `{"pass": word}`. */
const unkeyedForms = (word: string) =>
  [sha(word), sha(`{"pass":${JSON.stringify(word)}}`)].flatMap((hash) => [hash.slice(0, 16), hash]);

/** The dictionary attack: which word's unkeyed form appears in `version`. */
function crack(version: string | undefined): string | undefined {
  return DICTIONARY.find((word) => unkeyedForms(word).some((form) => version?.includes(form)));
}

const signal = () => AbortSignal.timeout(10_000);

async function versionsOf(provider: Provider, ref: SecretRef): Promise<(string | undefined)[]> {
  const fetched = (await provider.fetch(ref, signal())).version;
  const probed = await provider.currentVersion?.(ref, signal());
  return [fetched, typeof probed === 'object' ? probed?.version : probed];
}

describe('content-derived versions are keyed', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tls-secrets-versions-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('memory, env and file: the version detects change and does not reveal a weak passphrase', async () => {
    const store = memory({ pass: WEAK });
    const vars = env({ env: { PASS: WEAK } });
    await writeFile(join(dir, 'pass.txt'), WEAK);
    const files = file({ baseDir: dir, watch: false });
    try {
      for (const [provider, ref] of [
        [store, store.ref('pass')],
        [vars, vars.ref('PASS')],
        [files, files.ref('pass.txt')],
      ] as const) {
        const versions = await versionsOf(provider, ref);
        expect(versions[0], provider.name).toBeDefined();
        for (const version of versions) expect(crack(version), `${provider.name} ${version}`).toBeUndefined();
        // Stable while the value is, different once it changes.
        expect((await provider.fetch(ref, signal())).version).toBe(versions[0]);
      }
      const before = (await store.fetch(store.ref('pass'), signal())).version;
      store.set('pass', 'Winter2023!');
      expect((await store.fetch(store.ref('pass'), signal())).version).not.toBe(before);
    } finally {
      await files.close();
    }
  });

  it('status() and the rotate event carry versions that do not reveal the passphrase', async () => {
    const ca = await createTestCA();
    const leaf = await ca.issue({ commonName: 'localhost' });
    const store = memory({ key: encryptKey(leaf.keyPem, WEAK), cert: leaf.certPem, pass: WEAK });
    const resolver = createResolver({
      key: { pem: store.ref('key'), passphrase: store.ref('pass') },
      cert: store.ref('cert'),
    });
    const rotated = new Promise<Record<string, string | undefined>>((resolve) =>
      resolver.once('rotate', (event) => resolve(event.versions)),
    );
    try {
      await resolver.resolve();
      const passVersion = (await rotated)['key.passphrase'];
      expect(passVersion).toBeDefined();
      expect(crack(passVersion)).toBeUndefined();
      const shown = resolver.status().fields.find((field) => field.field === 'key.passphrase')?.version;
      expect(shown).toBe(passVersion);
    } finally {
      await resolver.close();
    }
  });

  it.skipIf(NO_BAO)('Vault KV v1 on OpenBao: the map version does not reveal the passphrase', async () => {
    const api = baoApi(vaultAddr, vaultToken);
    const mount = `canary-kv1-${randomBytes(3).toString('hex')}`;
    await api('POST', `sys/mounts/${mount}`, { type: 'kv', options: { version: '1' } });
    try {
      await api('POST', `${mount}/app`, { pass: WEAK });
      const v = vault({ endpoint: vaultAddr, auth: { token: vaultToken } });
      try {
        const ref = v.kv(`${mount}/app`, { field: 'pass' });
        const { version } = await v.fetch(ref, signal());
        expect(version).toBeDefined();
        expect(crack(version)).toBeUndefined();
        await api('POST', `${mount}/app`, { pass: 'Winter2023!' });
        expect((await v.fetch(ref, signal())).version).not.toBe(version);
      } finally {
        await v.close();
      }
    } finally {
      await api('DELETE', `sys/mounts/${mount}`);
    }
  });
});
