/** Vault stand-in plumbing shared by the reliability tests: operator seeding and a login-recording client. */
import nodeVault from 'node-vault';
import type { VaultClient } from '../../providers/vault/index.js';
import type { VaultStandin } from '../vault-standin/index.js';

export type SeedApi = (
  method: string,
  path: string,
  body?: unknown,
) => Promise<{ data?: Record<string, unknown> }>;

/** Seeds the stand-in as an operator would: the root token, straight to its port (past any fault proxy). */
export function seedApi(standin: VaultStandin): SeedApi {
  return async (method, path, body) => {
    const response = await fetch(`${standin.url}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': standin.rootToken, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`seeding ${method} ${path}: ${response.status}`);
    return text ? (JSON.parse(text) as { data?: Record<string, unknown> }) : {};
  };
}

/** Mounts AppRole at `approle/` with a role `app`; returns its role id. */
export async function setupAppRole(api: SeedApi): Promise<string> {
  await api('POST', 'sys/auth/approle', { type: 'approle' });
  await api('POST', 'auth/approle/role/app', { token_ttl: '1h', token_max_ttl: '2h' });
  return String((await api('GET', 'auth/approle/role/app/role-id')).data?.role_id);
}

export async function newSecretId(api: SeedApi): Promise<string> {
  return String((await api('POST', 'auth/approle/role/app/secret-id')).data?.secret_id);
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
