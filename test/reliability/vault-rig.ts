/**
 * Real-OpenBao plumbing shared by the reliability tests: operator seeding with the root token, an AppRole
 * with a least-privilege policy under a run prefix (files run in parallel against one shared server), and a
 * login-recording client.
 */
import nodeVault from 'node-vault';
import type { VaultClient } from '../../providers/vault/index.js';

export type SeedApi = (
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ data?: Record<string, unknown>; auth?: { client_token?: string } }>;

/** Seeds the server as an operator would: the root token, straight to its port (past any fault proxy). */
export function seedApi(url: string, rootToken: string): SeedApi {
  return async (method, path, body) => {
    const response = await fetch(`${url}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': rootToken, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`seeding ${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
    return text ? (JSON.parse(text) as { data?: Record<string, unknown> }) : {};
  };
}

/** The policy an application reading `secret/<prefix>/*` needs, and nothing more. */
export function readPolicy(prefix: string): string {
  return [
    `path "secret/data/${prefix}/*" { capabilities = ["read"] }`,
    `path "secret/metadata/${prefix}/*" { capabilities = ["read"] }`,
  ].join('\n');
}

export interface AppRole {
  roleId: string;
  /** Mount path of the AppRole auth method, `<prefix>-approle`. */
  mount: string;
  /** The ACL policy the role's tokens carry, named `<prefix>`. */
  policy: string;
  /** Removes the mount, the policy and every KV secret under `secret/<prefix>/`. */
  remove(): Promise<void>;
}

/**
 * Mounts AppRole at `<prefix>-approle` with a role `app` whose tokens may read `secret/<prefix>/*` (KV v2
 * data and metadata) and nothing else.
 */
export async function setupAppRole(api: SeedApi, prefix: string): Promise<AppRole> {
  const mount = `${prefix}-approle`;
  await api('PUT', `sys/policies/acl/${prefix}`, { policy: readPolicy(prefix) });
  await api('POST', `sys/auth/${mount}`, { type: 'approle' });
  await api('POST', `auth/${mount}/role/app`, {
    token_policies: prefix,
    token_ttl: '1h',
    token_max_ttl: '2h',
  });
  const roleId = String((await api('GET', `auth/${mount}/role/app/role-id`)).data?.role_id);
  return {
    roleId,
    mount,
    policy: prefix,
    async remove() {
      const quietly = (method: string, path: string) => api(method, path).catch(() => undefined);
      const listed = await api('LIST', `secret/metadata/${prefix}`).catch(() => ({ data: undefined }));
      const keys = listed.data?.keys;
      for (const key of Array.isArray(keys) ? keys : [])
        await quietly('DELETE', `secret/metadata/${prefix}/${String(key)}`);
      await quietly('DELETE', `sys/auth/${mount}`);
      await quietly('DELETE', `sys/policies/acl/${prefix}`);
    },
  };
}

export async function newSecretId(api: SeedApi, role: Pick<AppRole, 'mount'>): Promise<string> {
  return String((await api('POST', `auth/${role.mount}/role/app/secret-id`)).data?.secret_id);
}

/** node-vault pointed at `url`, keeping the client tokens that AppRole logins hand out. */
export function recordingClient(url: string): { client: VaultClient; tokens: string[] } {
  const inner = nodeVault({ endpoint: url });
  inner.token = '';
  const tokens: string[] = [];
  const client: VaultClient = {
    get token() {
      return inner.token;
    },
    set token(value) {
      inner.token = value ?? '';
    },
    // Not async: the provider relies on the request (and its token header) starting synchronously.
    read: (path, options) => inner.read(path, options),
    write(path, data, options) {
      const pending: Promise<{ auth?: { client_token?: string } }> = inner.write(path, data, options);
      return path.endsWith('/login')
        ? pending.then((reply) => {
            if (reply.auth?.client_token) tokens.push(reply.auth.client_token);
            return reply;
          })
        : pending;
    },
  };
  return { client, tokens };
}
