/**
 * Tokens and the auth methods that mint them: the token store (`auth/token/`), AppRole and Kubernetes.
 * Tokens really expire; expired ones are indistinguishable from unknown ones (403), as in Vault.
 */
import type { Engine, RequestContext } from './types.js';
import {
  badRequest,
  base62,
  bool,
  goDuration,
  type Json,
  list,
  noContent,
  notFound,
  nowNanos,
  ok,
  parseDuration,
  type Reply,
  randomUUID,
  rfc3339Nano,
  SYSTEM_DEFAULT_TTL,
  SYSTEM_MAX_TTL,
  str,
  stringMap,
  unsupportedOperation,
  unsupportedPath,
  VaultError,
} from './util.js';

export interface TokenEntry {
  id: string;
  accessor: string;
  policies: string[];
  path: string;
  displayName: string;
  meta: Record<string, string> | null;
  /** Unix seconds. */
  creationTime: number;
  issueNanos: bigint;
  /** The TTL the token was created with, seconds (0: never expires). */
  creationTtl: number;
  explicitMaxTtl: number;
  /** Upper bound for renewals, seconds from issue. */
  maxTtl: number;
  renewable: boolean;
  /** Epoch milliseconds, or null for tokens without a TTL (root). */
  expireAt: number | null;
  orphan: boolean;
  entityId: string;
  root: boolean;
}

export interface CreateTokenOptions {
  id?: string;
  policies: string[];
  ttl: number;
  maxTtl?: number;
  explicitMaxTtl?: number;
  renewable?: boolean;
  path: string;
  displayName: string;
  meta?: Record<string, string> | null;
  orphan?: boolean;
  entityId?: string;
  noDefaultPolicy?: boolean;
}

/** Paths the built-in `default` policy grants; a `deny-all` token can reach only these. */
const DEFAULT_POLICY_PATHS = [
  /^auth\/token\/(lookup-self|renew-self|revoke-self)$/,
  /^sys\/capabilities-self$/,
  /^sys\/leases\/(renew|lookup)(\/.*)?$/,
  /^sys\/renew(\/.*)?$/,
  /^sys\/tools\/hash(\/.*)?$/,
  /^sys\/wrapping\/(lookup|unwrap|wrap|rewrap)$/,
  /^cubbyhole\/.*$/,
  /^sys\/internal\/ui\/resultant-acl$/,
];

export class TokenStore {
  private readonly byId = new Map<string, TokenEntry>();

  /** The dev-mode root token: no TTL, policies ["root"], path auth/token/root. */
  createRoot(id: string): TokenEntry {
    return this.create({
      id,
      policies: ['root'],
      ttl: 0,
      path: 'auth/token/root',
      displayName: 'root',
      orphan: true,
      noDefaultPolicy: true,
    });
  }

  create(options: CreateTokenOptions): TokenEntry {
    const isRoot = options.policies.includes('root');
    const policies = normalisePolicies(options.policies, isRoot || options.noDefaultPolicy === true);
    const issueNanos = nowNanos();
    const nowMs = Number(issueNanos / 1_000_000n);
    const explicitMax = options.explicitMaxTtl ?? 0;
    let maxTtl = Math.min(
      options.maxTtl && options.maxTtl > 0 ? options.maxTtl : SYSTEM_MAX_TTL,
      SYSTEM_MAX_TTL,
    );
    if (explicitMax > 0) maxTtl = Math.min(maxTtl, explicitMax);
    let ttl = options.ttl;
    // Vault refuses non-root tokens without a TTL: they get the mount default instead.
    if (ttl <= 0 && !isRoot) ttl = SYSTEM_DEFAULT_TTL;
    if (ttl > maxTtl && !(isRoot && options.ttl === 0)) ttl = maxTtl;
    const entry: TokenEntry = {
      id: options.id ?? `hvs.${base62(24)}`,
      accessor: base62(24),
      policies,
      path: options.path,
      displayName: options.displayName,
      meta: options.meta ?? null,
      creationTime: Math.floor(nowMs / 1000),
      issueNanos,
      creationTtl: ttl,
      explicitMaxTtl: explicitMax,
      maxTtl,
      renewable: ttl > 0 && (options.renewable ?? true),
      expireAt: ttl > 0 ? nowMs + ttl * 1000 : null,
      orphan: options.orphan ?? false,
      entityId: options.entityId ?? '',
      root: isRoot,
    };
    this.byId.set(entry.id, entry);
    return entry;
  }

  /** The live entry for a token, or null when unknown, revoked or expired. */
  lookup(id: string | undefined): TokenEntry | null {
    if (!id) return null;
    const entry = this.byId.get(id);
    if (!entry) return null;
    if (entry.expireAt !== null && Date.now() >= entry.expireAt) {
      this.byId.delete(id);
      return null;
    }
    return entry;
  }

  revoke(id: string): void {
    this.byId.delete(id);
  }

  /** Whether the token's policies grant the path; only `deny-all` restricts, beyond `default`. */
  allows(entry: TokenEntry, path: string): boolean {
    if (entry.root) return true;
    if (!entry.policies.includes('deny-all')) return true;
    return DEFAULT_POLICY_PATHS.some((re) => re.test(path));
  }

  ttlOf(entry: TokenEntry): number {
    if (entry.expireAt === null) return 0;
    return Math.max(0, Math.round((entry.expireAt - Date.now()) / 1000));
  }

  /** The `auth` object of a login, create or renew response. */
  auth(entry: TokenEntry, leaseDuration = this.ttlOf(entry)): Json {
    return {
      client_token: entry.id,
      accessor: entry.accessor,
      policies: entry.policies,
      token_policies: entry.policies,
      metadata: entry.meta,
      lease_duration: leaseDuration,
      renewable: entry.renewable,
      entity_id: entry.entityId,
      token_type: 'service',
      orphan: entry.orphan,
      mfa_requirement: null,
      num_uses: 0,
    };
  }

  /** `auth/token/lookup-self` data; the root token has no `renewable` key (stores-api.md A.3). */
  lookupData(entry: TokenEntry): Json {
    const data: Record<string, Json> = {
      accessor: entry.accessor,
      creation_time: entry.creationTime,
      creation_ttl: entry.creationTtl,
      display_name: entry.displayName,
      entity_id: entry.entityId,
      expire_time: entry.expireAt === null ? null : rfc3339Nano(BigInt(entry.expireAt) * 1_000_000n),
      explicit_max_ttl: entry.explicitMaxTtl,
      id: entry.id,
      meta: entry.meta,
      num_uses: 0,
      orphan: entry.orphan,
      path: entry.path,
      policies: entry.policies,
      ttl: this.ttlOf(entry),
      type: 'service',
    };
    if (!entry.root) {
      data.issue_time = rfc3339Nano(entry.issueNanos);
      data.renewable = entry.renewable;
    }
    return data;
  }

  /**
   * Renewal as framework.CalculateTTL does it: the increment (or the original TTL) capped by the max TTL
   * counted from issue time. Non-renewable and TTL-less tokens fail with expiration.go's message.
   */
  renew(entry: TokenEntry, increment: number): { ttl: number; warnings: string[] } {
    if (entry.expireAt === null || !entry.renewable) throw badRequest('lease is not renewable');
    const now = Date.now();
    let ttl = increment > 0 ? increment : entry.creationTtl;
    const warnings: string[] = [];
    const maxExpire = Number(entry.issueNanos / 1_000_000n) + entry.maxTtl * 1000;
    if (now + ttl * 1000 > maxExpire) {
      const capped = Math.max(0, Math.floor((maxExpire - now) / 1000));
      warnings.push(
        `TTL of "${goDuration(ttl)}" exceeded the effective max_ttl of "${goDuration(capped)}"; TTL value is capped accordingly`,
      );
      ttl = capped;
    }
    entry.expireAt = now + ttl * 1000;
    return { ttl, warnings };
  }
}

function normalisePolicies(policies: string[], noDefault: boolean): string[] {
  const set = new Set(policies.map((p) => p.trim().toLowerCase()).filter((p) => p.length > 0));
  if (set.has('root')) return ['root'];
  if (!noDefault) set.add('default');
  return [...set].sort();
}

// ---------------------------------------------------------------- auth/token/

export class TokenAuthEngine implements Engine {
  constructor(private readonly store: TokenStore) {}

  handle(ctx: RequestContext): Reply {
    const token = ctx.token;
    if (!token) throw new VaultError(403, ['permission denied']);
    switch (ctx.subPath) {
      case 'lookup-self':
        if (ctx.op !== 'read' && ctx.op !== 'update') throw unsupportedOperation();
        return ok(this.store.lookupData(token), { mountType: 'token' });
      case 'lookup': {
        const target = this.store.lookup(str(ctx.body.token) || ctx.query.get('token') || undefined);
        if (!target) throw badRequest('bad token');
        return ok(this.store.lookupData(target), { mountType: 'token' });
      }
      case 'renew-self': {
        if (ctx.op !== 'update') throw unsupportedOperation();
        const { ttl, warnings } = this.store.renew(token, parseDuration(ctx.body.increment, 'increment'));
        return ok(null, { auth: this.store.auth(token, ttl), warnings, mountType: 'token' });
      }
      case 'revoke-self':
        this.store.revoke(token.id);
        return noContent();
      case 'revoke':
        this.store.revoke(str(ctx.body.token));
        return noContent();
      case 'create':
      case 'create-orphan': {
        if (ctx.op !== 'update') throw unsupportedOperation();
        const b = ctx.body;
        const requested =
          b.policies === undefined ? token.policies.filter((p) => p !== 'default') : list(b.policies);
        const displayName = str(b.display_name);
        const entry = this.store.create({
          id: str(b.id) || undefined,
          policies: requested,
          ttl: parseDuration(b.ttl ?? b.lease, 'ttl'),
          explicitMaxTtl: parseDuration(b.explicit_max_ttl, 'explicit_max_ttl'),
          renewable: bool(b.renewable, true),
          path: `auth/token/${ctx.subPath}`,
          displayName: displayName ? `token-${displayName}` : 'token',
          meta: stringMap(b.meta),
          orphan: ctx.subPath === 'create-orphan' || bool(b.no_parent, false),
          noDefaultPolicy: bool(b.no_default_policy, false),
        });
        return ok(null, { auth: this.store.auth(entry), mountType: 'token' });
      }
      default:
        throw unsupportedPath();
    }
  }
}

// ---------------------------------------------------------------- auth/approle/

interface AppRole {
  name: string;
  roleId: string;
  tokenTtl: number;
  tokenMaxTtl: number;
  tokenPolicies: string[];
  secretIdTtl: number;
  bindSecretId: boolean;
  secretIds: Map<string, { accessor: string; expireAt: number | null; createdNanos: bigint }>;
}

export class AppRoleEngine implements Engine {
  private readonly roles = new Map<string, AppRole>();

  constructor(
    private readonly store: TokenStore,
    private readonly mountPath: () => string,
  ) {}

  unauthenticated(subPath: string): boolean {
    return subPath === 'login';
  }

  handle(ctx: RequestContext): Reply {
    const { subPath, op, body } = ctx;
    if (subPath === 'login') {
      if (op !== 'update') throw unsupportedOperation();
      return this.login(body.role_id, body.secret_id);
    }
    if (subPath === 'role' || subPath === 'role/') {
      if (op !== 'list') throw unsupportedOperation();
      return keysOrNotFound([...this.roles.keys()]);
    }
    const match = /^role\/([^/]+)(?:\/(role-id|secret-id))?$/.exec(subPath);
    if (!match) throw unsupportedPath();
    const name = (match[1] ?? '').toLowerCase();
    const sub = match[2];
    const role = this.roles.get(name);
    if (!sub) {
      if (op === 'update') {
        this.roles.set(name, this.writeRole(name, role, body));
        return noContent();
      }
      if (op === 'delete') {
        this.roles.delete(name);
        return noContent();
      }
      if (op !== 'read') throw unsupportedOperation();
      if (!role) throw notFound();
      return ok({
        bind_secret_id: role.bindSecretId,
        secret_id_ttl: role.secretIdTtl,
        token_ttl: role.tokenTtl,
        token_max_ttl: role.tokenMaxTtl,
        token_policies: role.tokenPolicies,
        policies: role.tokenPolicies,
        token_type: 'default',
      });
    }
    if (!role) throw badRequest(`role "${name}" does not exist`);
    if (sub === 'role-id') {
      if (op === 'update') {
        role.roleId = str(body.role_id) || role.roleId;
        return noContent();
      }
      if (op !== 'read') throw unsupportedOperation();
      return ok({ role_id: role.roleId });
    }
    if (op === 'list') {
      return keysOrNotFound([...role.secretIds.values()].map((s) => s.accessor));
    }
    if (op !== 'update') throw unsupportedOperation();
    const secretId = randomUUID();
    const accessor = randomUUID();
    const ttl = role.secretIdTtl;
    role.secretIds.set(secretId, {
      accessor,
      expireAt: ttl > 0 ? Date.now() + ttl * 1000 : null,
      createdNanos: nowNanos(),
    });
    return ok({
      secret_id: secretId,
      secret_id_accessor: accessor,
      secret_id_ttl: ttl,
      secret_id_num_uses: 0,
    });
  }

  private writeRole(name: string, existing: AppRole | undefined, body: Record<string, unknown>): AppRole {
    const policies = body.token_policies ?? body.policies;
    return {
      name,
      roleId: existing?.roleId ?? randomUUID(),
      tokenTtl:
        body.token_ttl === undefined ? (existing?.tokenTtl ?? 0) : parseDuration(body.token_ttl, 'token_ttl'),
      tokenMaxTtl:
        body.token_max_ttl === undefined
          ? (existing?.tokenMaxTtl ?? 0)
          : parseDuration(body.token_max_ttl, 'token_max_ttl'),
      tokenPolicies: policies === undefined ? (existing?.tokenPolicies ?? []) : list(policies),
      secretIdTtl:
        body.secret_id_ttl === undefined
          ? (existing?.secretIdTtl ?? 0)
          : parseDuration(body.secret_id_ttl, 'secret_id_ttl'),
      bindSecretId: bool(body.bind_secret_id, existing?.bindSecretId ?? true),
      secretIds: existing?.secretIds ?? new Map(),
    };
  }

  private login(roleIdRaw: unknown, secretIdRaw: unknown): Reply {
    const roleId = str(roleIdRaw);
    if (!roleId) throw badRequest('missing role_id');
    const role = [...this.roles.values()].find((r) => r.roleId === roleId);
    // Unknown role IDs and bad secret IDs give the same answer: ErrInvalidCredentials maps to 400.
    if (!role) throw badRequest('invalid role or secret ID');
    if (role.bindSecretId) {
      const secret = role.secretIds.get(str(secretIdRaw));
      if (!secret || (secret.expireAt !== null && Date.now() >= secret.expireAt)) {
        throw badRequest('invalid role or secret ID');
      }
    }
    const entry = this.store.create({
      policies: role.tokenPolicies,
      ttl: role.tokenTtl,
      maxTtl: role.tokenMaxTtl,
      path: `auth/${this.mountPath()}login`,
      displayName: 'approle',
      meta: { role_name: role.name },
      orphan: true,
      entityId: randomUUID(),
    });
    return ok(null, { auth: this.store.auth(entry), mountType: 'approle' });
  }
}

// ---------------------------------------------------------------- auth/kubernetes/

interface K8sRole {
  boundNames: string[];
  boundNamespaces: string[];
  tokenTtl: number;
  tokenMaxTtl: number;
  tokenPolicies: string[];
  audience: string;
}

interface ServiceAccountClaims {
  name: string;
  namespace: string;
  uid: string;
  secretName: string;
}

/**
 * Kubernetes auth. The JWT's payload is read without verifying its signature or calling the
 * TokenReview API: signature checks are out of scope for a stand-in. Both the legacy secret-token
 * claims and the projected-token `kubernetes.io` claims are understood.
 */
export class KubernetesEngine implements Engine {
  private config: Record<string, Json> | null = null;
  private readonly roles = new Map<string, K8sRole>();

  constructor(
    private readonly store: TokenStore,
    private readonly mountPath: () => string,
  ) {}

  unauthenticated(subPath: string): boolean {
    return subPath === 'login';
  }

  handle(ctx: RequestContext): Reply {
    const { subPath, op, body } = ctx;
    if (subPath === 'login') {
      if (op !== 'update') throw unsupportedOperation();
      return this.login(str(body.role), str(body.jwt));
    }
    if (subPath === 'config') {
      if (op === 'update') {
        this.config = {
          kubernetes_host: str(body.kubernetes_host),
          kubernetes_ca_cert: str(body.kubernetes_ca_cert),
          disable_iss_validation: bool(body.disable_iss_validation, true),
          disable_local_ca_jwt: bool(body.disable_local_ca_jwt, false),
          issuer: str(body.issuer),
        };
        return noContent();
      }
      if (op !== 'read') throw unsupportedOperation();
      if (!this.config) throw notFound();
      return ok(this.config);
    }
    if (subPath === 'role' || subPath === 'role/') {
      if (op !== 'list') throw unsupportedOperation();
      return keysOrNotFound([...this.roles.keys()]);
    }
    const match = /^role\/([^/]+)$/.exec(subPath);
    if (!match) throw unsupportedPath();
    const name = (match[1] ?? '').toLowerCase();
    if (op === 'update') {
      const policies = body.token_policies ?? body.policies;
      this.roles.set(name, {
        boundNames: list(body.bound_service_account_names),
        boundNamespaces: list(body.bound_service_account_namespaces),
        tokenTtl: parseDuration(body.token_ttl ?? body.ttl, 'token_ttl'),
        tokenMaxTtl: parseDuration(body.token_max_ttl ?? body.max_ttl, 'token_max_ttl'),
        tokenPolicies: list(policies),
        audience: str(body.audience),
      });
      return noContent();
    }
    if (op === 'delete') {
      this.roles.delete(name);
      return noContent();
    }
    if (op !== 'read') throw unsupportedOperation();
    const role = this.roles.get(name);
    if (!role) throw notFound();
    return ok({
      bound_service_account_names: role.boundNames,
      bound_service_account_namespaces: role.boundNamespaces,
      token_ttl: role.tokenTtl,
      token_max_ttl: role.tokenMaxTtl,
      token_policies: role.tokenPolicies,
      audience: role.audience,
    });
  }

  private login(roleName: string, jwt: string): Reply {
    if (!roleName) throw badRequest('missing role');
    if (!jwt) throw badRequest('missing jwt');
    const role = this.roles.get(roleName.toLowerCase());
    if (!role) throw badRequest(`invalid role name "${roleName}"`);
    if (!this.config) throw badRequest('could not load backend configuration');
    const sa = parseServiceAccountJwt(jwt);
    if (!matchesBound(role.boundNames, sa.name))
      throw new VaultError(403, ['service account name not authorized']);
    if (!matchesBound(role.boundNamespaces, sa.namespace))
      throw new VaultError(403, ['namespace not authorized']);
    const entry = this.store.create({
      policies: role.tokenPolicies,
      ttl: role.tokenTtl,
      maxTtl: role.tokenMaxTtl,
      path: `auth/${this.mountPath()}login`,
      displayName: `${this.mountPath().replace(/\/$/, '')}-${sa.namespace}-${sa.name}`,
      meta: {
        role: roleName,
        service_account_name: sa.name,
        service_account_namespace: sa.namespace,
        service_account_secret_name: sa.secretName,
        service_account_uid: sa.uid,
      },
      orphan: true,
      entityId: randomUUID(),
    });
    return ok(null, { auth: this.store.auth(entry), mountType: 'kubernetes' });
  }
}

function matchesBound(bound: string[], value: string): boolean {
  return bound.includes('*') || bound.includes(value);
}

function parseServiceAccountJwt(jwt: string): ServiceAccountClaims {
  const parts = jwt.split('.');
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw badRequest('failed to parse JWT');
  }
  if (parts.length !== 3 || typeof claims !== 'object' || claims === null)
    throw badRequest('failed to parse JWT');
  const projected = claims['kubernetes.io'] as
    | { namespace?: unknown; serviceaccount?: { name?: unknown; uid?: unknown } }
    | undefined;
  const name =
    str(claims['kubernetes.io/serviceaccount/service-account.name']) || str(projected?.serviceaccount?.name);
  const namespace = str(claims['kubernetes.io/serviceaccount/namespace']) || str(projected?.namespace);
  if (!name || !namespace) throw badRequest('failed to validate JWT: missing service account claims');
  return {
    name,
    namespace,
    uid:
      str(claims['kubernetes.io/serviceaccount/service-account.uid']) || str(projected?.serviceaccount?.uid),
    secretName: str(claims['kubernetes.io/serviceaccount/secret.name']),
  };
}

function keysOrNotFound(keys: string[]): Reply {
  if (keys.length === 0) throw notFound();
  return ok({ keys: [...keys].sort() });
}
