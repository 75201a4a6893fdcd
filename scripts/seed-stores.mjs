#!/usr/bin/env node
// Seeds the docker-compose stores with sample TLS material (plain Node 20, no dependencies):
// Vault: PKI mount `pki` with a root CA and role `web`, AppRole role `tls-secrets`, KV v2 secrets
//   secret/app/tls {key, cert, ca} (issued by that PKI) and secret/app/tickets {keys} (base64, 48 bytes).
// Secrets Manager (moto): app/tls (JSON key/cert), app/ca-bundle (PEM), app/pfx (binary PKCS#12) and
//   app/pfx-passphrase.
// Env: VAULT_ADDR, VAULT_TOKEN, MOTO_ENDPOINT. Safe to run twice.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const vaultAddr = process.env.VAULT_ADDR ?? 'http://127.0.0.1:8200';
const vaultToken = process.env.VAULT_TOKEN ?? 'root';
const motoEndpoint = process.env.MOTO_ENDPOINT ?? 'http://127.0.0.1:5000';

async function vault(method, path, body) {
  const response = await fetch(`${vaultAddr}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': vaultToken, 'Content-Type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  if (!response.ok && response.status !== 204) {
    // "path is already in use" on a second run is fine.
    if (response.status === 400 && text.includes('already in use')) return undefined;
    throw new Error(`Vault ${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
  }
  return text ? JSON.parse(text) : undefined;
}

// moto accepts any SigV4 credentials; the header only needs a parsable shape.
async function secretsManager(operation, body) {
  const response = await fetch(motoEndpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `secretsmanager.${operation}`,
      Authorization:
        'AWS4-HMAC-SHA256 Credential=seed/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) return { error: json.__type ?? String(response.status) };
  return json;
}

async function putSecret(name, value) {
  const field = Buffer.isBuffer(value) ? { SecretBinary: value.toString('base64') } : { SecretString: value };
  const created = await secretsManager('CreateSecret', { Name: name, ...field });
  if (created.error?.includes('ResourceExists')) {
    const put = await secretsManager('PutSecretValue', { SecretId: name, ...field });
    if (put.error) throw new Error(`PutSecretValue ${name}: ${put.error}`);
  } else if (created.error) {
    throw new Error(`CreateSecret ${name}: ${created.error}`);
  }
}

function pkcs12(keyPem, certPem, passphrase) {
  const dir = mkdtempSync(join(tmpdir(), 'seed-'));
  try {
    writeFileSync(join(dir, 'key.pem'), keyPem);
    writeFileSync(join(dir, 'cert.pem'), certPem);
    execFileSync(
      'openssl',
      [
        'pkcs12',
        '-export',
        '-inkey',
        'key.pem',
        '-in',
        'cert.pem',
        '-out',
        'out.pfx',
        '-passout',
        `pass:${passphrase}`,
      ],
      { cwd: dir },
    );
    return readFileSync(join(dir, 'out.pfx'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await vault('POST', 'sys/mounts/pki', { type: 'pki', config: { max_lease_ttl: '87600h' } });
const mounts = await vault('GET', 'sys/mounts');
const hasCa = await fetch(`${vaultAddr}/v1/pki/ca/pem`).then((r) => r.status === 200);
if (!hasCa)
  await vault('POST', 'pki/root/generate/internal', { common_name: 'tls-secrets dev root', ttl: '87600h' });
await vault('POST', 'pki/roles/web', {
  allow_any_name: true,
  allow_ip_sans: true,
  ttl: '24h',
  max_ttl: '720h',
  key_type: 'ec',
  key_bits: 256,
});
await vault('POST', 'sys/auth/approle', { type: 'approle' });
await vault('POST', 'auth/approle/role/tls-secrets', { token_ttl: '1h', token_max_ttl: '4h' });
const roleId = (await vault('GET', 'auth/approle/role/tls-secrets/role-id')).data.role_id;
const secretId = (await vault('POST', 'auth/approle/role/tls-secrets/secret-id', {})).data.secret_id;

const issued = (
  await vault('POST', 'pki/issue/web', {
    common_name: 'localhost',
    alt_names: 'localhost',
    ip_sans: '127.0.0.1',
    ttl: '720h',
    private_key_format: 'pkcs8',
  })
).data;
const ca = [issued.issuing_ca, ...(issued.ca_chain ?? [])]
  .filter((pem, i, all) => all.indexOf(pem) === i)
  .join('\n');
await vault('POST', 'secret/data/app/tls', {
  data: { key: issued.private_key, cert: issued.certificate, ca },
});
await vault('POST', 'secret/data/app/tickets', { data: { keys: randomBytes(48).toString('base64') } });

const passphrase = randomBytes(12).toString('base64url');
await putSecret('app/tls', JSON.stringify({ key: issued.private_key, cert: issued.certificate }));
await putSecret('app/ca-bundle', ca);
await putSecret('app/pfx', pkcs12(issued.private_key, issued.certificate, passphrase));
await putSecret('app/pfx-passphrase', passphrase);

console.log(
  `seeded Vault ${vaultAddr} (mounts: ${Object.keys(mounts.data ?? mounts)
    .filter((m) => m.endsWith('/'))
    .join(' ')})`,
);
console.log(`  PKI pki/ role web; KV secret/app/tls {key, cert, ca}, secret/app/tickets {keys}`);
console.log(
  `  AppRole tls-secrets: role_id ${roleId} secret_id ${secretId.slice(0, 4)}… (read it again with the root token)`,
);
console.log(
  `seeded Secrets Manager ${motoEndpoint}: app/tls (JSON), app/ca-bundle (PEM), app/pfx (binary), app/pfx-passphrase`,
);
