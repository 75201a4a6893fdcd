/**
 * Where the demo keeps its secrets: in memory (default, no service needed), in Vault KV v2 (`--vault`,
 * VAULT_ADDR / VAULT_TOKEN, default the docker-compose dev server), or in AWS Secrets Manager (`--aws`,
 * AWS_ENDPOINT_URL_SECRETS_MANAGER, default the docker-compose moto). The demo writes every value itself,
 * so each store starts from the same state; rotations are writes to the store.
 */
import { memory } from '../providers/memory.js';
import type { SecretRef } from '../src/index.js';

export interface DemoStore {
  readonly label: string;
  /** Stores without push are polled this often (ms); undefined for stores that push changes. */
  readonly refreshIntervalMs: number | undefined;
  ref(name: string, binary?: boolean): SecretRef;
  write(name: string, value: string | Buffer): Promise<void>;
  close(): Promise<void>;
}

function memoryStore(): DemoStore {
  const store = memory();
  return {
    label: 'memory provider (no external service)',
    refreshIntervalMs: undefined,
    ref: (name) => store.ref(name),
    write: async (name, value) => store.set(name, value),
    close: () => store.close(),
  };
}

async function vaultStore(): Promise<DemoStore> {
  const { vault } = await import('../providers/vault/index.js');
  const endpoint = process.env.VAULT_ADDR ?? 'http://127.0.0.1:8200';
  const token = process.env.VAULT_TOKEN ?? 'root';
  const provider = vault({ endpoint, auth: { token } });
  const path = (name: string) => `demo/${name}`;
  return {
    label: `Vault KV v2 at ${endpoint} (secret/demo/*)`,
    refreshIntervalMs: 200,
    ref: (name, binary) =>
      provider.kv(`secret/${path(name)}`, { field: 'value', ...(binary ? { encoding: 'base64' } : {}) }),
    async write(name, value) {
      const text = Buffer.isBuffer(value) ? value.toString('base64') : value;
      const response = await fetch(`${endpoint}/v1/secret/data/${path(name)}`, {
        method: 'POST',
        headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json' },
        body: JSON.stringify({ data: { value: text } }),
      });
      if (!response.ok) throw new Error(`Vault write of secret/${path(name)} answered ${response.status}`);
    },
    close: () => provider.close(),
  };
}

async function awsStore(): Promise<DemoStore> {
  const { awsSecretsManager } = await import('../providers/aws-secrets-manager.js');
  const sdk = await import('@aws-sdk/client-secrets-manager');
  const endpoint =
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER ?? process.env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:5000';
  const config = {
    endpoint,
    // The region scripts/seed-stores.mjs seeds by default, and from the same variables.
    region: process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'eu-west-1',
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'demo',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'demo',
    },
  };
  const client = new sdk.SecretsManagerClient(config);
  const provider = awsSecretsManager({ client });
  const run = Date.now().toString(36);
  const id = (name: string) => `tls-secrets-demo/${run}/${name}`;
  return {
    label: `AWS Secrets Manager at ${endpoint} (tls-secrets-demo/${run}/*)`,
    refreshIntervalMs: 200,
    ref: (name) => provider.secret(id(name)),
    async write(name, value) {
      const body = Buffer.isBuffer(value) ? { SecretBinary: value } : { SecretString: value };
      try {
        await client.send(new sdk.PutSecretValueCommand({ SecretId: id(name), ...body }));
      } catch (error) {
        if ((error as Error).name !== 'ResourceNotFoundException') throw error;
        await client.send(new sdk.CreateSecretCommand({ Name: id(name), ...body }));
      }
    },
    async close() {
      await provider.close();
      client.destroy();
    },
  };
}

export function openStore(argv: readonly string[]): Promise<DemoStore> {
  if (argv.includes('--vault')) return vaultStore();
  if (argv.includes('--aws')) return awsStore();
  return Promise.resolve(memoryStore());
}
