/**
 * KV secrets engines. v1 follows the passthrough backend (vault-plugin-secrets-kv passthrough.go),
 * v2 the versioned backend (path_data.go, path_metadata.go, path_delete.go, path_destroy.go).
 */
import type { Engine, RequestContext } from './types.js';
import {
  badRequest,
  bool,
  envelope,
  int,
  intList,
  isObject,
  type Json,
  noContent,
  notFound,
  nowNanos,
  ok,
  parseDuration,
  type Reply,
  rfc3339Nano,
  SYSTEM_DEFAULT_TTL,
  str,
  stringMap,
  unsupportedOperation,
  VaultError,
} from './util.js';

/** Directory listing as storage.List gives it: direct children, sub-folders with a trailing slash. */
function listChildren(keys: Iterable<string>, dir: string): string[] {
  const prefix = dir === '' || dir.endsWith('/') ? dir : `${dir}/`;
  const out = new Set<string>();
  for (const key of keys) {
    if (!key.startsWith(prefix)) continue;
    const rest = key.slice(prefix.length);
    if (rest === '') continue;
    const slash = rest.indexOf('/');
    out.add(slash === -1 ? rest : rest.slice(0, slash + 1));
  }
  return [...out].sort();
}

function keysOrNotFound(keys: string[]): Reply {
  // An empty list response turns into 404 `{"errors":[]}` at the HTTP layer.
  if (keys.length === 0) throw notFound();
  return ok({ keys }, { mountType: 'kv' });
}

function asJson(value: unknown): Json {
  return JSON.parse(JSON.stringify(value ?? null)) as Json;
}

// ---------------------------------------------------------------- v1

export class KvV1Engine implements Engine {
  private readonly store = new Map<string, Record<string, unknown>>();

  handle(ctx: RequestContext): Reply {
    const key = ctx.subPath;
    switch (ctx.op) {
      case 'read': {
        const data = this.store.get(key);
        if (!data) throw notFound();
        // The lease is advisory: a `ttl` (or `lease`) key sets lease_duration, otherwise the mount default.
        let duration = SYSTEM_DEFAULT_TTL;
        const ttlRaw = data.ttl ?? data.lease;
        if (ttlRaw !== undefined) {
          try {
            duration = parseDuration(ttlRaw, 'ttl');
          } catch {
            // passthrough.go ignores an unparsable ttl and keeps the default.
          }
        }
        return ok(asJson(data), { leaseDuration: duration, mountType: 'kv' });
      }
      case 'list':
        return keysOrNotFound(listChildren(this.store.keys(), key));
      case 'update':
        // logical.ErrorResponse with a nil error still becomes a 400.
        if (key === '') throw badRequest('missing path');
        if (Object.keys(ctx.body).length === 0) throw badRequest('missing data fields');
        this.store.set(key, structuredClone(ctx.body));
        return noContent();
      case 'delete':
        this.store.delete(key);
        return noContent();
      default:
        throw unsupportedOperation();
    }
  }
}

// ---------------------------------------------------------------- v2

interface VersionMeta {
  createdNanos: bigint;
  /** null when not deleted; soft deletes set it to the time of deletion. */
  deletionNanos: bigint | null;
  destroyed: boolean;
  data: Record<string, unknown> | null;
}

interface KeyMeta {
  currentVersion: number;
  oldestVersion: number;
  maxVersions: number;
  casRequired: boolean;
  customMetadata: Record<string, string> | null;
  createdNanos: bigint | null;
  updatedNanos: bigint | null;
  versions: Map<number, VersionMeta>;
}

const DEFAULT_MAX_VERSIONS = 10;

function ts(nanos: bigint | null): string {
  return nanos === null ? '' : rfc3339Nano(nanos);
}

function isDeleted(vm: VersionMeta): boolean {
  return vm.deletionNanos !== null && vm.deletionNanos <= nowNanos();
}

export class KvV2Engine implements Engine {
  private readonly keys = new Map<string, KeyMeta>();
  private config = { maxVersions: 0, casRequired: false };

  handle(ctx: RequestContext): Reply {
    const { subPath, op } = ctx;
    if (subPath === 'config') return this.configPath(ctx);
    let m = /^data\/(.*[^/])$/.exec(subPath);
    if (m) return this.dataPath(ctx, m[1] ?? '');
    m = /^metadata(?:\/(.*))?$/.exec(subPath);
    if (m) return this.metadataPath(ctx, m[1] ?? '');
    m = /^(delete|undelete|destroy)\/(.*)$/.exec(subPath);
    if (m) {
      if (op !== 'update') throw unsupportedOperation();
      return this.versionsPath(m[1] ?? '', m[2] ?? '', ctx.body.versions);
    }
    return this.invalidPath(op);
  }

  /** pathInvalid: a v1-style path on a v2 mount is a 404 with a warning, not an error list. */
  private invalidPath(op: RequestContext['op']): Reply {
    const sub = { update: 'put', read: 'get', list: 'list', delete: 'delete', patch: 'patch' }[op];
    return envelope(404, {
      warnings: [
        `Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv ${sub}' for this operation.`,
      ],
      mountType: 'kv',
    });
  }

  private configPath(ctx: RequestContext): Reply {
    if (ctx.op === 'read') {
      return ok(
        {
          cas_required: this.config.casRequired,
          delete_version_after: '0s',
          max_versions: this.config.maxVersions,
        },
        { mountType: 'kv' },
      );
    }
    if (ctx.op !== 'update') throw unsupportedOperation();
    this.config = {
      maxVersions: int(ctx.body.max_versions, this.config.maxVersions),
      casRequired: bool(ctx.body.cas_required, this.config.casRequired),
    };
    return noContent();
  }

  private dataPath(ctx: RequestContext, key: string): Reply {
    switch (ctx.op) {
      case 'read':
        return this.read(key, ctx.query.get('version'));
      case 'update':
        return this.write(key, ctx.body, null);
      case 'patch':
        return this.patch(ctx, key);
      case 'delete': {
        const meta = this.keys.get(key);
        const lv = meta?.versions.get(meta.currentVersion);
        if (lv && !lv.destroyed && !isDeleted(lv)) lv.deletionNanos = nowNanos();
        return noContent();
      }
      default:
        throw unsupportedOperation();
    }
  }

  private versionResponse(meta: KeyMeta, version: number, vm: VersionMeta): Record<string, Json> {
    return {
      created_time: ts(vm.createdNanos),
      custom_metadata: meta.customMetadata,
      deletion_time: ts(vm.deletionNanos),
      destroyed: vm.destroyed,
      version,
    };
  }

  private read(key: string, versionParam: string | null): Reply {
    const meta = this.keys.get(key);
    if (!meta) throw notFound();
    let version = meta.currentVersion;
    if (versionParam !== null && versionParam !== '') {
      const parsed = int(versionParam, Number.NaN);
      if (Number.isNaN(parsed)) {
        throw badRequest(`error converting input ${versionParam} for field "version": cannot parse as int`);
      }
      if (parsed > 0) version = parsed;
    }
    const vm = meta.versions.get(version);
    if (!vm) throw notFound();
    const data: Record<string, Json> = { data: null, metadata: this.versionResponse(meta, version, vm) };
    // Deleted and destroyed versions answer 404 with the whole response (logical.RespondWithStatusCode).
    if (isDeleted(vm) || vm.destroyed) return envelope(404, { data, mountType: 'kv' });
    data.data = asJson(vm.data);
    return ok(data, { mountType: 'kv' });
  }

  /** validateCheckAndSetOption from path_data.go, with its three messages. */
  private checkCas(body: Record<string, unknown>, meta: KeyMeta): void {
    const options = isObject(body.options) ? body.options : null;
    if (options && 'cas' in options) {
      const cas = int(options.cas, Number.NaN);
      if (Number.isNaN(cas)) throw badRequest('error parsing check-and-set parameter');
      if (cas !== meta.currentVersion)
        throw badRequest('check-and-set parameter did not match the current version');
    } else if (this.config.casRequired || meta.casRequired) {
      throw badRequest('check-and-set parameter required for this call');
    }
  }

  private write(
    key: string,
    body: Record<string, unknown>,
    replacement: Record<string, unknown> | null,
  ): Reply {
    const data = replacement ?? body.data;
    if (data === undefined || data === null) throw badRequest('no data provided');
    if (!isObject(data)) throw badRequest(`error converting input for field "data": expected a map`);
    const meta = this.keys.get(key) ?? this.emptyMeta();
    this.checkCas(body, meta);
    const created = nowNanos();
    const vm: VersionMeta = {
      createdNanos: created,
      deletionNanos: null,
      destroyed: false,
      data: structuredClone(data),
    };
    // KeyMetadata.AddVersion: append, then slide the max_versions window.
    meta.currentVersion += 1;
    meta.versions.set(meta.currentVersion, vm);
    meta.updatedNanos = created;
    meta.createdNanos ??= created;
    const maxVersions = Math.max(meta.maxVersions, this.config.maxVersions) || DEFAULT_MAX_VERSIONS;
    if (meta.currentVersion - meta.oldestVersion >= maxVersions) {
      const toDelete = meta.currentVersion - maxVersions;
      for (let i = meta.oldestVersion; i <= toDelete; i++) meta.versions.delete(i);
      meta.oldestVersion = toDelete + 1;
    }
    this.keys.set(key, meta);
    return ok(this.versionResponse(meta, meta.currentVersion, vm), { mountType: 'kv' });
  }

  private patch(ctx: RequestContext, key: string): Reply {
    const contentType = str(ctx.headers['content-type']).split(';')[0]?.trim().toLowerCase();
    if (contentType !== 'application/merge-patch+json') {
      throw new VaultError(415, ['PATCH requires Content-Type: application/merge-patch+json']);
    }
    if (ctx.body.data === undefined) throw badRequest('no data provided');
    const meta = this.keys.get(key);
    const current = meta?.versions.get(meta.currentVersion);
    if (!meta || !current) throw notFound();
    this.checkCas(ctx.body, meta);
    if (isDeleted(current) || current.destroyed) {
      return envelope(404, {
        data: this.versionResponse(meta, meta.currentVersion, current),
        mountType: 'kv',
      });
    }
    const merged = mergePatch(current.data ?? {}, ctx.body.data);
    const { options } = ctx.body;
    // The CAS check already ran against the current version; the write must not run it again.
    return this.write(
      key,
      { options: isObject(options) ? { ...options, cas: meta.currentVersion } : undefined },
      merged,
    );
  }

  private emptyMeta(): KeyMeta {
    return {
      currentVersion: 0,
      oldestVersion: 0,
      maxVersions: 0,
      casRequired: false,
      customMetadata: null,
      createdNanos: null,
      updatedNanos: null,
      versions: new Map(),
    };
  }

  private metadataPath(ctx: RequestContext, key: string): Reply {
    switch (ctx.op) {
      case 'list':
        return keysOrNotFound(listChildren(this.keys.keys(), key));
      case 'read': {
        const meta = this.keys.get(key);
        if (!meta) throw notFound();
        const versions: Record<string, Json> = {};
        for (const [n, vm] of [...meta.versions.entries()].sort((a, b) => a[0] - b[0])) {
          versions[String(n)] = {
            created_time: ts(vm.createdNanos),
            deletion_time: ts(vm.deletionNanos),
            destroyed: vm.destroyed,
          };
        }
        return ok(
          {
            cas_required: meta.casRequired,
            created_time: ts(meta.createdNanos),
            current_version: meta.currentVersion,
            custom_metadata: meta.customMetadata,
            delete_version_after: '0s',
            max_versions: meta.maxVersions,
            oldest_version: meta.oldestVersion,
            updated_time: ts(meta.updatedNanos),
            versions,
          },
          { mountType: 'kv' },
        );
      }
      case 'update': {
        if (key === '') throw badRequest('missing path');
        const meta = this.keys.get(key) ?? this.emptyMeta();
        const b = ctx.body;
        if (b.max_versions !== undefined) meta.maxVersions = int(b.max_versions, meta.maxVersions);
        if (b.cas_required !== undefined) {
          const required = bool(b.cas_required, meta.casRequired);
          if (!required && this.config.casRequired) {
            throw badRequest('cas_required cannot be set to false if mandated by backend config');
          }
          meta.casRequired = required;
        }
        if (b.custom_metadata !== undefined) meta.customMetadata = stringMap(b.custom_metadata);
        this.keys.set(key, meta);
        return noContent();
      }
      case 'delete':
        this.keys.delete(key);
        return noContent();
      default:
        throw unsupportedOperation();
    }
  }

  private versionsPath(action: string, key: string, rawVersions: unknown): Reply {
    const versions = intList(rawVersions);
    if (versions.length === 0) {
      throw badRequest(action === 'destroy' ? 'no version number provided' : 'No version number provided');
    }
    const meta = this.keys.get(key);
    if (!meta) return noContent();
    for (const n of versions) {
      const vm = meta.versions.get(n);
      if (!vm || vm.destroyed) continue;
      if (action === 'delete') {
        if (!isDeleted(vm)) vm.deletionNanos = nowNanos();
      } else if (action === 'undelete') {
        vm.deletionNanos = null;
      } else {
        vm.destroyed = true;
        vm.data = null;
      }
    }
    return noContent();
  }
}

/** RFC 7396 JSON merge patch, as framework.HandlePatchOperation applies it. */
function mergePatch(target: Record<string, unknown>, patch: unknown): Record<string, unknown> {
  if (!isObject(patch)) return {};
  const out: Record<string, unknown> = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (isObject(v)) out[k] = mergePatch(isObject(out[k]) ? out[k] : {}, v);
    else out[k] = v;
  }
  return out;
}
