#!/usr/bin/env node
// Seeds the docker-compose stores with sample TLS material. Plain Node (22 or later), no dependencies and no
// openssl binary, so the seed container starts without installing anything.
// Vault / OpenBao:
//   PKI mount `pki` with a root CA and role `web`; KV v2 secrets secret/app/tls {key, cert, ca} (issued by
//   that PKI) and secret/app/tickets {keys} (base64, 48 bytes); the policy `tls-secrets` (read those two KV
//   secrets and their metadata, issue from pki/issue/web, nothing else) and the AppRole `tls-secrets` whose
//   tokens carry it.
// Secrets Manager (moto), in AWS_REGION / AWS_DEFAULT_REGION (default eu-west-1, the demo's):
//   app/tls (JSON key/cert), app/ca-bundle (PEM), app/pfx (binary PKCS#12) and app/pfx-passphrase.
// Env: VAULT_ADDR, VAULT_TOKEN (a token that may configure mounts, auth and policies), MOTO_ENDPOINT.
// Idempotent: a second run changes nothing while the seeded certificate is valid for another 7 days (no new
// KV or Secrets Manager versions); it repairs whatever is missing or differs.
import { createHash, createHmac, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';

const vaultAddr = (process.env.VAULT_ADDR ?? 'http://127.0.0.1:8200').replace(/\/+$/, '');
const vaultToken = process.env.VAULT_TOKEN ?? 'root';
const motoEndpoint = (process.env.MOTO_ENDPOINT ?? 'http://127.0.0.1:5000').replace(/\/+$/, '');
const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || 'eu-west-1';

/** What the AppRole's tokens may do: exactly what an application on the seeded material needs. */
const POLICY = `# Written by scripts/seed-stores.mjs: the seeded TLS material, read-only, and issuing from pki/web.
path "secret/data/app/tls"         { capabilities = ["read"] }
path "secret/metadata/app/tls"     { capabilities = ["read"] }
path "secret/data/app/tickets"     { capabilities = ["read"] }
path "secret/metadata/app/tickets" { capabilities = ["read"] }
path "pki/issue/web"               { capabilities = ["update"] }
`;
/** A seeded certificate with less than this left is issued again. */
const RENEW_BEFORE_MS = 7 * 24 * 3600 * 1000;

async function vault(method, path, body, { missingOk = false } = {}) {
  const response = await fetch(`${vaultAddr}/v1/${path}`, {
    method,
    headers: { 'X-Vault-Token': vaultToken, 'Content-Type': 'application/json' },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  if (missingOk && response.status === 404) return undefined;
  if (!response.ok && response.status !== 204) {
    // "path is already in use" on a second run is fine.
    if (response.status === 400 && text.includes('already in use')) return undefined;
    throw new Error(`Vault ${method} ${path}: ${response.status} ${text.slice(0, 200)}`);
  }
  return text ? JSON.parse(text) : undefined;
}

// moto takes the region from the SigV4 credential scope and accepts any signature. One JSON-1.1 call to
// `service` (its signing name) with the target prefix the API uses (`secretsmanager.`, `AmazonSSM.`).
async function awsCall(service, targetPrefix, operation, body) {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  const response = await fetch(motoEndpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `${targetPrefix}${operation}`,
      Authorization: `AWS4-HMAC-SHA256 Credential=seed/${day}/${region}/${service}/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) return { error: json.__type ?? String(response.status) };
  return json;
}

const secretsManager = (operation, body) => awsCall('secretsmanager', 'secretsmanager.', operation, body);
const ssm = (operation, body) => awsCall('ssm', 'AmazonSSM.', operation, body);

/** Writes a Parameter Store parameter only when its current value differs (no new version otherwise). */
async function putParameter(name, value, type) {
  const got = await ssm('GetParameter', { Name: name, WithDecryption: true });
  if (got.error && !got.error.includes('ParameterNotFound'))
    throw new Error(`GetParameter ${name}: ${got.error}`);
  if (got.Parameter?.Value === value && got.Parameter?.Type === type) return 0;
  const put = await ssm('PutParameter', { Name: name, Value: value, Type: type, Overwrite: true });
  if (put.error) throw new Error(`PutParameter ${name}: ${put.error}`);
  return 1;
}

/** The secret's current value as a Buffer (binary) or string, or undefined when it does not exist. */
async function currentSecret(name) {
  const got = await secretsManager('GetSecretValue', { SecretId: name });
  if (got.error?.includes('ResourceNotFound')) return undefined;
  if (got.error) throw new Error(`GetSecretValue ${name}: ${got.error}`);
  return got.SecretBinary !== undefined ? Buffer.from(got.SecretBinary, 'base64') : got.SecretString;
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

// --- PKCS#12 (RFC 7292), as OpenSSL 3 writes it by default: the key in a PBES2/AES-256-CBC shrouded bag,
// the certificate in a plain bag, an HMAC-SHA-256 integrity MAC. Enough DER to write one; nothing to read.
function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let rest = n; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag, ...parts) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
};
const sequence = (...parts) => tlv(0x30, ...parts);
const setOf = (...parts) => tlv(0x31, ...parts);
const octets = (bytes) => tlv(0x04, bytes);
const explicit0 = (...parts) => tlv(0xa0, ...parts);
const integer = (n) => {
  const hex = n.toString(16);
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');
  if (bytes[0] & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return tlv(0x02, bytes);
};
const oid = (dotted) => {
  const [first, second, ...rest] = dotted.split('.').map(Number);
  const out = [40 * first + second];
  for (const value of rest) {
    const group = [value & 0x7f];
    for (let high = value >>> 7; high > 0; high >>>= 7) group.unshift((high & 0x7f) | 0x80);
    out.push(...group);
  }
  return tlv(0x06, Buffer.from(out));
};
const OID = {
  data: '1.2.840.113549.1.7.1',
  shroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  localKeyId: '1.2.840.113549.1.9.21',
  sha256: '2.16.840.1.101.3.4.2.1',
};

/** RFC 7292 appendix B.2 key derivation with SHA-256 (u = 32, v = 64): the MAC key (id 3). */
function pkcs12Kdf(password, salt, id, iterations, size) {
  const v = 64;
  const stretch = (bytes) => {
    const out = Buffer.alloc(v * Math.ceil(bytes.length / v));
    for (let i = 0; i < out.length; i++) out[i] = bytes[i % bytes.length];
    return out;
  };
  const input = Buffer.concat([stretch(salt), stretch(password)]);
  const blocks = [];
  for (let made = 0; made < size; made += 32) {
    let a = createHash('sha256').update(Buffer.alloc(v, id)).update(input).digest();
    for (let i = 1; i < iterations; i++) a = createHash('sha256').update(a).digest();
    blocks.push(a);
    const b = stretch(a);
    for (let j = 0; j < input.length; j += v) {
      let carry = 1;
      for (let k = v - 1; k >= 0; k--) {
        const sum = input[j + k] + b[k] + carry;
        input[j + k] = sum & 0xff;
        carry = sum >> 8;
      }
    }
  }
  return Buffer.concat(blocks).subarray(0, size);
}

function pkcs12(keyPem, certPem, passphrase) {
  const iterations = 2048;
  const certDer = new X509Certificate(certPem).raw;
  const attributes = setOf(
    sequence(oid(OID.localKeyId), setOf(octets(createHash('sha1').update(certDer).digest()))),
  );
  const shroudedKey = createPrivateKey(keyPem).export({
    type: 'pkcs8',
    format: 'der',
    cipher: 'aes-256-cbc',
    passphrase,
  });
  const safeContents = sequence(
    sequence(oid(OID.shroudedKeyBag), explicit0(shroudedKey), attributes),
    sequence(
      oid(OID.certBag),
      explicit0(sequence(oid(OID.x509Certificate), explicit0(octets(certDer)))),
      attributes,
    ),
  );
  const authSafe = sequence(sequence(oid(OID.data), explicit0(octets(safeContents))));
  const salt = randomBytes(16);
  // The MAC password is the passphrase as a NUL-terminated big-endian BMPString.
  const bmp = Buffer.from(`${passphrase}\0`, 'utf16le').swap16();
  const mac = createHmac('sha256', pkcs12Kdf(bmp, salt, 3, iterations, 32))
    .update(authSafe)
    .digest();
  return sequence(
    integer(3),
    sequence(oid(OID.data), explicit0(octets(authSafe))),
    sequence(
      sequence(sequence(oid(OID.sha256), Buffer.from([0x05, 0x00])), octets(mac)),
      octets(salt),
      integer(iterations),
    ),
  );
}

// --- Vault / OpenBao
await vault('POST', 'sys/mounts/secret', { type: 'kv', options: { version: '2' } }); // dev servers have it
await vault('POST', 'sys/mounts/pki', { type: 'pki', config: { max_lease_ttl: '87600h' } });
const caResponse = await fetch(`${vaultAddr}/v1/pki/ca/pem`);
const existingCa = caResponse.ok ? await caResponse.text() : '';
if (!existingCa.includes('BEGIN CERTIFICATE'))
  await vault('POST', 'pki/root/generate/internal', { common_name: 'tls-secrets dev root', ttl: '87600h' });
await vault('POST', 'pki/roles/web', {
  allow_any_name: true,
  allow_ip_sans: true,
  ttl: '24h',
  max_ttl: '720h',
  key_type: 'ec',
  key_bits: 256,
});
await vault('PUT', 'sys/policies/acl/tls-secrets', { policy: POLICY });
await vault('POST', 'sys/auth/approle', { type: 'approle' });
await vault('POST', 'auth/approle/role/tls-secrets', {
  token_policies: ['tls-secrets'],
  token_ttl: '1h',
  token_max_ttl: '4h',
});
const roleId = (await vault('GET', 'auth/approle/role/tls-secrets/role-id')).data.role_id;

/** The seeded bundle if it is still good: issued by the current CA and valid for another week. */
function stillGood(bundle, caPem) {
  if (!bundle?.key || !bundle?.cert || !bundle?.ca) return false;
  try {
    const cert = new X509Certificate(bundle.cert);
    const ca = new X509Certificate(caPem);
    return (
      cert.verify(ca.publicKey) &&
      cert.checkPrivateKey(createPrivateKey(bundle.key)) &&
      Date.parse(cert.validTo) - Date.now() > RENEW_BEFORE_MS
    );
  } catch {
    return false;
  }
}

const caPem = await fetch(`${vaultAddr}/v1/pki/ca/pem`).then((r) => r.text());
const kvTls = (await vault('GET', 'secret/data/app/tls', undefined, { missingOk: true }))?.data?.data;
let tls = kvTls;
let kvWrites = 0;
if (!stillGood(kvTls, caPem)) {
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
  tls = { key: issued.private_key, cert: issued.certificate, ca };
  await vault('POST', 'secret/data/app/tls', { data: tls });
  kvWrites += 1;
}
const kvTickets = (await vault('GET', 'secret/data/app/tickets', undefined, { missingOk: true }))?.data?.data;
if (Buffer.from(kvTickets?.keys ?? '', 'base64').length !== 48) {
  await vault('POST', 'secret/data/app/tickets', { data: { keys: randomBytes(48).toString('base64') } });
  kvWrites += 1;
}

// --- Secrets Manager: written only where the current value differs (no new versions on a second run).
let smWrites = 0;
const wanted = {
  'app/tls': JSON.stringify({ key: tls.key, cert: tls.cert }),
  'app/ca-bundle': tls.ca,
};
let tlsChanged = false;
for (const [name, value] of Object.entries(wanted)) {
  if ((await currentSecret(name)) === value) continue;
  await putSecret(name, value);
  smWrites += 1;
  if (name === 'app/tls') tlsChanged = true;
}
// The PKCS#12 is written again with app/tls, or when its passphrase does not open it.
const pfx = await currentSecret('app/pfx');
const pfxPassphrase = await currentSecret('app/pfx-passphrase');
const pfxMatches = (() => {
  if (tlsChanged || !Buffer.isBuffer(pfx) || typeof pfxPassphrase !== 'string') return false;
  try {
    createSecureContext({ pfx, passphrase: pfxPassphrase });
    return true;
  } catch {
    return false;
  }
})();
if (!pfxMatches) {
  const passphrase = randomBytes(12).toString('base64url');
  await putSecret('app/pfx', pkcs12(tls.key, tls.cert, passphrase));
  await putSecret('app/pfx-passphrase', passphrase);
  smWrites += 2;
}

// --- Parameter Store (the same moto): the key as a SecureString, certificate and CA as plain Strings.
let ssmWrites = 0;
ssmWrites += await putParameter('/app/tls/key', tls.key, 'SecureString');
ssmWrites += await putParameter('/app/tls/cert', tls.cert, 'String');
ssmWrites += await putParameter('/app/ca', tls.ca, 'String');

console.log(`seeded Vault ${vaultAddr} (${kvWrites} KV writes)`);
console.log('  PKI pki/ role web; KV secret/app/tls {key, cert, ca}, secret/app/tickets {keys}');
console.log(`  policy tls-secrets; AppRole tls-secrets (token_policies tls-secrets): role_id ${roleId}`);
console.log('  a secret_id, with the root token: POST auth/approle/role/tls-secrets/secret-id');
console.log(
  `seeded Secrets Manager ${motoEndpoint} in ${region} (${smWrites} writes): app/tls (JSON), app/ca-bundle (PEM), ` +
    'app/pfx (binary PKCS#12), app/pfx-passphrase',
);
console.log(
  `seeded Parameter Store ${motoEndpoint} in ${region} (${ssmWrites} writes): /app/tls/key (SecureString), ` +
    '/app/tls/cert, /app/ca',
);
