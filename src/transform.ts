/**
 * Turns what a store returned into the value a ConnectionOptions field takes, applying the reference's
 * `jsonKey` and `encoding`. Errors name the reference and the reason, never the bytes.
 */
import { InvalidMaterialError, safeCause } from './errors.js';
import { describeRef, type RawSecret, type SecretRef } from './provider.js';

/** Larger secrets are refused: no TLS field is near this size, and a runaway value must not be parsed. */
export const MAX_SECRET_BYTES = 1024 * 1024;

const BASE64 = /^[A-Za-z0-9+/\r\n]*={0,2}\s*$|^[A-Za-z0-9_\-\r\n]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function transformValue(ref: SecretRef, raw: RawSecret, field?: string): string | Buffer {
  const fail = (reason: string, cause?: unknown) =>
    new InvalidMaterialError(reason, { ref: describeRef(ref), field, provider: ref.provider.name, cause });
  let value: unknown = raw;
  if (ref.options.jsonKey !== undefined) value = pickJsonKey(value, ref.options.jsonKey, fail);
  if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
    throw fail(`secret is a ${value === null ? 'null' : typeof value} value, expected text or bytes`);
  }
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength;
  if (size === 0) throw fail('secret is empty');
  if (size > MAX_SECRET_BYTES) throw fail(`secret is ${size} bytes, over the ${MAX_SECRET_BYTES}-byte limit`);

  switch (ref.options.encoding ?? 'utf8') {
    case 'binary':
      return typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
    case 'base64': {
      const text = typeof value === 'string' ? value : decodeText(value, fail);
      if (!BASE64.test(text)) throw fail('secret is not valid base64');
      const bytes = Buffer.from(text, 'base64');
      if (bytes.length === 0) throw fail('secret decodes to no bytes');
      return bytes;
    }
    default:
      return typeof value === 'string' ? value : decodeText(value, fail);
  }
}

function decodeText(bytes: Uint8Array, fail: (reason: string, cause?: unknown) => Error): string {
  try {
    return utf8.decode(bytes);
  } catch (err) {
    throw fail(
      'secret is binary where text is expected (set encoding: "binary" or "base64")',
      safeCause(err),
    );
  }
}

function pickJsonKey(value: unknown, key: string, fail: (reason: string, cause?: unknown) => Error): unknown {
  let object: unknown = value;
  if (typeof value === 'string' || value instanceof Uint8Array) {
    const text = typeof value === 'string' ? value : decodeText(value, fail);
    try {
      object = JSON.parse(text);
    } catch (err) {
      // JSON.parse quotes the input in its message: keep only the error's name.
      throw fail(`secret is not JSON, cannot pick key "${key}"`, safeCause(err));
    }
  }
  if (typeof object !== 'object' || object === null || Array.isArray(object)) {
    throw fail(`secret is not a JSON object, cannot pick key "${key}"`);
  }
  if (!Object.hasOwn(object, key)) throw fail(`secret has no key "${key}"`);
  return (object as Record<string, unknown>)[key];
}
