/**
 * The stand-in's logical core: namespaces, mount tables, token checks and request routing, in the order
 * Vault applies them (mount lookup, unauthenticated paths, token, policy, backend).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { KvV1Engine, KvV2Engine } from './kv.js';
import { PkiEngine } from './pki.js';
import { handleSys } from './sys.js';
import { AppRoleEngine, KubernetesEngine, TokenAuthEngine, TokenStore } from './tokens.js';
import type { Engine, HealthState, Lease, Mount, Namespace, RequestContext } from './types.js';
import {
  type Body,
  badRequest,
  errorReply,
  hex,
  isObject,
  multiError,
  type Operation,
  parseDuration,
  type Reply,
  randomUUID,
  str,
  unsupportedPath,
  VaultError,
} from './util.js';

export interface MountRequest {
  type: string;
  options?: unknown;
  config?: unknown;
  description?: unknown;
  local?: unknown;
}

export interface DispatchRequest {
  method: string;
  /** Path after `/v1/`, percent-decoded, without the query. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Body;
}

/** Engines that do nothing but exist in a dev server's mount table. */
const inertEngine: Engine = {
  handle(): Reply {
    throw unsupportedPath();
  },
};

const SECRET_TYPES = new Set(['kv', 'kv-v2', 'pki']);
const AUTH_TYPES = new Set(['approle', 'kubernetes']);

export class Core {
  readonly tokens = new TokenStore();
  readonly leases = new Map<string, Lease>();
  readonly clusterName = `vault-cluster-${hex(4)}`;
  readonly clusterId = randomUUID();
  private readonly namespaces = new Map<string, Namespace>();
  /** Mirrors of the fault switches, read by `sys/health` and `sys/seal-status`. */
  sealed = false;
  healthState: HealthState = 'active';

  constructor(rootToken: string) {
    this.tokens.createRoot(rootToken);
    const root = this.newNamespace('');
    // Dev mode mounts a KV v2 engine at secret/ in the root namespace only.
    this.createMount(root, 'secret/', { type: 'kv', options: { version: '2' } }, false);
    this.namespaces.set('', root);
  }

  /** A namespace by path ("" is root); namespaces named by header spring into existence on first use. */
  namespace(path: string): Namespace {
    const key = normaliseNamespace(path);
    let ns = this.namespaces.get(key);
    if (!ns) {
      ns = this.newNamespace(key);
      this.namespaces.set(key, ns);
    }
    return ns;
  }

  hasNamespace(path: string): boolean {
    return this.namespaces.has(normaliseNamespace(path));
  }

  listNamespaces(parent: string): string[] {
    const prefix = normaliseNamespace(parent);
    return [...this.namespaces.keys()]
      .filter((k) => k !== '' && k.startsWith(prefix) && k !== prefix)
      .map((k) => k.slice(prefix.length))
      .filter((k) => k.split('/').filter(Boolean).length === 1);
  }

  private newNamespace(path: string): Namespace {
    const ns: Namespace = { path, mounts: new Map(), authMounts: new Map() };
    const system: Array<[string, string, boolean]> = [
      ['cubbyhole/', 'cubbyhole', true],
      ['identity/', 'identity', false],
      ['sys/', 'system', false],
    ];
    for (const [mountPath, type, local] of system) {
      ns.mounts.set(mountPath, this.mountEntry(mountPath, type, null, inertEngine, false, local));
    }
    ns.authMounts.set(
      'token/',
      this.mountEntry('token/', 'token', null, new TokenAuthEngine(this.tokens), true, false),
    );
    return ns;
  }

  private mountEntry(
    path: string,
    type: string,
    options: Record<string, string> | null,
    engine: Engine,
    auth: boolean,
    local: boolean,
  ): Mount {
    const prefix = type === 'system' ? 'system' : type === 'kv' ? 'kv' : type;
    return {
      path,
      type,
      options,
      description: '',
      accessor: `${auth ? 'auth_' : ''}${prefix}_${hex(4)}`,
      uuid: randomUUID(),
      local,
      sealWrap: false,
      defaultLeaseTtl: 0,
      maxLeaseTtl: 0,
      auth,
      engine,
    };
  }

  /** `POST sys/mounts/<path>` and `POST sys/auth/<path>`. */
  createMount(ns: Namespace, rawPath: string, request: MountRequest, auth: boolean): Mount {
    const path = rawPath.endsWith('/') ? rawPath : `${rawPath}/`;
    const table = auth ? ns.authMounts : ns.mounts;
    const reserved = ['sys/', 'auth/', 'cubbyhole/', 'identity/'];
    if (!auth && reserved.some((r) => path.startsWith(r))) {
      throw badRequest(`cannot mount under ${reserved.find((r) => path.startsWith(r))}`);
    }
    for (const existing of table.keys()) {
      if (existing.startsWith(path) || path.startsWith(existing)) {
        throw badRequest(`path is already in use at ${existing}`);
      }
    }
    let type = request.type;
    const options = isObject(request.options)
      ? Object.fromEntries(Object.entries(request.options).map(([k, v]) => [k, str(v)]))
      : null;
    let resolvedOptions: Record<string, string> | null = options;
    if (type === 'kv-v2') {
      type = 'kv';
      resolvedOptions = { ...(options ?? {}), version: '2' };
    }
    const allowed = auth ? AUTH_TYPES : SECRET_TYPES;
    if (!allowed.has(request.type)) {
      throw badRequest(`plugin not found in the catalog: ${request.type}`);
    }
    let mountRef: Mount | undefined;
    const getMount = (): Mount => {
      if (!mountRef) throw new Error('mount not initialised');
      return mountRef;
    };
    const mountPath = (): string => getMount().path;
    let engine: Engine;
    if (type === 'kv') {
      // A kv mount without a version option is KV v1.
      engine = resolvedOptions?.version === '2' ? new KvV2Engine() : new KvV1Engine();
    } else if (type === 'pki') {
      engine = new PkiEngine(getMount, (lease) => this.leases.set(lease.id, lease));
    } else if (type === 'approle') {
      engine = new AppRoleEngine(this.tokens, mountPath);
    } else {
      engine = new KubernetesEngine(this.tokens, mountPath);
    }
    const mount = this.mountEntry(path, type, resolvedOptions, engine, auth, request.local === true);
    mount.description = str(request.description);
    if (isObject(request.config)) this.tune(mount, request.config);
    mountRef = mount;
    table.set(path, mount);
    return mount;
  }

  tune(mount: Mount, config: Record<string, unknown>): void {
    if (config.default_lease_ttl !== undefined) {
      mount.defaultLeaseTtl = parseDuration(config.default_lease_ttl, 'default_lease_ttl');
    }
    if (config.max_lease_ttl !== undefined)
      mount.maxLeaseTtl = parseDuration(config.max_lease_ttl, 'max_lease_ttl');
    if (config.description !== undefined) mount.description = str(config.description);
  }

  /** The mount owning a logical path, by longest prefix, with the path below it. */
  resolve(ns: Namespace, path: string): { mount: Mount; subPath: string } | null {
    if (path === 'sys' || path.startsWith('sys/')) {
      const mount = ns.mounts.get('sys/');
      return mount ? { mount, subPath: path.slice(4) } : null;
    }
    const isAuth = path.startsWith('auth/');
    const table = isAuth ? ns.authMounts : ns.mounts;
    const rel = isAuth ? path.slice(5) : path;
    let best: Mount | null = null;
    for (const [mountPath, mount] of table) {
      const matches = rel.startsWith(mountPath) || `${rel}/` === mountPath;
      if (matches && (!best || mountPath.length > best.path.length)) best = mount;
    }
    if (!best) return null;
    return { mount: best, subPath: rel.slice(best.path.length) };
  }

  async dispatch(req: DispatchRequest): Promise<Reply> {
    const op = operationOf(req.method, req.query);
    if (!op) return errorReply(405, []);
    const { ns, path } = this.splitNamespace(req);
    if (path.endsWith('.')) return errorReply(404, []);
    const resolved = this.resolve(ns, path);
    const body: Body = { ...req.body };
    if (op === 'read' || op === 'list') {
      for (const [k, v] of req.query) if (k !== 'list' && body[k] === undefined) body[k] = v;
    }

    const unauthenticated =
      resolved !== null &&
      (resolved.mount.type === 'system'
        ? /^(health|seal-status|leader|init)$/.test(resolved.subPath)
        : (resolved.mount.engine.unauthenticated?.(resolved.subPath, op) ?? false));
    const token = this.tokens.lookup(tokenOf(req.headers));
    if (!unauthenticated) {
      if (!token) return errorReply(403, ['permission denied']);
      if (!this.tokens.allows(token, path)) return errorReply(403, [multiError('permission denied')]);
    }
    if (!resolved) {
      return errorReply(404, [`no handler for route "${ns.path}${path}". route entry not found.`]);
    }
    const ctx: RequestContext = {
      op,
      method: req.method,
      path,
      subPath: resolved.subPath,
      mount: resolved.mount,
      body,
      query: req.query,
      headers: req.headers,
      token,
      ns,
    };
    try {
      if (resolved.mount.type === 'system') return await handleSys(this, ctx);
      return await resolved.mount.engine.handle(ctx);
    } catch (err) {
      if (err instanceof VaultError) return errorReply(err.status, err.errors);
      return errorReply(500, [multiError(err instanceof Error ? err.message : String(err))]);
    }
  }

  /** `X-Vault-Namespace` is prepended to the path; a known namespace may also lead the path itself. */
  private splitNamespace(req: DispatchRequest): { ns: Namespace; path: string } {
    const header = normaliseNamespace(str(req.headers['x-vault-namespace']));
    let path = req.path.replace(/^\/+/, '');
    let nsPath = header;
    const segments = path.split('/');
    for (let i = segments.length - 1; i > 0; i--) {
      const candidate = normaliseNamespace(`${header}${segments.slice(0, i).join('/')}`);
      if (candidate !== header && this.hasNamespace(candidate)) {
        nsPath = candidate;
        path = segments.slice(i).join('/');
        break;
      }
    }
    return { ns: this.namespace(nsPath), path };
  }
}

function normaliseNamespace(path: string): string {
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' || trimmed === 'root' ? '' : `${trimmed}/`;
}

/** PUT and POST are the same operation; LIST and `GET ?list=true` too (stores-api.md A.0). */
function operationOf(method: string, query: URLSearchParams): Operation | null {
  switch (method) {
    case 'GET':
    case 'HEAD':
      return query.get('list') === 'true' ? 'list' : 'read';
    case 'LIST':
      return 'list';
    case 'POST':
    case 'PUT':
      return 'update';
    case 'DELETE':
      return 'delete';
    case 'PATCH':
      return 'patch';
    default:
      return null;
  }
}

function tokenOf(headers: IncomingHttpHeaders): string | undefined {
  const direct = str(headers['x-vault-token']);
  if (direct) return direct;
  const authz = str(headers.authorization);
  const match = /^Bearer\s+(.+)$/i.exec(authz);
  return match?.[1]?.trim();
}
