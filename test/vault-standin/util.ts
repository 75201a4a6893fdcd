/**
 * Shared plumbing of the Vault stand-in: replies, errors, field parsing, Go-style durations and
 * timestamps, identifiers. Formats follow Vault's wire output (see stores-api.md A.0 and A.5).
 */
import { randomBytes, randomUUID } from 'node:crypto';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type Body = Record<string, unknown>;

export type Operation = 'read' | 'list' | 'update' | 'delete' | 'patch';

/** What a handler answers; the server turns it into HTTP. */
export type Reply =
  | { kind: 'json'; status: number; body: Record<string, Json> }
  | { kind: 'raw'; status: number; contentType: string; body: Buffer | string }
  | { kind: 'empty'; status: number };

export interface EnvelopeParts {
  data?: Json;
  auth?: Json;
  leaseId?: string;
  leaseDuration?: number;
  renewable?: boolean;
  warnings?: string[];
  mountType?: string;
}

/** The response envelope of api/secret.go, in Vault's field order. */
export function envelope(status: number, parts: EnvelopeParts): Reply {
  return {
    kind: 'json',
    status,
    body: {
      request_id: randomUUID(),
      lease_id: parts.leaseId ?? '',
      renewable: parts.renewable ?? false,
      lease_duration: parts.leaseDuration ?? 0,
      data: parts.data ?? null,
      wrap_info: null,
      warnings: parts.warnings && parts.warnings.length > 0 ? parts.warnings : null,
      auth: parts.auth ?? null,
      mount_type: parts.mountType ?? '',
    },
  };
}

export function ok(data: Json, parts: Omit<EnvelopeParts, 'data'> = {}): Reply {
  return envelope(200, { ...parts, data });
}

/** Vault answers a handler that returns no response (and no warnings) with 204 and no body. */
export function noContent(): Reply {
  return { kind: 'empty', status: 204 };
}

export function errorReply(status: number, errors: string[]): Reply {
  return { kind: 'json', status, body: { errors } };
}

export function raw(contentType: string, body: Buffer | string): Reply {
  return { kind: 'raw', status: 200, contentType, body };
}

/** Thrown by handlers; the server answers `{"errors": [...]}` with the status. */
export class VaultError extends Error {
  constructor(
    readonly status: number,
    readonly errors: string[],
  ) {
    super(errors.join('; ') || `HTTP ${status}`);
  }
}

/** A logical.ErrorResponse paired with ErrInvalidRequest: 400 with the message. */
export function badRequest(message: string): VaultError {
  return new VaultError(400, [message]);
}

/** Unknown key or version: `logical` handlers returning nil on read become 404 `{"errors":[]}`. */
export function notFound(): VaultError {
  return new VaultError(404, []);
}

/** A framework backend with no path matching the request. */
export function unsupportedPath(): VaultError {
  return new VaultError(404, [multiError('unsupported path')]);
}

export function unsupportedOperation(): VaultError {
  return new VaultError(405, [multiError('unsupported operation')]);
}

/** The text of a hashicorp/go-multierror with one error, as Vault prints ACL and routing errors. */
export function multiError(message: string): string {
  return `1 error occurred:\n\t* ${message}\n\n`;
}

// ---------------------------------------------------------------- field parsing

export function str(value: unknown, fallback = ''): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return fallback;
}

export function bool(value: unknown, fallback: boolean): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0;
  if (typeof value === 'string') {
    const v = value.trim().toLowerCase();
    if (['1', 't', 'true'].includes(v)) return true;
    if (['0', 'f', 'false'].includes(v)) return false;
  }
  return fallback;
}

export function int(value: unknown, fallback: number): number {
  if (typeof value === 'number' && Number.isFinite(value)) return Math.trunc(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number.parseInt(value, 10);
  return fallback;
}

/** framework.TypeCommaStringSlice: an array or a comma-separated string, trimmed, empties dropped. */
export function list(value: unknown): string[] {
  const items = Array.isArray(value) ? value.map((v) => str(v)) : str(value).split(',');
  return items.map((s) => s.trim()).filter((s) => s.length > 0);
}

/** framework.TypeCommaIntSlice. */
export function intList(value: unknown): number[] {
  const items = Array.isArray(value) ? value : str(value).split(',');
  return items
    .map((v) => int(typeof v === 'string' ? v.trim() : v, Number.NaN))
    .filter((n) => !Number.isNaN(n));
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function stringMap(value: unknown): Record<string, string> | null {
  if (!isObject(value)) return null;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) out[k] = str(v);
  return out;
}

// ---------------------------------------------------------------- durations

const UNIT_SECONDS: Record<string, number> = {
  ns: 1e-9,
  us: 1e-6,
  µs: 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
};

/**
 * parseutil.ParseDurationSecond: an integer (or integer string) is seconds, otherwise a Go duration
 * ("1h30m", "90s") with the extra "d" unit. Returns whole seconds; throws VaultError 400 when invalid.
 */
export function parseDuration(value: unknown, field: string): number {
  if (value === undefined || value === null || value === '') return 0;
  if (typeof value === 'number') return Math.trunc(value);
  const text = str(value).trim();
  if (/^-?\d+$/.test(text)) return Number.parseInt(text, 10);
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = re.exec(text); match; match = re.exec(text)) {
    total += Number.parseFloat(match[1] ?? '0') * (UNIT_SECONDS[match[2] ?? 's'] ?? 1);
    consumed = re.lastIndex;
  }
  if (consumed !== text.length || text.length === 0) {
    throw badRequest(`error converting input ${text} for field "${field}": time: invalid duration "${text}"`);
  }
  return Math.trunc(total);
}

/** time.Duration.String() for whole seconds: "2h0m0s", "1m30s", "30s", "0s". */
export function goDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

// ---------------------------------------------------------------- time

/** Dev-mode mount defaults: default_lease_ttl = max_lease_ttl = 768h (32 days). */
export const SYSTEM_MAX_TTL = 768 * 3600;
export const SYSTEM_DEFAULT_TTL = 768 * 3600;

let lastNanos = 0n;

/**
 * Nanoseconds since the epoch, strictly increasing: Date.now() gives milliseconds, hrtime supplies the
 * sub-millisecond digits, so timestamps look like Go's and two writes never share one.
 */
export function nowNanos(): bigint {
  const ms = BigInt(Date.now());
  const sub = process.hrtime.bigint() % 1_000_000n;
  let n = ms * 1_000_000n + sub;
  if (n <= lastNanos) n = lastNanos + 1n;
  lastNanos = n;
  return n;
}

/** time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed, as Go prints it. */
export function rfc3339Nano(nanos: bigint): string {
  const ms = Number(nanos / 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const frac = (nanos % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return frac ? `${base}.${frac}Z` : `${base}Z`;
}

export function nanosToMs(nanos: bigint): number {
  return Number(nanos / 1_000_000n);
}

// ---------------------------------------------------------------- identifiers

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** base62.Random as Vault uses for token and lease ids. */
export function base62(length: number): string {
  const bytes = randomBytes(length * 2);
  let out = '';
  for (let i = 0; out.length < length && i < bytes.length; i++) {
    const b = bytes[i] ?? 0;
    if (b < 248) out += BASE62[b % 62];
  }
  return out.length === length ? out : base62(length);
}

export function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export { randomUUID };
