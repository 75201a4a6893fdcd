/** The memory provider in a config file: `{ "type": "memory", "values": { "<key>": "<value>" } }`. */
import type { ProviderAdapter } from '../config/adapter.js';
import { ID_REF_FIELDS, refOptions } from './_config.js';
import { type MemoryProvider, memory } from './memory.js';

export interface MemoryProviderConfig {
  type: 'memory';
  /** Initial values by key. For tests and demos: a config file is no place for real secrets. */
  values?: Record<string, string>;
}

export const memoryAdapter: ProviderAdapter<Omit<MemoryProviderConfig, 'type'>, MemoryProvider> = {
  type: 'memory',
  optionFields: { values: { secret: { record: 'string' } } },
  refFields: ID_REF_FIELDS,
  refRequired: ['id'],
  create: (options, { name }) => memory(options.values ?? {}, { name }),
  ref: (provider, entry) => provider.ref(entry.id as string, refOptions(entry)),
};
