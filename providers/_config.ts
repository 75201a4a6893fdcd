/** What the `id`-based adapters (memory, env, file, AWS) share: the reference keys and their RefOptions. */
import type { RefEntry } from '../config/adapter.js';
import type { Fields } from '../config/schema.js';
import type { RefOptions } from '../src/provider.js';

export const ENCODING = { oneOf: ['utf8', 'base64', 'binary'] } as const;

export const ID_REF_FIELDS: Fields = { id: 'string', encoding: ENCODING, jsonKey: 'string' };

export function refOptions(entry: RefEntry): RefOptions {
  return {
    ...(entry.encoding === undefined
      ? {}
      : { encoding: entry.encoding as NonNullable<RefOptions['encoding']> }),
    ...(entry.jsonKey === undefined ? {} : { jsonKey: entry.jsonKey as string }),
  };
}

/** Drops undefined values, so a provider's own defaults apply. */
export function defined<T extends object>(options: T): T {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as T;
}

/** The client options both AWS providers take from a config file (credentials never: the SDK's chain). */
export const AWS_OPTION_FIELDS: Fields = {
  region: 'string',
  endpoint: 'string',
  maxAttempts: 'integer',
  requestTimeoutMs: 'number',
};
