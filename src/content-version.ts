/**
 * Versions derived from content, for stores that keep none (memory, env, files, Vault KV v1, raw PKI PEM).
 *
 * A version is shown everywhere: `status()`, `rotate` events, logger lines, `tls-secrets check`. A plain hash
 * of a secret would let anyone who sees it test guesses offline (a weak passphrase falls to a dictionary in
 * seconds). So the version is an HMAC-SHA-256 under a key drawn at random when this module loads: it changes
 * whenever the content changes, is stable within the process, and says nothing about the content to anyone
 * without the key, which never leaves this module. Versions are therefore not comparable across processes;
 * nothing needs them to be.
 */
import { createHmac, randomBytes } from 'node:crypto';

const KEY = randomBytes(32);

/**
 * 64 bits of HMAC-SHA-256 under the per-process key, as 16 hex digits. Text and bytes are hashed as they are;
 * a structured value (a JSON or KV map, an array) as canonical JSON (keys sorted), so the same map read twice
 * has the same version whatever order the store sent its keys in.
 */
export function contentVersion(content: string | Uint8Array | object): string {
  const input =
    typeof content === 'string' || content instanceof Uint8Array ? content : canonicalJson(content);
  return createHmac('sha256', KEY).update(input).digest('hex').slice(0, 16);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
