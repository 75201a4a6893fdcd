/**
 * Builds providers and a resolver from a config: every part is checked strictly first (unknown keys with a
 * suggestion, wrong types with their path), then each provider is created by its adapter, then the spec is
 * handed to `createResolver`. Nothing is fetched. Any mistake is a ConfigurationError naming its path (and
 * the file), and the providers created so far are closed.
 */
import { dirname, resolve as resolvePath } from 'node:path';
import { ConfigurationError } from '../src/errors.js';
import type { Provider, SecretRef } from '../src/provider.js';
import { createResolver, type Resolver } from '../src/resolver/index.js';
import { optionType, RESOLVER_OPTIONS, SPEC_KEYS } from '../src/resolver/spec.js';
import { didYouMean } from '../src/suggest.js';
import { type ResolverOptions, SECRET_FIELDS, type Source, type TlsSecretsSpec } from '../src/types.js';
import type { ProviderAdapter } from './adapter.js';
import { loadConfigFile } from './load.js';
import { type AnyAdapter, adapterFor } from './registry.js';
import { check, checkFields, type Fields, type FieldType, fail, isObject, join } from './schema.js';
import type { TlsSecretsConfig } from './types.js';

export interface ConfigLoadOptions {
  /** Overrides `options` of the config (the CLI's `--interval`). */
  resolverOptions?: ResolverOptions;
  /** Where relative paths in a config given as an object are resolved. Default: the cwd. */
  baseDir?: string;
  /** Adapters for this call only, besides the registered ones (see `registerProviderAdapter`). */
  adapters?: readonly ProviderAdapter<never, Provider>[];
}

/** A resolver built from a config, with the providers it created (which `close()` closes too). */
export interface ConfiguredResolver {
  readonly resolver: Resolver;
  readonly providers: ReadonlyMap<string, Provider>;
  /** The config file, when one was loaded. */
  readonly path: string | undefined;
  /** What the YAML parser warned about, by line and kind: the library prints nothing, the CLI prints these. */
  readonly warnings: readonly string[];
  /** The resolver options in force: the config's `options` with `resolverOptions` over them (no defaults). */
  readonly options: Readonly<ResolverOptions>;
  /** What resolving does besides reading, by field (`tls.cert: issues a new certificate from …`). */
  readonly effects: readonly string[];
  close(): Promise<void>;
}

const TOP_LEVEL = ['$schema', 'providers', 'tls', 'options'];

const TLS_VERSION: FieldType = { oneOf: ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] };

/**
 * The pass-through options a JSON or YAML file can carry, with their types. The others Node takes (a
 * socket, callbacks, a BlockList, a session Buffer) are objects only code can make.
 */
const TLS_OPTION_FIELDS: Fields = {
  host: 'string',
  port: 'integer',
  path: 'string',
  servername: 'string',
  rejectUnauthorized: 'boolean',
  requestCert: 'boolean',
  minVersion: TLS_VERSION,
  maxVersion: TLS_VERSION,
  ciphers: 'string',
  sigalgs: 'string',
  ecdhCurve: 'string',
  honorCipherOrder: 'boolean',
  ALPNProtocols: { array: 'string' },
  minDHSize: 'number',
  timeout: 'number',
  sessionTimeout: 'number',
  handshakeTimeout: 'number',
  secureOptions: 'integer',
  secureProtocol: 'string',
  sessionIdContext: 'string',
  pskIdentity: 'string',
  pskIdentityHint: 'string',
  enableTrace: 'boolean',
  allowPartialTrustChain: 'boolean',
  privateKeyEngine: 'string',
  privateKeyIdentifier: 'string',
  clientCertEngine: 'string',
  allowHalfOpen: 'boolean',
  pauseOnConnect: 'boolean',
  noDelay: 'boolean',
  keepAlive: 'boolean',
  keepAliveInitialDelay: 'number',
  highWaterMark: 'number',
  // What tls.connect hands on to net.connect (requestOCSP to the handshake).
  requestOCSP: 'boolean',
  family: 'integer',
  localAddress: 'string',
  localPort: 'integer',
  autoSelectFamily: 'boolean',
  autoSelectFamilyAttemptTimeout: 'integer',
};

const OPTION_FIELDS: Fields = Object.fromEntries(
  Object.keys(RESOLVER_OPTIONS).map((name) => [name, optionType(name as keyof ResolverOptions)]),
);

interface Built {
  readonly adapter: AnyAdapter;
  readonly provider: Provider;
}

/** A ConfigurationError without a place (from an adapter, a provider or the resolver) gets `where`. */
function placed(where: string, err: unknown): unknown {
  if (err instanceof ConfigurationError && !err.message.startsWith('config ')) {
    return new ConfigurationError(`config ${where}: ${err.message}`, { cause: err });
  }
  return err;
}

async function buildProvider(
  name: string,
  config: unknown,
  baseDir: string,
  extra: readonly AnyAdapter[],
): Promise<Built> {
  const where = `providers.${name}`;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw fail(where, 'names use letters, digits, _ . -');
  if (!isObject(config)) throw fail(where, 'expected an object with a "type"');
  const { type, ...options } = config;
  if (typeof type !== 'string') throw fail(`${where}.type`, 'expected the name of a provider type');
  let adapter: AnyAdapter;
  try {
    adapter = await adapterFor(type, extra);
  } catch (err) {
    throw placed(`${where}.type`, err);
  }
  checkFields(options, adapter.optionFields, where);
  try {
    return { adapter, provider: await adapter.create(options, { name, baseDir }) };
  } catch (err) {
    throw placed(where, err);
  }
}

class SpecBuilder {
  readonly effects = new Map<string, string[]>();

  constructor(private readonly built: ReadonlyMap<string, Built>) {}

  source(value: unknown, where: string): Source {
    if (typeof value === 'string') return this.shorthand(value, where);
    if (!isObject(value)) {
      throw fail(where, 'expected a reference string, a reference object or {"literal": "..."}');
    }
    if ('literal' in value) {
      checkFields(value, { literal: { secret: 'string' }, encoding: { oneOf: ['utf8', 'base64'] } }, where);
      if (value.literal === undefined) throw fail(join(where, 'literal'), 'is required');
      return value.encoding === 'base64'
        ? Buffer.from(value.literal as string, 'base64')
        : (value.literal as string);
    }
    const { provider: name, ...entry } = value;
    if (typeof name !== 'string') {
      throw fail(where, 'a reference object needs "provider"; a literal value is {"literal": "..."}');
    }
    const built = this.provider(name, where);
    checkFields(entry, built.adapter.refFields, where);
    for (const key of built.adapter.refRequired ?? []) {
      if (entry[key] === undefined) throw fail(join(where, key), 'is required');
    }
    return this.ref(built, entry, where);
  }

  private ref(built: Built, entry: Record<string, unknown>, where: string): SecretRef {
    let ref: SecretRef;
    try {
      ref = built.adapter.ref(built.provider, entry);
    } catch (err) {
      throw placed(where, err);
    }
    const effect = built.adapter.effect?.(entry);
    if (effect) this.effects.set(effect, [...(this.effects.get(effect) ?? []), where]);
    return ref;
  }

  /**
   * The name is not echoed: in `"<provider>:<id>"` it is the text before the first colon of a value in a
   * secret position, and a literal passphrase written as a plain string would show its first part.
   */
  private provider(name: string, where: string): Built {
    const built = this.built.get(name);
    if (!built) {
      const known = [...this.built.keys()].join(', ') || 'none';
      throw fail(
        where,
        `names no configured provider (configured: ${known}); a reference is "<provider>:<id>", a literal value is {"literal": "..."}`,
      );
    }
    return built;
  }

  /** `<provider>:<id>[#<key>]`, the form `describeRef` prints. */
  private shorthand(value: string, where: string): Source {
    const colon = value.indexOf(':');
    if (colon <= 0) {
      throw fail(where, 'a string must be "<provider>:<id>"; write a literal value as {"literal": "..."}');
    }
    const built = this.provider(value.slice(0, colon), where);
    const rest = value.slice(colon + 1);
    const hash = rest.lastIndexOf('#');
    const id = hash === -1 ? rest : rest.slice(0, hash);
    const key = hash === -1 ? undefined : rest.slice(hash + 1);
    if (id === '' || key === '') throw fail(where, 'the reference has an empty id or key');
    let entry: Record<string, unknown>;
    try {
      entry = {
        ...(built.adapter.shorthand?.(id, key) ?? { id, ...(key === undefined ? {} : { jsonKey: key }) }),
      };
    } catch (err) {
      throw placed(where, err);
    }
    return this.ref(built, entry, where);
  }

  withPassphrase(value: unknown, part: 'pem' | 'buf', where: string) {
    if (isObject(value) && part in value) {
      for (const key of Object.keys(value)) {
        if (key !== part && key !== 'passphrase') {
          throw fail(join(where, key), `unknown field${didYouMean(key, [part, 'passphrase'])}`);
        }
      }
      const main = this.source(value[part], join(where, part));
      const passphrase =
        value.passphrase === undefined ? undefined : this.source(value.passphrase, join(where, 'passphrase'));
      return { [part]: main, ...(passphrase === undefined ? {} : { passphrase }) };
    }
    return this.source(value, where);
  }
}

function buildSpec(tls: unknown, builder: SpecBuilder): TlsSecretsSpec {
  if (tls === undefined) throw fail('tls', 'is required: it maps ConnectionOptions fields to sources');
  if (!isObject(tls)) throw fail('tls', `expected an object mapping ConnectionOptions fields to sources`);
  const spec: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(tls)) {
    if (value === undefined) continue;
    const where = `tls.${field}`;
    const many = (build: (item: unknown, at: string) => unknown) =>
      Array.isArray(value) ? value.map((item, i) => build(item, `${where}[${i}]`)) : build(value, where);
    switch (field) {
      case 'key':
        spec.key = many((item, at) => builder.withPassphrase(item, 'pem', at));
        break;
      case 'pfx':
        spec.pfx = many((item, at) => builder.withPassphrase(item, 'buf', at));
        break;
      case 'cert':
      case 'ca':
      case 'crl':
        spec[field] = many((item, at) => builder.source(item, at));
        break;
      case 'passphrase':
      case 'ticketKeys':
      case 'dhparam':
        spec[field] = builder.source(value, where);
        break;
      case 'psk':
        if (!isObject(value)) throw fail(where, 'expected an object mapping identities to sources');
        spec.psk = Object.fromEntries(
          Object.entries(value).map(([identity, item]) => [
            identity,
            builder.source(item, `${where}.${identity}`),
          ]),
        );
        break;
      case 'secureContext':
        throw fail(where, 'is built by the resolver, not configured');
      default: {
        const type = Object.hasOwn(TLS_OPTION_FIELDS, field) ? TLS_OPTION_FIELDS[field] : undefined;
        if (type === undefined) {
          if (SPEC_KEYS.has(field))
            throw fail(where, 'takes a function or an object: pass it in code, not in a file');
          throw fail(
            where,
            `unknown field${didYouMean(field, [...SECRET_FIELDS, 'psk', ...Object.keys(TLS_OPTION_FIELDS)])}`,
          );
        }
        check(value, type, where);
        spec[field] = value;
      }
    }
  }
  if (!SECRET_FIELDS.some((field) => spec[field] !== undefined) && spec.psk === undefined) {
    throw fail('tls', `names nothing to resolve: give at least one of ${SECRET_FIELDS.join(', ')} (or psk)`);
  }
  return spec as TlsSecretsSpec;
}

async function closeAll(providers: Iterable<Provider>): Promise<void> {
  await Promise.allSettled([...providers].map((provider) => provider.close?.()));
}

/**
 * Builds the providers and the resolver a config describes. Nothing is fetched: the resolver loads on its
 * first `resolve()`. Relative paths (file `baseDir`, vault TLS files) are resolved from the config file's
 * directory. `close()` closes the resolver and then every provider it created.
 */
export async function createResolverFromConfig(
  config: TlsSecretsConfig | string,
  options: ConfigLoadOptions = {},
): Promise<ConfiguredResolver> {
  const path = typeof config === 'string' ? resolvePath(config) : undefined;
  const warnings: string[] = [];
  const raw: unknown = path === undefined ? config : await loadConfigFile(path, { warnings });
  const baseDir = path === undefined ? resolvePath(options.baseDir ?? '.') : dirname(path);
  const extra = (options.adapters ?? []) as unknown as readonly AnyAdapter[];
  const built = new Map<string, Built>();
  try {
    if (!isObject(raw)) throw fail('', 'expected an object with providers and tls');
    for (const key of Object.keys(raw)) {
      if (!TOP_LEVEL.includes(key))
        throw fail(key, `unknown field${didYouMean(key, TOP_LEVEL) || ` (known: ${TOP_LEVEL.join(', ')})`}`);
    }
    if (raw.$schema !== undefined) check(raw.$schema, 'string', '$schema');
    if (!isObject(raw.providers) || Object.keys(raw.providers).length === 0) {
      throw fail('providers', 'must name at least one provider');
    }
    if (raw.options !== undefined) {
      if (!isObject(raw.options)) throw fail('options', `expected an object`);
      checkFields(raw.options, OPTION_FIELDS, 'options');
    }
    for (const [name, providerConfig] of Object.entries(raw.providers)) {
      built.set(name, await buildProvider(name, providerConfig, baseDir, extra));
    }
    const builder = new SpecBuilder(built);
    const spec = buildSpec(raw.tls, builder);
    const resolverOptions = { ...(raw.options as ResolverOptions | undefined), ...options.resolverOptions };
    let resolver: Resolver;
    try {
      resolver = createResolver(spec, resolverOptions);
    } catch (err) {
      // The resolver names a spec field (`minVersion`, `psk`) or an option (`option …`); else it is the spec.
      const field = err instanceof ConfigurationError ? err.field : undefined;
      const isOption = err instanceof Error && /^(unknown )?option /.test(err.message);
      throw placed(field !== undefined ? `tls.${field}` : isOption ? 'options' : 'tls', err);
    }
    const providers = new Map([...built].map(([name, entry]) => [name, entry.provider]));
    return {
      resolver,
      providers,
      path,
      warnings,
      options: resolverOptions,
      effects: [...builder.effects].map(([effect, fields]) => `${fields.join(', ')}: ${effect}`),
      async close() {
        await resolver.close();
        await closeAll(providers.values());
      },
    };
  } catch (err) {
    await closeAll([...built.values()].map((entry) => entry.provider));
    // Name the file: the CLI prints this message and nothing else.
    if (err instanceof ConfigurationError && path !== undefined) {
      throw new ConfigurationError(`config ${path}: ${err.message.replace(/^config:? /, '')}`, {
        cause: err,
      });
    }
    throw err;
  }
}
