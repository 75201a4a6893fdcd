/**
 * `tls-secrets/config`: resolvers from declarative config files (JSON, or YAML with the optional `yaml`
 * package), and the adapter contract through which any provider, built in or not, appears in one.
 */
export type { AdapterContext, Fields, FieldType, ProviderAdapter, RefEntry } from './adapter.js';
export { type ConfigLoadOptions, type ConfiguredResolver, createResolverFromConfig } from './build.js';
export { type ConfigFileOptions, loadConfigFile } from './load.js';
export { registerProviderAdapter } from './registry.js';
export type * from './types.js';
