/** The env provider in a config file: `{ "type": "env", "prefix": "APP_" }`. */
import type { ProviderAdapter } from '../config/adapter.js';
import { defined, ID_REF_FIELDS, refOptions } from './_config.js';
import { type EnvProvider, env } from './env.js';

export interface EnvProviderConfig {
  type: 'env';
  /** Prepended to every variable name. Default none. */
  prefix?: string;
}

export const envAdapter: ProviderAdapter<Omit<EnvProviderConfig, 'type'>, EnvProvider> = {
  type: 'env',
  optionFields: { prefix: 'string' },
  refFields: ID_REF_FIELDS,
  refRequired: ['id'],
  create: (options) => env(defined({ prefix: options.prefix })),
  ref: (provider, entry) => provider.ref(entry.id as string, refOptions(entry)),
};
