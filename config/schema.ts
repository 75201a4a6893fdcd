/**
 * A small strict validator for config files: declarative types (plain data, so providers describe their
 * options without importing anything at run time), checked with a path in every message:
 * `providers.vault.requestTimeoutMs: expected a number, got string "100"`, `tls.cas: unknown field (did you
 * mean "ca"?)`. A value is quoted only where the expected type is a number, a boolean or a fixed choice and
 * the value is short; under `secret` never: a misplaced token is reported by its type alone.
 */
import { ConfigurationError } from '../src/errors.js';
import { didYouMean } from '../src/suggest.js';

export type FieldType =
  | 'string'
  | 'number'
  | 'integer'
  | 'boolean'
  | { readonly oneOf: readonly (string | number | boolean)[] }
  | { readonly object: Fields; readonly required?: readonly string[]; readonly exactlyOne?: boolean }
  | { readonly record: FieldType }
  | { readonly array: FieldType }
  | { readonly anyOf: readonly FieldType[] }
  | { readonly secret: FieldType };

export type Fields = Readonly<Record<string, FieldType>>;

export const fail = (path: string, reason: string) =>
  new ConfigurationError(path === '' ? `config: ${reason}` : `config ${path}: ${reason}`);

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return typeof value;
}

/** `string "100"` where the value cannot be a secret (it sits where a number or a choice belongs). */
function got(value: unknown, quotable: boolean): string {
  const kind = kindOf(value);
  if (!quotable) return kind;
  if (typeof value === 'string' && value.length <= 24 && !/[\r\n]/.test(value)) {
    return `${kind} ${JSON.stringify(value)}`;
  }
  if (typeof value === 'number' || typeof value === 'boolean') return `${kind} ${String(value)}`;
  return kind;
}

export function describeType(type: FieldType): string {
  if (type === 'string') return 'a string';
  if (type === 'number') return 'a number';
  if (type === 'integer') return 'an integer';
  if (type === 'boolean') return 'true or false';
  if ('oneOf' in type) return `one of ${type.oneOf.map((v) => JSON.stringify(v)).join(', ')}`;
  if ('object' in type) return 'an object';
  if ('record' in type) return 'an object';
  if ('array' in type) return 'an array';
  if ('secret' in type) return describeType(type.secret);
  return type.anyOf.map(describeType).join(' or ');
}

/** Throws a ConfigurationError at the first place `value` does not match `type`. */
export function check(value: unknown, type: FieldType, path: string, secret = false): void {
  const mismatch = (quotable: boolean) =>
    fail(path, `expected ${describeType(type)}, got ${got(value, quotable && !secret)}`);
  if (type === 'string') {
    if (typeof value !== 'string') throw mismatch(false);
    if (value === '') throw fail(path, 'expected a non-empty string');
    return;
  }
  if (type === 'number' || type === 'integer') {
    if (typeof value !== 'number' || !Number.isFinite(value)) throw mismatch(true);
    if (type === 'integer' && !Number.isInteger(value)) throw mismatch(true);
    return;
  }
  if (type === 'boolean') {
    if (typeof value !== 'boolean') throw mismatch(true);
    return;
  }
  if ('secret' in type) {
    check(value, type.secret, path, true);
    return;
  }
  if ('oneOf' in type) {
    if (!type.oneOf.includes(value as string)) throw mismatch(true);
    return;
  }
  if ('anyOf' in type) {
    // The first alternative of the value's own kind decides (its message is the precise one).
    const sameKind = type.anyOf.find((alternative) => matchesKind(value, alternative));
    if (sameKind === undefined) throw mismatch(true);
    check(value, sameKind, path, secret);
    return;
  }
  if ('array' in type) {
    if (!Array.isArray(value)) throw mismatch(false);
    value.forEach((item, i) => {
      check(item, type.array, `${path}[${i}]`, secret);
    });
    return;
  }
  if (!isObject(value)) throw mismatch(false);
  if ('record' in type) {
    for (const [key, item] of Object.entries(value)) check(item, type.record, join(path, key), secret);
    return;
  }
  checkFields(value, type.object, path, secret);
  for (const key of type.required ?? []) {
    if (value[key] === undefined) throw fail(join(path, key), 'is required');
  }
  if (type.exactlyOne) {
    const given = Object.keys(type.object).filter((key) => value[key] !== undefined);
    if (given.length !== 1) {
      throw fail(path, `expected exactly one of ${Object.keys(type.object).join(', ')}, got ${given.length}`);
    }
  }
}

/** Unknown keys are refused with a suggestion; known ones are checked by type. */
export function checkFields(
  value: Record<string, unknown>,
  fields: Fields,
  path: string,
  secret = false,
): void {
  for (const [key, item] of Object.entries(value)) {
    // Own fields only: `__proto__`, `constructor` or `toString` in a file is an unknown field, not Object's.
    const type = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (type === undefined) {
      const known = Object.keys(fields);
      throw fail(
        join(path, key),
        `unknown field${didYouMean(key, known) || ` (known: ${known.join(', ') || 'none'})`}`,
      );
    }
    if (item !== undefined) check(item, type, join(path, key), secret);
  }
}

function matchesKind(value: unknown, type: FieldType): boolean {
  if (type === 'string') return typeof value === 'string';
  if (type === 'number' || type === 'integer') return typeof value === 'number';
  if (type === 'boolean') return typeof value === 'boolean';
  if ('secret' in type) return matchesKind(value, type.secret);
  if ('oneOf' in type) return type.oneOf.includes(value as string);
  if ('anyOf' in type) return type.anyOf.some((alternative) => matchesKind(value, alternative));
  if ('array' in type) return Array.isArray(value);
  return isObject(value);
}

/** `a.b`, or `a` at the top. */
export function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
