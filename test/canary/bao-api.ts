/** Seeds a real OpenBao over its HTTP API with a root token, as an operator would. */
export type BaoApi = (method: string, path: string, body?: unknown) => Promise<Record<string, unknown>>;

export function baoApi(url: string, token: string): BaoApi {
  return async (method, path, body) => {
    const response = await fetch(`${url}/v1/${path}`, {
      method,
      headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok)
      throw new Error(`seeding ${method} ${path} failed: HTTP ${response.status} ${text.slice(0, 300)}`);
    return text ? (JSON.parse(text) as Record<string, unknown>) : {};
  };
}

/** An AppRole mount and role that may read everything under `secret/` (and `readable`); returns role and secret ids. */
export async function setupAppRole(
  api: BaoApi,
  mount: string,
  policy: string,
  readable: readonly string[] = [],
): Promise<{ roleId: string; newSecretId: () => Promise<string> }> {
  await api('POST', `sys/auth/${mount}`, { type: 'approle' });
  await api('PUT', `sys/policies/acl/${policy}`, {
    policy: ['secret/*', 'sys/internal/ui/mounts/*', ...readable]
      .map((path) => `path "${path}" { capabilities = ["read"] }`)
      .join('\n'),
  });
  await api('POST', `auth/${mount}/role/canary`, { token_policies: [policy], token_ttl: '10m' });
  const role = await api('GET', `auth/${mount}/role/canary/role-id`);
  const roleId = String((role.data as { role_id?: unknown } | undefined)?.role_id);
  const newSecretId = async () => {
    const reply = await api('POST', `auth/${mount}/role/canary/secret-id`);
    return String((reply.data as { secret_id?: unknown } | undefined)?.secret_id);
  };
  return { roleId, newSecretId };
}
