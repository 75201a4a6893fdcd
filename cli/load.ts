/** Loading a config for check and watch: `--adapter` modules first, then the config, then its warnings. */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ProviderAdapter } from '../config/adapter.js';
import { type ConfiguredResolver, createResolverFromConfig } from '../config/build.js';
import { registerProviderAdapter } from '../config/registry.js';
import { ConfigurationError, safeCause } from '../src/errors.js';
import type { Flags } from './parse.js';
import { err } from './render.js';

function isAdapter(value: unknown): value is ProviderAdapter {
  return typeof value === 'object' && value !== null && 'type' in value && 'create' in value;
}

/**
 * An adapter module registers itself (calls `registerProviderAdapter`) or exports adapters as its default
 * export (one or an array). A relative path is taken from the working directory; a bare name is a package.
 */
async function loadAdapter(specifier: string): Promise<void> {
  const url = /^\.{0,2}\//.test(specifier) ? pathToFileURL(resolve(specifier)).href : specifier;
  let loaded: { default?: unknown };
  try {
    loaded = (await import(url)) as { default?: unknown };
  } catch (error) {
    throw new ConfigurationError(`--adapter ${specifier} cannot be loaded`, { cause: safeCause(error) });
  }
  const exported = loaded.default;
  for (const adapter of Array.isArray(exported) ? exported : [exported]) {
    if (isAdapter(adapter)) registerProviderAdapter(adapter);
  }
}

export async function load(configPath: string, flags: Flags): Promise<ConfiguredResolver> {
  for (const specifier of flags.adapters) await loadAdapter(specifier);
  const configured = await createResolverFromConfig(configPath, {
    // No start budget: `check` reports a failing store at once, and `watch` retries a cold load itself
    // (printing each failure once, and stopping at once on a signal).
    resolverOptions: {
      startBudgetMs: 0,
      ...(flags.interval === undefined ? {} : { refreshIntervalMs: flags.interval }),
    },
  });
  // By line and kind only: the library never quotes a config's text, and neither does the CLI.
  for (const warning of configured.warnings) err(`tls-secrets: warning: ${warning}`);
  for (const effect of configured.effects) err(`tls-secrets: note: ${effect}`);
  return configured;
}
