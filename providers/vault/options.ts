/**
 * Vault provider options and their validation. Everything here runs at `vault()` time, so a bad option fails
 * when the application starts rather than at the first handshake.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { ConfigurationError } from '../../src/errors.js';
import { PemSyntaxError, parsePem, pemBytes } from '../../src/pem.js';
import { MAX_TIMER } from '../../src/timers.js';

/** TLS settings for the connection to Vault itself (not the material fetched from it). */
export interface VaultTlsOptions {
  /** CA certificates that sign Vault's server certificate. Default: Node's bundled roots. */
  ca?: string | Buffer | readonly (string | Buffer)[];
  /** Client certificate for mutual TLS to Vault. Needs `key`. */
  cert?: string | Buffer;
  /** Client private key for mutual TLS to Vault. Needs `cert`. */
  key?: string | Buffer;
}

export interface AppRoleAuth {
  roleId: string;
  /** Omit only for roles created with `bind_secret_id=false`. */
  secretId?: string;
  /** Mount path of the AppRole auth method. Default `approle`. */
  mount?: string;
}

export interface KubernetesAuth {
  /** Vault role bound to this service account. */
  role: string;
  /** Service-account token file, read again at every login (kubelet rotates it). Default `/var/run/secrets/kubernetes.io/serviceaccount/token`. */
  jwtPath?: string;
  /** Mount path of the Kubernetes auth method. Default `kubernetes`. */
  mount?: string;
}

/** Exactly one way to authenticate: the type system refuses two at once. */
export type VaultAuth =
  | { token: string; appRole?: never; kubernetes?: never }
  | { appRole: AppRoleAuth; token?: never; kubernetes?: never }
  | { kubernetes: KubernetesAuth; token?: never; appRole?: never };

/** The part of a node-vault client the provider uses; any node-vault 0.12 client fits. */
export interface VaultClient {
  token?: string;
  read(path: string, requestOptions?: VaultRequestOptions): Promise<unknown>;
  write(path: string, data: object, requestOptions?: VaultRequestOptions): Promise<unknown>;
}

export interface VaultRequestOptions {
  timeout?: number;
  headers?: Record<string, string>;
}

interface CommonOptions {
  /** Provider name shown in errors and status. Default `vault`. */
  name?: string;
  /** Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`. Default `VAULT_NAMESPACE`, else none. */
  namespace?: string;
  /** How to log in. Default `{ token: VAULT_TOKEN }` (or the injected client's token). */
  auth?: VaultAuth;
  /** Abort any single Vault request after this many milliseconds. Default 10_000. */
  requestTimeoutMs?: number;
}

interface EndpointOptions {
  /** Vault address. Default `VAULT_ADDR`, else `http://127.0.0.1:8200`. */
  endpoint?: string;
  /** TLS to Vault itself; only with an `https:` endpoint. */
  tls?: VaultTlsOptions;
  client?: never;
}

interface InjectedClientOptions {
  /** A ready node-vault client (tests, custom agents). Its endpoint and TLS settings are used as they are. */
  client: VaultClient;
  endpoint?: never;
  tls?: never;
}

export type VaultOptions = CommonOptions & (EndpointOptions | InjectedClientOptions);

export const DEFAULT_JWT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

export type ResolvedAuth =
  | { method: 'token'; token: string | undefined }
  | { method: 'approle'; roleId: string; secretId: string | undefined; mount: string }
  | { method: 'kubernetes'; role: string; jwtPath: string; mount: string };

export interface ResolvedOptions {
  name: string;
  endpoint: string | undefined;
  namespace: string | undefined;
  tls: VaultTlsOptions | undefined;
  client: VaultClient | undefined;
  auth: ResolvedAuth;
  requestTimeoutMs: number;
}

const fail = (reason: string) => new ConfigurationError(`vault: ${reason}`, { provider: 'vault' });

function nonEmpty(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw fail(`${what} must be a non-empty string`);
  return value;
}

/** `/a/b/` → `a/b`; refuses `.`/`..` segments, which would address another path than the one written. */
export function normalizePath(value: unknown, what: string): string {
  const path = nonEmpty(value, what).replace(/^\/+|\/+$/g, '');
  const segments = path.split('/');
  if (path === '' || segments.some((s) => s === '' || s === '.' || s === '..')) {
    // Not echoed: a KV path is written where a secret could be written by mistake.
    throw fail(`${what} is not a valid Vault path (empty, "." or ".." segments)`);
  }
  return path;
}

function resolveAuth(auth: VaultAuth | undefined, hasClient: boolean): ResolvedAuth {
  if (auth === undefined) {
    // An injected client brings its own token (node-vault already falls back to VAULT_TOKEN there).
    if (hasClient) return { method: 'token', token: undefined };
    const token = process.env.VAULT_TOKEN || undefined;
    if (token === undefined) throw fail('no credentials: set `auth` or VAULT_TOKEN');
    return { method: 'token', token };
  }
  if (typeof auth !== 'object' || auth === null) throw fail('auth must be an object');
  const given = (['token', 'appRole', 'kubernetes'] as const).filter((k) => auth[k] !== undefined);
  if (given.length !== 1) {
    throw fail(`auth takes exactly one of token, appRole, kubernetes (got ${given.join(', ') || 'none'})`);
  }
  if (auth.token !== undefined) return { method: 'token', token: nonEmpty(auth.token, 'auth.token') };
  if (auth.appRole !== undefined) {
    const { roleId, secretId, mount } = auth.appRole;
    return {
      method: 'approle',
      roleId: nonEmpty(roleId, 'auth.appRole.roleId'),
      secretId: secretId === undefined ? undefined : nonEmpty(secretId, 'auth.appRole.secretId'),
      mount: normalizePath(mount ?? 'approle', 'auth.appRole.mount'),
    };
  }
  const { role, jwtPath, mount } = auth.kubernetes as KubernetesAuth;
  return {
    method: 'kubernetes',
    role: nonEmpty(role, 'auth.kubernetes.role'),
    jwtPath: nonEmpty(jwtPath ?? DEFAULT_JWT_PATH, 'auth.kubernetes.jwtPath'),
    // Always a named mount: the login path is built from it (node-vault's own kubernetesLogin posts to
    // /v1/auth//login when none is given, node-vault #300).
    mount: normalizePath(mount ?? 'kubernetes', 'auth.kubernetes.mount'),
  };
}

export function resolveOptions(options: VaultOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw fail('options must be an object');
  const name = nonEmpty(options.name ?? 'vault', 'name');
  const timeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > MAX_TIMER) {
    throw fail('requestTimeoutMs must be a positive number of milliseconds');
  }
  const namespace = options.namespace ?? (process.env.VAULT_NAMESPACE || undefined);
  if (namespace !== undefined) nonEmpty(namespace, 'namespace');

  const client = options.client;
  if (client !== undefined) {
    if (options.endpoint !== undefined || options.tls !== undefined) {
      throw fail('give either `client` or `endpoint`/`tls`, not both');
    }
    if (typeof client.read !== 'function' || typeof client.write !== 'function') {
      throw fail('client must be a node-vault client');
    }
  }

  let endpoint: string | undefined;
  const tls = options.tls;
  if (client === undefined) {
    endpoint = nonEmpty(options.endpoint ?? (process.env.VAULT_ADDR || 'http://127.0.0.1:8200'), 'endpoint');
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      // Not echoed: a URL that does not parse may still carry a password.
      throw fail('endpoint is not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fail('endpoint must be http: or https:');
    if (url.username || url.password) throw fail('endpoint must not carry credentials');
    endpoint = endpoint.replace(/\/+$/, '');
    if (tls !== undefined) {
      if (url.protocol !== 'https:') throw fail('tls options need an https: endpoint');
      if ((tls.cert === undefined) !== (tls.key === undefined))
        throw fail('tls.cert and tls.key go together');
      // Loaded now, as the connection will load them: a file that is not a key or a certificate, or a key
      // that does not match its certificate, fails at creation rather than as the first request's error.
      try {
        // OpenSSL skips a `ca` that is not PEM without a word: every entry must be certificates only.
        for (const entry of tls.ca === undefined ? [] : Array.isArray(tls.ca) ? tls.ca : [tls.ca]) {
          for (const block of parsePem(pemBytes(entry as string | Buffer))) {
            if (block.label !== 'CERTIFICATE') throw new PemSyntaxError(`a ${block.label} block in tls.ca`);
            new X509Certificate(block.text);
          }
        }
        createSecureContext({
          ...(tls.ca !== undefined ? { ca: tls.ca as string | Buffer | (string | Buffer)[] } : {}),
          ...(tls.cert !== undefined ? { cert: tls.cert, key: tls.key } : {}),
        });
      } catch (err) {
        throw new ConfigurationError(
          'tls: the CA, certificate or key for the connection to Vault does not load',
          {
            provider: name,
            cause: err,
          },
        );
      }
    }
  }

  return {
    name,
    endpoint,
    namespace,
    tls,
    client,
    auth: resolveAuth(options.auth, client !== undefined),
    requestTimeoutMs: timeout,
  };
}
