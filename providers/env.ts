/**
 * Environment variables: PEM text, or base64 (`encoding: 'base64'`) for binary values such as PFX or
 * ticket keys. Read at fetch time, so a test or a supervisor that changes `process.env` is seen on refresh.
 */
import { contentVersion } from '../src/content-version.js';
import { ConfigurationError, SecretNotFoundError } from '../src/errors.js';
import { createRef, describeRef, type Provider, type RefOptions, type SecretRef } from '../src/provider.js';
import { redactProvider } from '../src/redact.js';

export interface EnvOptions {
  /** Where variables are read. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Prepended to every variable name given to `ref`. Default none. */
  prefix?: string;
}

export interface EnvProvider extends Provider {
  ref(variable: string, options?: RefOptions): SecretRef;
}

const VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function env(options: EnvOptions = {}): EnvProvider {
  const source = options.env ?? process.env;
  const prefix = options.prefix ?? '';
  if (prefix && !VARIABLE.test(prefix))
    throw new ConfigurationError(`env prefix "${prefix}" is not a variable name`);

  // Own variables only: `constructor` or `toString` is a variable that is not set, not Object's member.
  const lookup = (name: string): string | undefined => {
    const value = Object.hasOwn(source, name) ? source[name] : undefined;
    return typeof value === 'string' ? value : undefined;
  };
  const read = (ref: SecretRef) => {
    const value = lookup(ref.id);
    if (value === undefined || value === '') {
      throw new SecretNotFoundError('environment variable is not set', {
        ref: describeRef(ref),
        provider: 'env',
      });
    }
    return value;
  };
  // Keyed (see src/content-version.ts): a plain hash of a passphrase could be tested against guesses.
  const version = contentVersion;

  const provider: EnvProvider = {
    name: 'env',
    ref(variable, refOptions) {
      const name = `${prefix}${variable}`;
      // Not echoed: a value written where a reference belongs (a literal passphrase) would show here.
      if (!VARIABLE.test(name))
        throw new ConfigurationError('env reference is not a variable name (letters, digits and _)');
      return createRef(provider, name, refOptions);
    },
    async fetch(ref) {
      const value = read(ref);
      return { value, version: version(value) };
    },
    async currentVersion(ref) {
      const value = lookup(ref.id);
      return value ? version(value) : undefined;
    },
  };
  return redactProvider(provider, 'EnvProvider', () => ({ prefix }));
}
