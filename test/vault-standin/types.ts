import type { IncomingHttpHeaders } from 'node:http';
import type { TokenEntry } from './tokens.js';
import type { Body, Operation, Reply } from './util.js';

/** A secrets engine or auth method mounted at a path. */
export interface Engine {
  handle(ctx: RequestContext): Promise<Reply> | Reply;
  /** Sub-paths (relative to the mount) that Vault serves without a token, such as logins and CA fetches. */
  unauthenticated?(subPath: string, op: Operation): boolean;
}

export interface Mount {
  /** Mount path with a trailing slash, relative to `sys/mounts` or `sys/auth` ("secret/", "approle/"). */
  path: string;
  type: string;
  options: Record<string, string> | null;
  description: string;
  accessor: string;
  uuid: string;
  local: boolean;
  sealWrap: boolean;
  /** Seconds; 0 means the system default (768h in dev mode). */
  defaultLeaseTtl: number;
  maxLeaseTtl: number;
  /** Whether this mount lives under `auth/`. */
  auth: boolean;
  engine: Engine;
}

/** Node roles `sys/health` can report; the stand-in is `active` unless a test says otherwise. */
export type HealthState =
  | 'active'
  | 'standby'
  | 'perfstandby'
  | 'drsecondary'
  | 'uninitialized'
  | 'removed'
  | 'haunhealthy';

export interface Lease {
  id: string;
  expireAt: number;
  renewable: boolean;
}

/** Per-namespace state: `X-Vault-Namespace` scopes mounts, as Vault Enterprise does. */
export interface Namespace {
  path: string;
  mounts: Map<string, Mount>;
  authMounts: Map<string, Mount>;
}

export interface RequestContext {
  op: Operation;
  /** The HTTP method as sent (PUT and POST both map to `update`). */
  method: string;
  /** Namespace-relative logical path without the leading slash ("secret/data/app"). */
  path: string;
  /** Path below the mount ("data/app"). */
  subPath: string;
  mount: Mount;
  body: Body;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  token: TokenEntry | null;
  ns: Namespace;
}
