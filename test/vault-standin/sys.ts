/**
 * The `sys/` backend: health and seal status, mount and auth tables, the UI mount lookup clients use to
 * detect a KV version, leases, capabilities and namespaces.
 */
import type { Core } from './core.js';
import type { Mount, RequestContext } from './types.js';
import {
  badRequest,
  errorReply,
  int,
  type Json,
  list,
  noContent,
  notFound,
  ok,
  type Reply,
  randomUUID,
  SYSTEM_DEFAULT_TTL,
  SYSTEM_MAX_TTL,
  str,
  unsupportedOperation,
  unsupportedPath,
  VaultError,
} from './util.js';

export const VAULT_VERSION = '1.21.0';

const BUILTIN_VERSIONS: Record<string, string> = {
  kv: 'v0.25.0+builtin',
  approle: `v${VAULT_VERSION}+builtin.vault`,
  kubernetes: 'v0.23.0+builtin',
};

function mountJson(mount: Mount): Record<string, Json> {
  const json: Record<string, Json> = {
    accessor: mount.accessor,
    config: {
      default_lease_ttl: mount.defaultLeaseTtl,
      force_no_cache: false,
      max_lease_ttl: mount.maxLeaseTtl,
    },
    description: mount.description,
    external_entropy_access: false,
    local: mount.local,
    options: mount.options,
    plugin_version: '',
    running_plugin_version: BUILTIN_VERSIONS[mount.type] ?? `v${VAULT_VERSION}+builtin.vault`,
    running_sha256: '',
    seal_wrap: mount.sealWrap,
    type: mount.type,
    uuid: mount.uuid,
  };
  if (['kv', 'pki', 'approle', 'kubernetes'].includes(mount.type)) json.deprecation_status = 'supported';
  return json;
}

/** `sys/mounts` and `sys/auth` repeat the table at the top level of the response, as Vault does. */
function tableReply(mounts: Map<string, Mount>): Reply {
  const data: Record<string, Json> = {};
  for (const [path, mount] of [...mounts.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    data[path] = mountJson(mount);
  }
  const reply = ok(data, { mountType: 'system' });
  if (reply.kind === 'json') Object.assign(reply.body, data);
  return reply;
}

export async function handleSys(core: Core, ctx: RequestContext): Promise<Reply> {
  const sub = ctx.subPath;
  const { op } = ctx;
  if (sub === 'health') return health(core, ctx.query);
  if (sub === 'seal-status') return sealStatus(core);
  if (sub === 'leader') {
    return ok({ ha_enabled: false, is_self: false, leader_address: '', leader_cluster_address: '' });
  }

  if (sub === 'mounts') {
    if (op !== 'read') throw unsupportedOperation();
    return tableReply(ctx.ns.mounts);
  }
  if (sub === 'auth') {
    if (op !== 'read') throw unsupportedOperation();
    return tableReply(ctx.ns.authMounts);
  }
  let m = /^(mounts|auth)\/(.+?)(\/tune)?$/.exec(sub);
  if (m) return mountPath(core, ctx, m[1] === 'auth', m[2] ?? '', m[3] !== undefined);

  if (sub === 'internal/ui/mounts') {
    const secret: Record<string, Json> = {};
    for (const [path, mount] of ctx.ns.mounts) secret[path] = mountJson(mount);
    const auth: Record<string, Json> = {};
    for (const [path, mount] of ctx.ns.authMounts) auth[path] = mountJson(mount);
    return ok({ auth, secret }, { mountType: 'system' });
  }
  m = /^internal\/ui\/mounts\/(.+)$/.exec(sub);
  if (m) {
    const target = m[1] ?? '';
    const resolved = core.resolve(ctx.ns, target);
    // An unknown path answers 403, so this endpoint cannot be used to enumerate mounts.
    if (!resolved || resolved.mount.type === 'system') {
      throw new VaultError(403, [
        `preflight capability check returned 403, please ensure client's policies grant access to path "${target}"`,
      ]);
    }
    const data = mountJson(resolved.mount);
    data.path = `${resolved.mount.auth ? 'auth/' : ''}${resolved.mount.path}`;
    return ok(data, { mountType: 'system' });
  }

  m = /^(?:leases\/)?renew(?:\/(.+))?$/.exec(sub);
  if (m) {
    if (op !== 'update') throw unsupportedOperation();
    return renewLease(core, str(ctx.body.lease_id) || (m[1] ?? ''), int(ctx.body.increment, 0));
  }
  if (sub === 'leases/lookup') {
    if (op !== 'update') throw unsupportedOperation();
    const lease = core.leases.get(str(ctx.body.lease_id));
    if (!lease || lease.expireAt <= Date.now()) throw badRequest('invalid lease');
    return ok({
      id: lease.id,
      expire_time: new Date(lease.expireAt).toISOString(),
      renewable: lease.renewable,
      ttl: Math.max(0, Math.round((lease.expireAt - Date.now()) / 1000)),
    });
  }

  if (sub === 'capabilities-self') {
    if (op !== 'update') throw unsupportedOperation();
    const paths = list(ctx.body.paths ?? ctx.body.path);
    const token = ctx.token;
    const data: Record<string, Json> = {};
    for (const path of paths) {
      data[path] = !token
        ? ['deny']
        : token.root
          ? ['root']
          : core.tokens.allows(token, path)
            ? ['create', 'delete', 'list', 'patch', 'read', 'update']
            : ['deny'];
    }
    if (paths.length === 1) data.capabilities = data[paths[0] ?? ''] ?? ['deny'];
    return ok(data);
  }

  if (sub === 'namespaces' || sub === 'namespaces/') {
    if (op !== 'list') throw unsupportedOperation();
    const keys = core.listNamespaces(ctx.ns.path);
    if (keys.length === 0) throw notFound();
    return ok({ keys: keys.sort() });
  }
  m = /^namespaces\/(.+?)\/?$/.exec(sub);
  if (m) {
    const path = `${ctx.ns.path}${m[1]}`;
    if (op === 'update') {
      core.namespace(path);
      return ok({ custom_metadata: {}, id: randomUUID().slice(0, 5), path: `${m[1]}/` });
    }
    if (op !== 'read') throw unsupportedOperation();
    if (!core.hasNamespace(path)) throw notFound();
    return ok({ custom_metadata: {}, id: '', path: `${m[1]}/` });
  }

  throw unsupportedPath();
}

function mountPath(core: Core, ctx: RequestContext, auth: boolean, rawPath: string, tune: boolean): Reply {
  const path = rawPath.endsWith('/') ? rawPath : `${rawPath}/`;
  const table = auth ? ctx.ns.authMounts : ctx.ns.mounts;
  const mount = table.get(path);
  if (tune) {
    if (!mount) throw badRequest(`cannot fetch sysview for path "${path}"`);
    if (ctx.op === 'read') {
      return ok({
        default_lease_ttl: mount.defaultLeaseTtl || SYSTEM_DEFAULT_TTL,
        description: mount.description,
        force_no_cache: false,
        max_lease_ttl: mount.maxLeaseTtl || SYSTEM_MAX_TTL,
        options: mount.options,
      });
    }
    if (ctx.op !== 'update') throw unsupportedOperation();
    core.tune(mount, ctx.body);
    return noContent();
  }
  switch (ctx.op) {
    case 'update': {
      const type = str(ctx.body.type);
      if (!type) throw badRequest('backend type must be specified as a string');
      core.createMount(ctx.ns, path, { ...ctx.body, type }, auth);
      return noContent();
    }
    case 'read':
      if (!mount) throw badRequest(`No ${auth ? 'auth' : 'secret engine'} mount at ${path}`);
      return ok(mountJson(mount), { mountType: 'system' });
    case 'delete':
      if (mount && !['sys/', 'cubbyhole/', 'identity/', 'token/'].includes(path)) table.delete(path);
      return noContent();
    default:
      throw unsupportedOperation();
  }
}

function renewLease(core: Core, leaseId: string, increment: number): Reply {
  if (!leaseId) throw badRequest('lease_id must be specified');
  const lease = core.leases.get(leaseId);
  // Expired leases are revoked and deleted by Vault, so they read as not found.
  if (!lease || lease.expireAt <= Date.now()) {
    core.leases.delete(leaseId);
    throw badRequest('lease not found');
  }
  if (!lease.renewable) throw badRequest('lease is not renewable');
  if (increment > 0) lease.expireAt = Date.now() + increment * 1000;
  return ok(null, {
    leaseId: lease.id,
    renewable: lease.renewable,
    leaseDuration: Math.max(0, Math.round((lease.expireAt - Date.now()) / 1000)),
  });
}

function sealStatus(core: Core): Reply {
  const body: Record<string, Json> = {
    type: 'shamir',
    initialized: core.healthState !== 'uninitialized',
    sealed: core.sealed,
    t: 1,
    n: 1,
    progress: 0,
    nonce: '',
    version: VAULT_VERSION,
    build_date: '2025-10-01T00:00:00Z',
    migration: false,
    recovery_seal: false,
    storage_type: 'inmem',
  };
  if (!core.sealed) {
    body.cluster_name = core.clusterName;
    body.cluster_id = core.clusterId;
  }
  return { kind: 'json', status: 200, body };
}

/** http/sys_health.go: every default code and every query override, including the 1.19 ones. */
function health(core: Core, query: URLSearchParams): Reply {
  const codes: Record<string, number> = {
    activecode: 200,
    standbycode: 429,
    drsecondarycode: 472,
    performancestandbycode: 473,
    haunhealthycode: 474,
    uninitcode: 501,
    sealedcode: 503,
    removedcode: 530,
  };
  for (const field of Object.keys(codes)) {
    const value = query.get(field);
    if (value === null) continue;
    if (!/^-?\d+$/.test(value)) return errorReply(400, []);
    codes[field] = Number.parseInt(value, 10);
  }
  const flags: Record<string, boolean> = {};
  for (const field of ['standbyok', 'perfstandbyok']) {
    const value = query.get(field);
    if (value === null) continue;
    // strconv.ParseBool semantics: anything else, including an empty value, is a 400.
    if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) flags[field] = true;
    else if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) flags[field] = false;
    else return errorReply(400, []);
  }

  const state = core.healthState;
  const sealed = core.sealed;
  const initialized = state !== 'uninitialized';
  const standby = sealed || state === 'standby' || state === 'perfstandby' || state === 'haunhealthy';
  const perfStandby = !sealed && state === 'perfstandby';
  let code = codes.activecode ?? 200;
  if (!initialized) code = codes.uninitcode ?? 501;
  else if (sealed) code = codes.sealedcode ?? 503;
  else if (state === 'removed') code = codes.removedcode ?? 530;
  else if (state === 'drsecondary') code = codes.drsecondarycode ?? 472;
  else if (state === 'haunhealthy') code = codes.haunhealthycode ?? 474;
  else if (perfStandby) {
    if (!flags.perfstandbyok) code = codes.performancestandbycode ?? 473;
  } else if (standby && !flags.standbyok) code = codes.standbycode ?? 429;

  const body: Record<string, Json> = {
    initialized,
    sealed,
    standby,
    performance_standby: perfStandby,
    replication_performance_mode: 'disabled',
    replication_dr_mode: state === 'drsecondary' ? 'secondary' : 'disabled',
    server_time_utc: Math.floor(Date.now() / 1000),
    version: VAULT_VERSION,
    enterprise: false,
    echo_duration_ms: 0,
    clock_skew_ms: 0,
    replication_primary_canary_age_ms: 0,
  };
  if (!sealed && initialized) {
    body.cluster_name = core.clusterName;
    body.cluster_id = core.clusterId;
  }
  if (state === 'removed') body.removed_from_cluster = true;
  if (state === 'haunhealthy') {
    body.ha_connection_healthy = false;
    body.last_request_forwarding_heartbeat_ms = 0;
  }
  return { kind: 'json', status: code, body };
}
