/** The file provider in a config file: paths relative to `baseDir`, itself relative to the config file. */
import { resolve } from 'node:path';
import type { ProviderAdapter } from '../config/adapter.js';
import { defined, ID_REF_FIELDS, refOptions } from './_config.js';
import { type FileProvider, file } from './file.js';

export interface FileProviderConfig {
  type: 'file';
  /** Directory relative paths are read from. Default: the config file's directory (the cwd for an object). */
  baseDir?: string;
  /** `true` (directory watch, polling fallback), `'poll'` or `false`. Default true. */
  watch?: boolean | 'poll';
  pollIntervalMs?: number;
  debounceMs?: number;
  settleMs?: number;
}

export const fileAdapter: ProviderAdapter<Omit<FileProviderConfig, 'type'>, FileProvider> = {
  type: 'file',
  optionFields: {
    baseDir: 'string',
    watch: { anyOf: ['boolean', { oneOf: ['poll'] }] },
    pollIntervalMs: 'number',
    debounceMs: 'number',
    settleMs: 'number',
  },
  refFields: ID_REF_FIELDS,
  refRequired: ['id'],
  create: (options, context) =>
    file(
      defined({
        ...options,
        name: context.name,
        baseDir: options.baseDir === undefined ? context.baseDir : resolve(context.baseDir, options.baseDir),
      }),
    ),
  ref: (provider, entry) => provider.ref(entry.id as string, refOptions(entry)),
};
