/**
 * KV secrets (v1 and v2). A reference names a full path (`secret/app/tls`); the mount and its KV version are
 * asked of Vault once per mount (`sys/internal/ui/mounts/<path>`, what the `vault kv` CLI does) and kept.
 */
import { contentVersion } from '../../src/content-version.js';
import { FetchError, SecretNotFoundError } from '../../src/errors.js';
import type { FetchResult } from '../../src/provider.js';
import { malformedAnswer, statusOf, TOKEN_REFUSED } from './errors.js';
import type { VaultSession } from './session.js';

export interface KvSpec {
  kind: 'kv';
  path: string;
  version: number | undefined;
  kvVersion: 1 | 2 | undefined;
  mount: string | undefined;
}

interface MountInfo {
  /** Mount path with its trailing slash, as Vault reports it (`secret/`). */
  mount: string;
  kvVersion: 1 | 2;
}

export function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

/** Identifies what one read returns: every field of one path (and pinned version) shares it. */
export function kvId(spec: KvSpec): string {
  const query = [
    spec.version !== undefined && `version=${spec.version}`,
    spec.mount !== undefined && `mount=${spec.mount}`,
    spec.kvVersion !== undefined && `kv=${spec.kvVersion}`,
  ].filter(Boolean);
  return query.length ? `${spec.path}?${query.join('&')}` : spec.path;
}

export class KvEngine {
  /** Known mounts by path. Vault refuses a mount inside another, so a prefix match is unambiguous. */
  private readonly mounts = new Map<string, MountInfo>();
  private readonly detecting = new Map<string, Promise<MountInfo>>();
  /**
   * Paths whose metadata the token may not read while it may read the data: version probes fall back to
   * full reads there. A metadata 403 only counts once a data read then succeeds, since during an outage
   * of the token itself both are refused and the probe must come back afterwards.
   */
  private readonly metadataDenied = new Set<string>();
  private readonly metadataRefused = new Set<string>();
  /** The identity last fetched of each pinned version: its probe answers from here, with no request. */
  private readonly pinnedIdentity = new Map<string, string>();

  constructor(
    private readonly session: VaultSession,
    private readonly providerName: string,
  ) {}

  async fetch(spec: KvSpec, ref: string, signal: AbortSignal): Promise<FetchResult> {
    const { mount, kvVersion, rest } = await this.locate(spec, ref, signal);
    if (kvVersion === 1) {
      if (spec.version !== undefined) {
        throw this.fail(`version pinning needs KV v2, but ${mount} is KV v1`, ref);
      }
      const path = encodePath(mount + rest);
      const response = await this.session.call({ method: 'read', path, ref }, signal);
      // Vault answers a missing secret with 404 (SecretNotFoundError, errors.ts); a 200 without the map
      // is an answer that did not arrive whole.
      const data = (response as { data?: unknown } | null)?.data;
      if (!isMap(data)) throw this.malformed(`read ${path}`, ref, 'data is missing or not a map');
      // KV v1 keeps no versions: a keyed hash of the map stands in (see src/content-version.ts).
      return { value: data, version: contentVersion(data) };
    }
    const query = spec.version === undefined ? '' : `?version=${spec.version}`;
    const path = `${encodePath(mount)}data/${encodePath(rest)}`;
    const response = await this.session.call({ method: 'read', path: `${path}${query}`, ref }, signal);
    const body = (
      response as {
        data?: {
          data?: unknown;
          metadata?: {
            version?: unknown;
            created_time?: unknown;
            deletion_time?: unknown;
            destroyed?: unknown;
          };
        };
      } | null
    )?.data;
    const action = `read ${path}`;
    if (!isMap(body)) throw this.malformed(action, ref, 'data is missing or not an object');
    const metadata = isMap(body.metadata) ? body.metadata : undefined;
    if (!isMap(body.data)) {
      // Vault answers a deleted or destroyed version with 404 (errors.ts); a server that answers 200 says so
      // in the metadata. Only then is it gone: a null map without that is a malformed answer.
      if (body.data === null && metadata?.destroyed === true) {
        throw new SecretNotFoundError('secret version destroyed', { provider: this.providerName, ref });
      }
      if (
        body.data === null &&
        typeof metadata?.deletion_time === 'string' &&
        metadata.deletion_time !== ''
      ) {
        throw new SecretNotFoundError('secret version deleted', { provider: this.providerName, ref });
      }
      throw this.malformed(action, ref, 'data.data is missing or not a map');
    }
    const version = metadata?.version;
    if (typeof version !== 'number') {
      throw this.malformed(action, ref, 'data.metadata.version is missing or not a number');
    }
    if (this.metadataRefused.delete(spec.path)) this.metadataDenied.add(spec.path);
    const identity = versionIdentity(version, body.metadata?.created_time);
    if (spec.version !== undefined) this.pinnedIdentity.set(kvId(spec), identity);
    return { value: body.data, version: identity };
  }

  /**
   * KV v2: the metadata's `current_version` and its `created_time`, one small read. A version number alone
   * is not an identity: numbers restart at 1 after `metadata delete` and on a fresh server, and a new
   * certificate written there would look unchanged. A current version deleted or destroyed is an error the
   * operator sees (the last good bundle keeps serving, stale). KV v1 has none: undefined lets the
   * resolver compare content.
   */
  async currentVersion(spec: KvSpec, ref: string, signal: AbortSignal): Promise<string | undefined> {
    if (spec.version !== undefined) return this.pinnedIdentity.get(kvId(spec));
    const { mount, kvVersion, rest } = await this.locate(spec, ref, signal);
    if (kvVersion === 1 || this.metadataDenied.has(spec.path)) return undefined;
    let response: unknown;
    const path = `${encodePath(mount)}metadata/${encodePath(rest)}`;
    try {
      response = await this.session.call({ method: 'read', path, ref }, signal);
    } catch (err) {
      if (statusOf(err) !== 403) throw err;
      this.metadataRefused.add(spec.path);
      return undefined;
    }
    const metadata = (
      response as {
        data?: {
          current_version?: unknown;
          versions?: Record<string, { created_time?: unknown; deletion_time?: unknown; destroyed?: unknown }>;
        };
      } | null
    )?.data;
    const action = `read ${path}`;
    if (!isMap(metadata)) throw this.malformed(action, ref, 'data is missing or not an object');
    const current = metadata.current_version;
    if (typeof current !== 'number' || !Number.isInteger(current) || current < 0) {
      throw this.malformed(action, ref, 'data.current_version is missing or not a version number');
    }
    // Metadata written before any data: nothing to compare, the data read will answer 404.
    if (current === 0) return undefined;
    const entry = isMap(metadata.versions) ? metadata.versions[String(current)] : undefined;
    if (!isMap(entry)) throw this.malformed(action, ref, `data.versions["${current}"] is missing`);
    if (entry?.destroyed === true) {
      throw new SecretNotFoundError(`current version ${current} destroyed`, {
        provider: this.providerName,
        ref,
      });
    }
    const deletion = typeof entry?.deletion_time === 'string' ? Date.parse(entry.deletion_time) : Number.NaN;
    if (deletion <= Date.now()) {
      throw new SecretNotFoundError(`current version ${current} deleted`, {
        provider: this.providerName,
        ref,
      });
    }
    return versionIdentity(current, entry?.created_time);
  }

  private async locate(
    spec: KvSpec,
    ref: string,
    signal: AbortSignal,
  ): Promise<MountInfo & { rest: string }> {
    const info = await this.mountOf(spec, ref, signal);
    const rest = spec.path.slice(info.mount.length);
    if (!`${spec.path}/`.startsWith(info.mount) || rest === '') {
      throw this.fail(`path ${spec.path} does not name a secret inside mount ${info.mount}`, ref);
    }
    return { ...info, rest };
  }

  private async mountOf(spec: KvSpec, ref: string, signal: AbortSignal): Promise<MountInfo> {
    if (spec.mount !== undefined && spec.kvVersion !== undefined) {
      return { mount: `${spec.mount}/`, kvVersion: spec.kvVersion };
    }
    const known = this.knownMount(spec.path);
    if (known) return known;
    // Concurrent first reads under one mount ask once: wait for a detection under the same first path
    // segment (where nearly every mount lives), then look again.
    const segment = spec.path.split('/')[0] ?? spec.path;
    const inFlight = this.detecting.get(segment);
    if (inFlight) {
      await inFlight.catch(() => undefined);
      const detected = this.knownMount(spec.path);
      if (detected) return detected;
    }
    const detection = this.detectMount(spec, ref, signal);
    this.detecting.set(segment, detection);
    try {
      return await detection;
    } finally {
      if (this.detecting.get(segment) === detection) this.detecting.delete(segment);
    }
  }

  private knownMount(path: string): MountInfo | undefined {
    for (const info of this.mounts.values()) if (`${path}/`.startsWith(info.mount)) return info;
    return undefined;
  }

  private async detectMount(spec: KvSpec, ref: string, signal: AbortSignal): Promise<MountInfo> {
    let response: unknown;
    try {
      response = await this.session.call(
        { method: 'read', path: `sys/internal/ui/mounts/${encodePath(spec.path)}`, ref },
        signal,
      );
    } catch (err) {
      // Vault answers 403 both for "no permission" and for "no such mount" here (so that mounts cannot be
      // enumerated): an explicit kvVersion is the way around it.
      if (statusOf(err) !== 403) throw err;
      if (spec.kvVersion === undefined) {
        throw new FetchError(
          this.session.tokenLookupDenied()
            ? `cannot detect the KV mount of ${spec.path}: Vault denied permission, and also refused ${TOKEN_REFUSED}`
            : `cannot detect the KV mount of ${spec.path}: no such mount, or the token has no capability ` +
                `under it; set the kvVersion (and mount) option`,
          { provider: this.providerName, ref, transient: false, cause: err },
        );
      }
      const info: MountInfo = {
        mount: `${spec.mount ?? spec.path.split('/')[0]}/`,
        kvVersion: spec.kvVersion,
      };
      this.mounts.set(info.mount, info);
      return info;
    }
    const data = (
      response as { data?: { path?: unknown; type?: unknown; options?: { version?: unknown } | null } }
    )?.data;
    const mount = data?.path;
    if (typeof mount !== 'string' || !`${spec.path}/`.startsWith(mount)) {
      throw this.malformed(
        `read sys/internal/ui/mounts/${encodePath(spec.path)}`,
        ref,
        'data.path is missing or not a mount of this path',
      );
    }
    // `generic` is the pre-0.8 name of KV v1.
    if (data?.type !== 'kv' && data?.type !== 'generic') {
      throw this.fail(`${mount} is a ${String(data?.type)} mount, not KV`, ref);
    }
    const info: MountInfo = { mount, kvVersion: data.options?.version === '2' ? 2 : 1 };
    this.mounts.set(mount, info);
    return info;
  }

  private malformed(action: string, ref: string, what: string): FetchError {
    return malformedAnswer({ provider: this.providerName, ref, action }, what);
  }

  private fail(reason: string, ref: string): FetchError {
    return new FetchError(reason, { provider: this.providerName, ref, transient: false });
  }
}

/** `<version>@<created_time>`: what tells two writes apart even when their numbers are equal. */
function versionIdentity(version: number, createdTime: unknown): string {
  return typeof createdTime === 'string' && createdTime !== ''
    ? `${version}@${createdTime}`
    : String(version);
}

function isMap(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
