/**
 * Optional peers (store SDKs, undici, OpenTelemetry, gRPC, YAML) are loaded on first use through this one
 * helper, so a missing one is the same error on every path: a ConfigurationError naming the package and what
 * needed it (a missing package is a deployment mistake, never a store outage to retry).
 * `load` is the caller's own `import()` with a literal specifier, so bundlers still see the dependency.
 */
import { ConfigurationError, safeCause } from './errors.js';

export async function importOptional<T>(
  packageName: string,
  neededBy: string,
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (err) {
    throw new ConfigurationError(
      `${neededBy} needs the optional package "${packageName}", which could not be loaded (npm install ${packageName})`,
      { cause: safeCause(err) },
    );
  }
}
