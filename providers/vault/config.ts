/**
 * Vault/OpenBao in a config file. References: `{ kv, field }` (or `"<name>:<kv path>#<field>"`),
 * `{ pki: { mount, role, commonName, … }, part }`, `{ pkiCa }`, `{ pkiCrl }`. TLS files for Vault itself are
 * read relative to the config file.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { ProviderAdapter, RefEntry } from '../../config/adapter.js';
import { ConfigurationError } from '../../src/errors.js';
import type { SecretRef } from '../../src/provider.js';
import { defined } from '../_config.js';
import { type PkiIssueOptions, type VaultProvider, vault } from './index.js';
import type { VaultAuth } from './options.js';

export interface VaultProviderConfig {
  type: 'vault';
  /** Default `VAULT_ADDR`. */
  endpoint?: string;
  namespace?: string;
  requestTimeoutMs?: number;
  /** Default `{ token: VAULT_TOKEN }`. Prefer that default (or `kubernetes`) to a token written in the file. */
  auth?:
    | { token: string }
    | { appRole: { roleId: string; secretId?: string; mount?: string } }
    | { kubernetes: { role: string; jwtPath?: string; mount?: string } };
  /** PEM files (relative to the config file) for TLS to Vault itself. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

const configError = (reason: string) => new ConfigurationError(reason);

export const vaultAdapter: ProviderAdapter<Omit<VaultProviderConfig, 'type'>, VaultProvider> = {
  type: 'vault',
  optionFields: {
    endpoint: 'string',
    namespace: 'string',
    requestTimeoutMs: 'number',
    auth: {
      secret: {
        object: {
          token: 'string',
          appRole: {
            object: { roleId: 'string', secretId: 'string', mount: 'string' },
            required: ['roleId'],
          },
          kubernetes: { object: { role: 'string', jwtPath: 'string', mount: 'string' }, required: ['role'] },
        },
        exactlyOne: true,
      },
    },
    tls: { object: { caFile: 'string', certFile: 'string', keyFile: 'string' } },
  },
  refFields: {
    kv: 'string',
    field: 'string',
    version: 'integer',
    kvVersion: { oneOf: [1, 2] },
    mount: 'string',
    encoding: { oneOf: ['utf8', 'base64', 'binary'] },
    pki: {
      object: {
        mount: 'string',
        role: 'string',
        commonName: 'string',
        altNames: { array: 'string' },
        ipSans: { array: 'string' },
        ttl: 'string',
        format: { oneOf: ['pem', 'pem_bundle'] },
        privateKeyFormat: { oneOf: ['der', 'pkcs8'] },
      },
      required: ['mount', 'role', 'commonName'],
    },
    part: { oneOf: ['key', 'cert', 'ca'] },
    pkiCa: 'string',
    pkiCrl: 'string',
  },

  async create(options, context) {
    const tls: { ca?: string; cert?: string; key?: string } = {};
    for (const [option, field] of [
      ['caFile', 'ca'],
      ['certFile', 'cert'],
      ['keyFile', 'key'],
    ] as const) {
      const path = options.tls?.[option];
      if (path === undefined) continue;
      try {
        tls[field] = await readFile(resolve(context.baseDir, path), 'utf8');
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        throw configError(
          `tls.${option}: cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`,
        );
      }
    }
    return vault(
      defined({
        name: context.name,
        endpoint: options.endpoint,
        namespace: options.namespace,
        requestTimeoutMs: options.requestTimeoutMs,
        auth: options.auth as VaultAuth | undefined,
        tls: options.tls === undefined ? undefined : tls,
      }),
    );
  },

  ref(provider, entry): SecretRef {
    const kinds = ['kv', 'pki', 'pkiCa', 'pkiCrl'].filter((kind) => entry[kind] !== undefined);
    if (kinds.length !== 1) {
      throw configError(
        `a vault reference needs exactly one of kv (with field), pki (with part), pkiCa, pkiCrl${kinds.length ? ` (got ${kinds.join(', ')})` : ''}`,
      );
    }
    const only = (allowed: readonly string[], kind: string) => {
      for (const key of Object.keys(entry)) {
        if (!allowed.includes(key)) throw configError(`${key} does not apply to a ${kind} reference`);
      }
    };
    if (entry.kv !== undefined) {
      only(['kv', 'field', 'version', 'kvVersion', 'mount', 'encoding'], 'kv');
      if (entry.field === undefined) throw configError('a vault kv reference needs a "field"');
      return provider.kv(
        entry.kv as string,
        defined({
          field: entry.field as string,
          encoding: entry.encoding as 'utf8' | 'base64' | 'binary' | undefined,
          version: entry.version as number | undefined,
          kvVersion: entry.kvVersion as 1 | 2 | undefined,
          mount: entry.mount as string | undefined,
        }),
      );
    }
    if (entry.pki !== undefined) {
      only(['pki', 'part'], 'pki');
      if (entry.part === undefined)
        throw configError('a vault pki reference needs a "part" (key, cert or ca)');
      const { mount, role, ...issue } = entry.pki as { mount: string; role: string } & PkiIssueOptions;
      return provider.pki(mount, role, issue)[entry.part as 'key' | 'cert' | 'ca'];
    }
    if (entry.pkiCa !== undefined) {
      only(['pkiCa'], 'pkiCa');
      return provider.pkiCa(entry.pkiCa as string);
    }
    only(['pkiCrl'], 'pkiCrl');
    return provider.pkiCrl(entry.pkiCrl as string);
  },

  shorthand(id: string, key: string | undefined): RefEntry {
    if (key === undefined) throw configError('a vault reference is "<provider>:<kv path>#<field>"');
    return { kv: id, field: key };
  },

  effect(entry) {
    const pki = entry.pki as { mount: string; role: string } | undefined;
    return pki === undefined
      ? undefined
      : `issues a new certificate from ${pki.mount}/issue/${pki.role} on every fetch`;
  },
};
