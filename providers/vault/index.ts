/**
 * HashiCorp Vault (and OpenBao) provider: KV v1/v2 secrets, PKI-issued certificates and the PKI CA/CRL.
 * node-vault is an optional peer dependency, loaded at the first fetch.
 *
 * ```ts
 * const v = vault({ endpoint: 'https://vault:8200', auth: { appRole: { roleId, secretId } } });
 * createResolver({ key: v.kv('secret/app/tls', { field: 'key' }), cert: v.kv('secret/app/tls', { field: 'cert' }) });
 * createResolver({ ...v.pki('pki', 'web', { commonName: 'svc.internal', ttl: '24h' }) });
 * ```
 */
import { inspect } from 'node:util';
import { ConfigurationError, FetchError } from '../../src/errors.js';
import {
  createRef,
  describeRef,
  type Provider,
  type RefOptions,
  type SecretRef,
} from '../../src/provider.js';
import { KvEngine, type KvSpec, kvId } from './kv.js';
import { normalizePath, resolveOptions, type VaultOptions } from './options.js';
import { fetchRaw, issueCertificate, PKI_FIELDS, type PkiSpec, pkiId, type RawSpec, rawId } from './pki.js';
import { VaultSession } from './session.js';

export type {
  AppRoleAuth,
  KubernetesAuth,
  VaultAuth,
  VaultClient,
  VaultOptions,
  VaultRequestOptions,
  VaultTlsOptions,
} from './options.js';

export interface KvRefOptions {
  /** The key inside the secret's map whose value this reference stands for. */
  field: string;
  /** Pin a KV v2 version. Default: the latest. */
  version?: number;
  /** How the field's text becomes the value: `utf8` (default), `base64`, `binary`. */
  encoding?: RefOptions['encoding'];
  /** Skip detection and treat the mount as KV v1 or v2. Default: detected. */
  kvVersion?: 1 | 2;
  /** The mount part of the path, e.g. `team/kv` for `team/kv/app/tls`. Default: detected. */
  mount?: string;
}

export interface PkiIssueOptions {
  commonName: string;
  /** DNS and email subject alternative names. */
  altNames?: readonly string[];
  /** IP subject alternative names. */
  ipSans?: readonly string[];
  /** Requested lifetime, e.g. `24h`; capped by the role's max_ttl. Default: the role's ttl. */
  ttl?: string;
  /** `pem` (default), or `pem_bundle`, which makes the `cert` value carry the CA chain after the leaf. */
  format?: 'pem' | 'pem_bundle';
  /** `der` (default, e.g. `BEGIN RSA PRIVATE KEY`) or `pkcs8` (`BEGIN PRIVATE KEY`); PEM either way. */
  privateKeyFormat?: 'der' | 'pkcs8';
}

/** References sharing one issued bundle: the resolver issues once for the three. */
export interface PkiRefs {
  key: SecretRef;
  cert: SecretRef;
  ca: SecretRef;
}

export interface VaultProvider extends Provider {
  /** A field of a KV secret. Every field of one path (and version) is read with one request. */
  kv(path: string, options: KvRefOptions): SecretRef;
  /** Key, certificate and CA of a certificate issued by `<mount>/issue/<role>` at each fetch. */
  pki(mount: string, role: string, options: PkiIssueOptions): PkiRefs;
  /** The PKI mount's CA certificate (`<mount>/ca/pem`). */
  pkiCa(mount: string): SecretRef;
  /** The PKI mount's CRL (`<mount>/crl/pem`). */
  pkiCrl(mount: string): SecretRef;
  currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | undefined>;
  /** Stops token renewal; later fetches fail. The token is not revoked. */
  close(): Promise<void>;
}

type Spec = KvSpec | PkiSpec | RawSpec;

const configError = (reason: string) => new ConfigurationError(`vault: ${reason}`, { provider: 'vault' });

const TTL = /^(\d+)([smhd]?)$|^(\d+h)?(\d+m)?(\d+s)?$/;

export function vault(options: VaultOptions = {}): VaultProvider {
  const resolved = resolveOptions(options);
  const session = new VaultSession(resolved);
  const kvEngine = new KvEngine(session, resolved.name);
  const specs = new Map<string, Spec>();

  const register = (id: string, spec: Spec): string => {
    const known = specs.get(id);
    if (known && known.kind !== spec.kind)
      throw configError(`${id} names both a ${known.kind} and a ${spec.kind} reference`);
    specs.set(id, spec);
    return id;
  };

  const provider: VaultProvider = {
    name: resolved.name,

    kv(path, refOptions) {
      if (typeof refOptions !== 'object' || refOptions === null)
        throw configError('kv() needs options with a field');
      const { field, version, encoding, kvVersion, mount } = refOptions;
      const spec: KvSpec = {
        kind: 'kv',
        path: normalizePath(path, 'kv path'),
        version,
        kvVersion,
        mount: mount === undefined ? undefined : normalizePath(mount, 'kv mount'),
      };
      if (typeof field !== 'string' || field === '') throw configError(`kv(${spec.path}) needs a field`);
      if (version !== undefined && (!Number.isSafeInteger(version) || version < 1)) {
        throw configError(`kv(${spec.path}) version must be a positive integer`);
      }
      if (kvVersion !== undefined && kvVersion !== 1 && kvVersion !== 2) {
        throw configError(`kv(${spec.path}) kvVersion must be 1 or 2`);
      }
      if (kvVersion === 1 && version !== undefined)
        throw configError(`kv(${spec.path}): KV v1 has no versions`);
      if (spec.mount !== undefined && !spec.path.startsWith(`${spec.mount}/`)) {
        throw configError(`kv(${spec.path}) does not lie inside mount ${spec.mount}`);
      }
      const id = register(kvId(spec), spec);
      return createRef(provider, id, { jsonKey: field, ...(encoding ? { encoding } : {}) });
    },

    pki(mount, role, issue) {
      const m = normalizePath(mount, 'pki mount');
      const r = normalizePath(role, 'pki role');
      if (r.includes('/')) throw configError(`pki role "${r}" must not contain "/"`);
      if (typeof issue !== 'object' || issue === null)
        throw configError('pki() needs options with a commonName');
      const { commonName, altNames, ipSans, ttl, format, privateKeyFormat } = issue;
      if (typeof commonName !== 'string' || commonName.trim() === '')
        throw configError('pki commonName is required');
      const list = (value: readonly string[] | undefined, what: string) => {
        if (value === undefined) return undefined;
        if (
          !Array.isArray(value) ||
          value.some((v) => typeof v !== 'string' || v === '' || v.includes(','))
        ) {
          throw configError(`pki ${what} must be a list of non-empty names without commas`);
        }
        return value.length ? value.join(',') : undefined;
      };
      if (ttl !== undefined && (typeof ttl !== 'string' || !TTL.test(ttl) || ttl === '')) {
        throw configError(`pki ttl "${String(ttl)}" is not a duration such as 24h or 90m`);
      }
      if (format !== undefined && format !== 'pem' && format !== 'pem_bundle') {
        throw configError('pki format must be pem or pem_bundle');
      }
      if (privateKeyFormat !== undefined && privateKeyFormat !== 'der' && privateKeyFormat !== 'pkcs8') {
        throw configError('pki privateKeyFormat must be der or pkcs8');
      }
      const body: Record<string, string> = { common_name: commonName };
      const alt = list(altNames, 'altNames');
      const ips = list(ipSans, 'ipSans');
      if (alt) body.alt_names = alt;
      if (ips) body.ip_sans = ips;
      if (ttl) body.ttl = ttl;
      body.format = format ?? 'pem';
      if (privateKeyFormat) body.private_key_format = privateKeyFormat;
      const spec: PkiSpec = { kind: 'pki', mount: m, role: r, body };
      const id = register(pkiId(spec), spec);
      return {
        key: createRef(provider, id, { jsonKey: PKI_FIELDS.key }),
        cert: createRef(provider, id, { jsonKey: PKI_FIELDS.cert }),
        ca: createRef(provider, id, { jsonKey: PKI_FIELDS.ca }),
      };
    },

    pkiCa(mount) {
      const spec: RawSpec = { kind: 'raw', mount: normalizePath(mount, 'pki mount'), what: 'ca' };
      return createRef(provider, register(rawId(spec), spec));
    },

    pkiCrl(mount) {
      const spec: RawSpec = { kind: 'raw', mount: normalizePath(mount, 'pki mount'), what: 'crl' };
      return createRef(provider, register(rawId(spec), spec));
    },

    async fetch(ref, signal) {
      const spec = specOf(ref);
      const where = describeRef(ref);
      switch (spec.kind) {
        case 'kv':
          return kvEngine.fetch(spec, where, signal);
        case 'pki':
          return issueCertificate(session, resolved.name, spec, where, signal);
        default:
          return fetchRaw(session, resolved.name, spec, where, signal);
      }
    },

    async currentVersion(ref, signal) {
      const spec = specOf(ref);
      // An issued certificate changes at every fetch and CA/CRL reads cost as much as a probe: nothing to probe.
      if (spec.kind !== 'kv') return undefined;
      return kvEngine.currentVersion(spec, describeRef(ref), signal);
    },

    close: () => session.close(),
  };

  function specOf(ref: SecretRef): Spec {
    const spec = ref.provider === provider ? specs.get(ref.id) : undefined;
    if (!spec) {
      throw new FetchError('reference was not created by this vault provider', {
        provider: resolved.name,
        ref: describeRef(ref),
        transient: false,
      });
    }
    return spec;
  }

  // The provider holds a token (and may hold TLS keys): show where it points, never what it carries.
  const summary = () => ({
    provider: resolved.name,
    endpoint: resolved.endpoint ?? '(injected client)',
    auth: session.authMethod,
    ...(resolved.namespace ? { namespace: resolved.namespace } : {}),
  });
  Object.defineProperty(provider, inspect.custom, {
    value: () =>
      `VaultProvider { name: '${resolved.name}', endpoint: '${summary().endpoint}', auth: '${session.authMethod}' }`,
  });
  Object.defineProperty(provider, 'toJSON', { value: summary });
  return provider;
}
