/**
 * PKI secrets engine: issuing a certificate (`<mount>/issue/<role>`) and the raw CA and CRL endpoints.
 * Every issue call makes a new certificate and key, so an issued bundle has no cheap version probe: the
 * resolver re-fetches ahead of `expiresAt` instead.
 */

import { contentVersion } from '../../src/content-version.js';
import { SecretNotFoundError } from '../../src/errors.js';
import type { FetchResult } from '../../src/provider.js';
import { malformedAnswer } from './errors.js';
import { encodePath } from './kv.js';
import type { VaultSession } from './session.js';

export interface PkiSpec {
  kind: 'pki';
  mount: string;
  role: string;
  /** The issue request body, in Vault's field names. */
  body: Readonly<Record<string, string>>;
}

export interface RawSpec {
  kind: 'raw';
  mount: string;
  what: 'ca' | 'crl';
}

/** The fields of an issued bundle that the `key`, `cert` and `ca` references pick. */
export const PKI_FIELDS = { key: 'private_key', cert: 'certificate', ca: 'ca' } as const;

const CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The CERTIFICATE blocks of `pems` in order, each once (issuing_ca is usually also ca_chain[0]). */
export function certificateBundle(pems: readonly unknown[]): string {
  const seen = new Set<string>();
  const blocks: string[] = [];
  for (const pem of pems) {
    if (typeof pem !== 'string') continue;
    for (const match of pem.matchAll(CERTIFICATE)) {
      const block = match[0].replace(/\r\n/g, '\n');
      const body = block.replace(/-----[A-Z ]+-----|\s/g, '');
      if (seen.has(body)) continue;
      seen.add(body);
      blocks.push(`${block}\n`);
    }
  }
  return blocks.join('');
}

export function pkiId(spec: PkiSpec): string {
  const query = Object.entries(spec.body)
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  return `${spec.mount}/issue/${spec.role}?${query}`;
}

export function rawId(spec: RawSpec): string {
  return `${spec.mount}/${spec.what}/pem`;
}

export async function issueCertificate(
  session: VaultSession,
  providerName: string,
  spec: PkiSpec,
  ref: string,
  signal: AbortSignal,
): Promise<FetchResult> {
  const path = `${encodePath(spec.mount)}/issue/${encodeURIComponent(spec.role)}`;
  const response = await session.call({ method: 'write', path, body: spec.body, ref }, signal);
  const malformed = (what: string) =>
    malformedAnswer({ provider: providerName, ref, action: `write ${path}` }, what);
  const data = (response as { data?: unknown } | null)?.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw malformed('data is missing or not an object');
  }
  const {
    private_key: privateKey,
    certificate,
    issuing_ca: issuingCa,
    ca_chain: caChain,
  } = data as Record<string, unknown>;
  // With format=pem_bundle, `certificate` also holds the key and chain: the cert value keeps certificates only.
  const cert = certificateBundle([certificate]);
  // The format is always PEM (pki() refuses others): no key or certificate means the answer is not whole.
  if (typeof privateKey !== 'string' || privateKey === '') throw malformed('data.private_key is missing');
  if (cert === '') throw malformed('data.certificate holds no certificate');
  const serial = (data as Record<string, unknown>).serial_number;
  const expiration = (data as Record<string, unknown>).expiration;
  return {
    value: {
      private_key: privateKey,
      certificate: cert,
      ca: certificateBundle([issuingCa, ...(Array.isArray(caChain) ? caChain : [])]),
    },
    ...(typeof serial === 'string' ? { version: serial } : {}),
    ...(typeof expiration === 'number' && expiration > 0 ? { expiresAt: new Date(expiration * 1000) } : {}),
  };
}

export async function fetchRaw(
  session: VaultSession,
  providerName: string,
  spec: RawSpec,
  ref: string,
  signal: AbortSignal,
): Promise<FetchResult> {
  const path = `${encodePath(spec.mount)}/${spec.what}/pem`;
  const response = await session.call({ method: 'read', path, ref, answer: 'text' }, signal);
  // These endpoints answer raw PEM, or 204 with an empty body when the mount has no CA (or CRL) yet (an empty
  // 200 is refused in session.ts).
  if (response === '' || response === undefined || response === null) {
    throw new SecretNotFoundError(
      `PKI mount ${spec.mount} has no ${spec.what === 'ca' ? 'CA certificate' : 'CRL'}`,
      {
        provider: providerName,
        ref,
      },
    );
  }
  // A body cut off on the way ends inside a block: only whole blocks of the documented type are an answer.
  const block = spec.what === 'ca' ? 'CERTIFICATE' : 'X509 CRL';
  if (typeof response !== 'string' || !wholePem(response, block)) {
    throw malformedAnswer(
      { provider: providerName, ref, action: `read ${path}` },
      `the body is not whole ${block} PEM blocks`,
    );
  }
  return { value: response, version: contentVersion(response) };
}

/** `text` is one or more complete `label` PEM blocks and whitespace, nothing else. */
function wholePem(text: string, label: string): boolean {
  const rest = text.split(
    new RegExp(`-----BEGIN ${label}-----\\r?\\n[A-Za-z0-9+/=\\r\\n]+-----END ${label}-----`, 'g'),
  );
  return rest.length > 1 && rest.every((between) => between.trim() === '');
}
