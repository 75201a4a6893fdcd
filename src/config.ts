/**
 * A declarative configuration (JSON, or YAML through the optional `yaml` package) that names providers and
 * maps ConnectionOptions fields to references. The CLI reads it; code loads the same file with
 * `createResolverFromConfig`. Every mistake is a ConfigurationError naming the config path, thrown before
 * anything is fetched.
 */
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve as resolvePath } from 'node:path';
import { ConfigurationError } from './errors.js';
import type { Provider, RefOptions, SecretRef } from './provider.js';
import { createResolver, type Resolver } from './resolver/index.js';
import type { ResolverOptions, Source, TlsSecretsSpec } from './types.js';

export interface MemoryProviderConfig {
  type: 'memory';
  /** Initial values by key. For tests and demos: a config file is no place for real secrets. */
  values?: Record<string, string>;
}

export interface EnvProviderConfig {
  type: 'env';
  /** Prepended to every variable name. Default none. */
  prefix?: string;
}

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

export interface AwsSecretsManagerProviderConfig {
  type: 'aws-secrets-manager';
  /** Default: the SDK's chain (`AWS_REGION`, shared config). Credentials always come from the SDK's chain. */
  region?: string;
  endpoint?: string;
  maxAttempts?: number;
  requestTimeoutMs?: number;
}

export interface AwsSsmProviderConfig {
  type: 'aws-ssm';
  /** Default: the SDK's chain (`AWS_REGION`, shared config). Credentials always come from the SDK's chain. */
  region?: string;
  endpoint?: string;
  maxAttempts?: number;
  requestTimeoutMs?: number;
  /** Default true: SecureString values are decrypted. */
  withDecryption?: boolean;
}

export interface VaultProviderConfig {
  type: 'vault';
  /** Default `VAULT_ADDR`. */
  endpoint?: string;
  namespace?: string;
  requestTimeoutMs?: number;
  /**
   * Default `{ token: VAULT_TOKEN }`. Prefer that default (or `kubernetes`) to a token written in the file.
   */
  auth?:
    | { token: string }
    | { appRole: { roleId: string; secretId?: string; mount?: string } }
    | { kubernetes: { role: string; jwtPath?: string; mount?: string } };
  /** PEM files (relative to the config file) for TLS to Vault itself. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export type ProviderConfig =
  | MemoryProviderConfig
  | EnvProviderConfig
  | FileProviderConfig
  | AwsSecretsManagerProviderConfig
  | AwsSsmProviderConfig
  | VaultProviderConfig;

/** A reference in object form. Which keys apply depends on the provider's type. */
export interface RefConfig {
  /** The name of a provider in `providers`. */
  provider: string;
  /**
   * Key (memory), variable (env), path (file), secret name or ARN (aws-secrets-manager), parameter name or
   * ARN with an optional `:version` or `:label` selector (aws-ssm).
   */
  id?: string;
  encoding?: 'utf8' | 'base64' | 'binary';
  jsonKey?: string;
  /** aws-secrets-manager: staging label. */
  versionStage?: string;
  /** aws-secrets-manager: one fixed version. */
  versionId?: string;
  /** vault: KV path, with `field`. */
  kv?: string;
  /** vault: the key inside the KV secret. */
  field?: string;
  /** vault: pinned KV v2 version. */
  version?: number;
  kvVersion?: 1 | 2;
  mount?: string;
  /** vault: a certificate issued by `<mount>/issue/<role>`; `part` picks key, cert or ca. */
  pki?: {
    mount: string;
    role: string;
    commonName: string;
    altNames?: string[];
    ipSans?: string[];
    ttl?: string;
    format?: 'pem' | 'pem_bundle';
    privateKeyFormat?: 'der' | 'pkcs8';
  };
  part?: 'key' | 'cert' | 'ca';
  /** vault: the CA certificate of this PKI mount. */
  pkiCa?: string;
  /** vault: the CRL of this PKI mount. */
  pkiCrl?: string;
}

/** A literal value in the file: for non-secret material such as a public CA bundle. */
export interface LiteralConfig {
  literal: string;
  /** `base64` makes the value bytes. Default `utf8`. */
  encoding?: 'utf8' | 'base64';
}

/**
 * A source: `"<provider>:<id>"` or `"<provider>:<id>#<jsonKey>"` (for vault, `"<provider>:<kv path>#<field>"`),
 * a reference object, or a literal.
 */
export type SourceConfig = string | RefConfig | LiteralConfig;
export type KeyConfig = SourceConfig | { pem: SourceConfig; passphrase?: SourceConfig };
export type PfxConfig = SourceConfig | { buf: SourceConfig; passphrase?: SourceConfig };

/** The secret fields take sources; every other ConnectionOptions field passes through as written. */
export interface TlsConfig {
  key?: KeyConfig | KeyConfig[];
  cert?: SourceConfig | SourceConfig[];
  ca?: SourceConfig | SourceConfig[];
  crl?: SourceConfig | SourceConfig[];
  pfx?: PfxConfig | PfxConfig[];
  passphrase?: SourceConfig;
  ticketKeys?: SourceConfig;
  dhparam?: SourceConfig;
  [option: string]: unknown;
}

export interface TlsSecretsConfig {
  /** Optional, for editors: ignored. */
  $schema?: string;
  /** Providers by name; the name is how references and errors call the store. */
  providers: Record<string, ProviderConfig>;
  tls: TlsConfig;
  options?: ResolverOptions;
}

export interface ConfigLoadOptions {
  /** Overrides `options` of the config (the CLI's `--interval`). */
  resolverOptions?: ResolverOptions;
  /** Where relative paths in a config given as an object are resolved. Default: the cwd. */
  baseDir?: string;
}

/** A resolver built from a config, with the providers it created (which `close()` closes too). */
export interface ConfiguredResolver {
  readonly resolver: Resolver;
  readonly providers: ReadonlyMap<string, Provider>;
  /** The config file, when one was loaded. */
  readonly path: string | undefined;
  /** What the YAML parser warned about, by line and kind: the library prints nothing, the CLI prints these. */
  readonly warnings: readonly string[];
  close(): Promise<void>;
}

const RESOLVER_OPTIONS: ReadonlySet<string> = new Set([
  'refreshIntervalMs',
  'jitter',
  'refreshAhead',
  'retryInitialDelayMs',
  'retryMaxDelayMs',
  'maxStaleMs',
  'fetchTimeoutMs',
  'debounceMs',
  'verifyChain',
]);

const PROVIDER_KEYS: Record<ProviderConfig['type'], readonly string[]> = {
  memory: ['values'],
  env: ['prefix'],
  file: ['baseDir', 'watch', 'pollIntervalMs', 'debounceMs', 'settleMs'],
  'aws-secrets-manager': ['region', 'endpoint', 'maxAttempts', 'requestTimeoutMs'],
  'aws-ssm': ['region', 'endpoint', 'maxAttempts', 'requestTimeoutMs', 'withDecryption'],
  vault: ['endpoint', 'namespace', 'requestTimeoutMs', 'auth', 'tls'],
};

const REF_KEYS: Record<ProviderConfig['type'], readonly string[]> = {
  memory: ['id', 'encoding', 'jsonKey'],
  env: ['id', 'encoding', 'jsonKey'],
  file: ['id', 'encoding', 'jsonKey'],
  'aws-secrets-manager': ['id', 'encoding', 'jsonKey', 'versionStage', 'versionId'],
  'aws-ssm': ['id', 'encoding', 'jsonKey'],
  vault: ['kv', 'field', 'version', 'kvVersion', 'mount', 'encoding', 'pki', 'part', 'pkiCa', 'pkiCrl'],
};

const ENCODINGS: ReadonlySet<string> = new Set(['utf8', 'base64', 'binary']);

const fail = (where: string, reason: string) => new ConfigurationError(`config ${where}: ${reason}`);

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw fail(where, `unknown key "${key}" (allowed: ${allowed.join(', ')})`);
  }
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') throw fail(where, 'must be a non-empty string');
  return value;
}

/**
 * YAML through `parseDocument`, never `parse`: `parse` hands every warning to `process.emitWarning`, which
 * prints it on stderr with a code frame of the source line (`pass: !env …`, `secretId: !secret …`), and its
 * errors quote the line too. Here nothing is printed: problems are reported by line and kind, never by text.
 * A tag the library does not resolve (`!secret`, `!env`) is an error, not a warning: the value would silently
 * become the text after the tag. Other warnings are pushed to `warnings`.
 */
function parseYaml(yaml: typeof import('yaml'), text: string, path: string, warnings?: string[]): unknown {
  const where = (problem: { code: string; linePos?: readonly { line: number }[] }) => {
    const line = problem.linePos?.[0]?.line;
    return `${line ? ` line ${line}` : ''} (${problem.code})`;
  };
  let doc: ReturnType<typeof yaml.parseDocument>;
  try {
    // logLevel 'error': toJS() would otherwise warn through process.emitWarning, quoting keys.
    doc = yaml.parseDocument(text, { logLevel: 'error', prettyErrors: true });
  } catch {
    throw new ConfigurationError(`config ${path} is not valid YAML`);
  }
  const [error] = doc.errors;
  if (error) throw new ConfigurationError(`config ${path} is not valid YAML:${where(error)}`);
  for (const warning of doc.warnings) {
    if (warning.code === 'TAG_RESOLVE_FAILED') {
      throw new ConfigurationError(
        `config ${path}:${where(warning)} uses a YAML tag tls-secrets does not resolve; write a reference such as "<provider>:<id>"`,
      );
    }
    warnings?.push(`config ${path}:${where(warning)} YAML warning`);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new ConfigurationError(`config ${path} is not valid YAML (its aliases cannot be resolved)`);
  }
}

export interface ConfigFileOptions {
  /** Receives what the YAML parser warned about, by line and kind (never the source text). */
  warnings?: string[];
}

/** Reads a config file: JSON, or YAML (`.yaml`/`.yml`) when the `yaml` package is installed. */
export async function loadConfigFile(
  path: string,
  options: ConfigFileOptions = {},
): Promise<TlsSecretsConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ConfigurationError(
      `cannot read config ${path}${typeof code === 'string' ? ` (${code})` : ''}`,
      {
        cause: err,
      },
    );
  }
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  let parsed: unknown;
  if (yaml) {
    let yamlModule: typeof import('yaml');
    try {
      yamlModule = await import('yaml');
    } catch (err) {
      throw new ConfigurationError(`config ${path} is YAML: install the "yaml" package (npm i yaml)`, {
        cause: err,
      });
    }
    parsed = parseYaml(yamlModule, text, path, options.warnings);
  } else {
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // JSON.parse quotes the text it failed on: only the position is taken from its message.
      throw new ConfigurationError(`config ${path} is not valid JSON (${jsonErrorPlace(err, text)})`);
    }
  }
  if (!isObject(parsed)) throw new ConfigurationError(`config ${path} must hold an object`);
  return parsed as unknown as TlsSecretsConfig;
}

/** `line L, column C` of a JSON.parse failure, from the position in its message (the end when it has none). */
function jsonErrorPlace(err: unknown, text: string): string {
  const position = /\bposition (\d+)/.exec(err instanceof Error ? err.message : '');
  const offset = Math.min(position ? Number(position[1]) : text.length, text.length);
  const before = text.slice(0, offset).split('\n');
  const line = before.length;
  const column = (before[line - 1]?.length ?? 0) + 1;
  return position ? `line ${line}, column ${column}` : `unexpected end at line ${line}, column ${column}`;
}

interface Built {
  readonly type: ProviderConfig['type'];
  readonly provider: Provider;
  /** Builds a reference from a validated ref object (keys checked against REF_KEYS). */
  ref(config: Record<string, unknown>, where: string): SecretRef;
}

function refOptions(config: Record<string, unknown>, where: string): RefOptions {
  const encoding = config.encoding;
  if (encoding !== undefined && (typeof encoding !== 'string' || !ENCODINGS.has(encoding))) {
    throw fail(`${where}.encoding`, 'must be utf8, base64 or binary');
  }
  const jsonKey = optionalString(config.jsonKey, `${where}.jsonKey`);
  return {
    ...(encoding === undefined ? {} : { encoding: encoding as NonNullable<RefOptions['encoding']> }),
    ...(jsonKey === undefined ? {} : { jsonKey }),
  };
}

function requireId(config: Record<string, unknown>, where: string): string {
  const id = optionalString(config.id, `${where}.id`);
  if (id === undefined) throw fail(where, 'needs an "id"');
  return id;
}

async function buildProvider(name: string, config: unknown, baseDir: string, where: string): Promise<Built> {
  if (!isObject(config)) throw fail(where, 'must be an object with a "type"');
  const { type, ...rest } = config;
  if (typeof type !== 'string' || !Object.hasOwn(PROVIDER_KEYS, type)) {
    throw fail(`${where}.type`, `must be one of ${Object.keys(PROVIDER_KEYS).join(', ')}`);
  }
  const kind = type as ProviderConfig['type'];
  checkKeys(rest, PROVIDER_KEYS[kind], where);
  const c = rest as Record<string, unknown>;

  switch (kind) {
    case 'memory': {
      const { memory } = await import('../providers/memory.js');
      const values = c.values ?? {};
      if (!isObject(values) || Object.values(values).some((v) => typeof v !== 'string')) {
        throw fail(`${where}.values`, 'must map keys to strings');
      }
      const provider = memory(values as Record<string, string>, { name });
      return { type: kind, provider, ref: (r, w) => provider.ref(requireId(r, w), refOptions(r, w)) };
    }
    case 'env': {
      const { env } = await import('../providers/env.js');
      const provider = env({ prefix: optionalString(c.prefix, `${where}.prefix`) });
      return { type: kind, provider, ref: (r, w) => provider.ref(requireId(r, w), refOptions(r, w)) };
    }
    case 'file': {
      const { file } = await import('../providers/file.js');
      const dir = optionalString(c.baseDir, `${where}.baseDir`);
      const provider = file({
        name,
        baseDir: dir === undefined ? baseDir : resolvePath(baseDir, dir),
        ...(c.watch === undefined ? {} : { watch: c.watch as boolean | 'poll' }),
        ...(c.pollIntervalMs === undefined ? {} : { pollIntervalMs: c.pollIntervalMs as number }),
        ...(c.debounceMs === undefined ? {} : { debounceMs: c.debounceMs as number }),
        ...(c.settleMs === undefined ? {} : { settleMs: c.settleMs as number }),
      });
      return { type: kind, provider, ref: (r, w) => provider.ref(requireId(r, w), refOptions(r, w)) };
    }
    case 'aws-secrets-manager': {
      const { awsSecretsManager } = await import('../providers/aws-secrets-manager.js');
      const provider = awsSecretsManager({
        name,
        ...(c.region === undefined ? {} : { region: optionalString(c.region, `${where}.region`) }),
        ...(c.endpoint === undefined ? {} : { endpoint: optionalString(c.endpoint, `${where}.endpoint`) }),
        ...(c.maxAttempts === undefined ? {} : { maxAttempts: c.maxAttempts as number }),
        ...(c.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: c.requestTimeoutMs as number }),
      });
      return {
        type: kind,
        provider,
        ref: (r, w) =>
          provider.secret(requireId(r, w), {
            ...refOptions(r, w),
            ...(r.versionStage === undefined
              ? {}
              : { versionStage: optionalString(r.versionStage, `${w}.versionStage`) }),
            ...(r.versionId === undefined
              ? {}
              : { versionId: optionalString(r.versionId, `${w}.versionId`) }),
          }),
      };
    }
    case 'aws-ssm': {
      const { ssmParameterStore } = await import('../providers/aws-ssm.js');
      const provider = ssmParameterStore({
        name,
        ...(c.region === undefined ? {} : { region: optionalString(c.region, `${where}.region`) }),
        ...(c.endpoint === undefined ? {} : { endpoint: optionalString(c.endpoint, `${where}.endpoint`) }),
        ...(c.maxAttempts === undefined ? {} : { maxAttempts: c.maxAttempts as number }),
        ...(c.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: c.requestTimeoutMs as number }),
        ...(c.withDecryption === undefined ? {} : { withDecryption: c.withDecryption as boolean }),
      });
      return { type: kind, provider, ref: (r, w) => provider.ref(requireId(r, w), refOptions(r, w)) };
    }
    case 'vault':
      return buildVault(name, c, baseDir, where);
  }
}

async function buildVault(
  name: string,
  c: Record<string, unknown>,
  baseDir: string,
  where: string,
): Promise<Built> {
  let tls: { ca?: string; cert?: string; key?: string } | undefined;
  if (c.tls !== undefined) {
    if (!isObject(c.tls)) throw fail(`${where}.tls`, 'must be an object');
    checkKeys(c.tls, ['caFile', 'certFile', 'keyFile'], `${where}.tls`);
    tls = {};
    for (const [option, field] of [
      ['caFile', 'ca'],
      ['certFile', 'cert'],
      ['keyFile', 'key'],
    ] as const) {
      const path = optionalString(c.tls[option], `${where}.tls.${option}`);
      if (path === undefined) continue;
      try {
        tls[field] = await readFile(resolvePath(baseDir, path), 'utf8');
      } catch {
        throw fail(`${where}.tls.${option}`, `cannot read ${path}`);
      }
    }
  }
  const { vault } = await import('../providers/vault/index.js');
  const provider = vault({
    name,
    ...(c.endpoint === undefined ? {} : { endpoint: optionalString(c.endpoint, `${where}.endpoint`) }),
    ...(c.namespace === undefined ? {} : { namespace: optionalString(c.namespace, `${where}.namespace`) }),
    ...(c.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: c.requestTimeoutMs as number }),
    ...(c.auth === undefined ? {} : { auth: c.auth as NonNullable<Parameters<typeof vault>[0]>['auth'] }),
    ...(tls ? { tls } : {}),
  });
  const ref = (r: Record<string, unknown>, w: string): SecretRef => {
    const encoding = refOptions(r, w).encoding;
    if (r.kv !== undefined) {
      const field = optionalString(r.field, `${w}.field`);
      if (field === undefined) throw fail(w, 'a vault kv reference needs a "field"');
      return provider.kv(optionalString(r.kv, `${w}.kv`) ?? '', {
        field,
        ...(encoding ? { encoding } : {}),
        ...(r.version === undefined ? {} : { version: r.version as number }),
        ...(r.kvVersion === undefined ? {} : { kvVersion: r.kvVersion as 1 | 2 }),
        ...(r.mount === undefined ? {} : { mount: optionalString(r.mount, `${w}.mount`) }),
      });
    }
    if (r.pki !== undefined) {
      if (!isObject(r.pki)) throw fail(`${w}.pki`, 'must be an object with mount, role and commonName');
      const { mount, role, ...issue } = r.pki;
      const part = r.part;
      if (part !== 'key' && part !== 'cert' && part !== 'ca')
        throw fail(`${w}.part`, 'must be key, cert or ca');
      const refs = provider.pki(
        optionalString(mount, `${w}.pki.mount`) ?? '',
        optionalString(role, `${w}.pki.role`) ?? '',
        issue as unknown as Parameters<typeof provider.pki>[2],
      );
      return refs[part];
    }
    if (r.pkiCa !== undefined) return provider.pkiCa(optionalString(r.pkiCa, `${w}.pkiCa`) ?? '');
    if (r.pkiCrl !== undefined) return provider.pkiCrl(optionalString(r.pkiCrl, `${w}.pkiCrl`) ?? '');
    throw fail(w, 'a vault reference needs one of kv (with field), pki (with part), pkiCa, pkiCrl');
  };
  return { type: 'vault', provider, ref };
}

/** A provider factory's refusal, named by its place in the config. */
const placed = (where: string) => (err: unknown) => {
  if (err instanceof ConfigurationError && !err.message.startsWith('config ')) throw fail(where, err.message);
  throw err;
};

/** A provider's refusal of a reference, named by its place in the config (providers never echo the id). */
function refAt(built: Built, config: Record<string, unknown>, where: string): SecretRef {
  try {
    return built.ref(config, where);
  } catch (err) {
    if (err instanceof ConfigurationError && !err.message.startsWith('config '))
      throw fail(where, err.message);
    throw err;
  }
}

class SpecBuilder {
  constructor(private readonly built: ReadonlyMap<string, Built>) {}

  source(value: unknown, where: string): Source {
    if (typeof value === 'string') return this.shorthand(value, where);
    if (!isObject(value)) throw fail(where, 'must be a reference string, a reference object or {literal}');
    if ('literal' in value) {
      checkKeys(value, ['literal', 'encoding'], where);
      if (typeof value.literal !== 'string') throw fail(`${where}.literal`, 'must be a string');
      if (value.encoding === 'base64') return Buffer.from(value.literal, 'base64');
      if (value.encoding !== undefined && value.encoding !== 'utf8') {
        throw fail(`${where}.encoding`, 'a literal is utf8 or base64');
      }
      return value.literal;
    }
    const { provider: name, ...rest } = value;
    if (typeof name !== 'string') throw fail(where, 'a reference object needs "provider"');
    const built = this.provider(name, where);
    checkKeys(rest, REF_KEYS[built.type], where);
    return refAt(built, rest, where);
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

  /** `<provider>:<id>[#<jsonKey>]`, the form `describeRef` prints. */
  private shorthand(value: string, where: string): Source {
    const colon = value.indexOf(':');
    if (colon <= 0) {
      throw fail(where, 'a string must be "<provider>:<id>"; write a literal value as {"literal": "..."}');
    }
    const name = value.slice(0, colon);
    const built = this.provider(name, where);
    const rest = value.slice(colon + 1);
    const hash = rest.lastIndexOf('#');
    const id = hash === -1 ? rest : rest.slice(0, hash);
    const key = hash === -1 ? undefined : rest.slice(hash + 1);
    if (id === '' || key === '') throw fail(where, 'the reference has an empty id or key');
    if (built.type === 'vault') {
      if (key === undefined) throw fail(where, `a vault reference is "${name}:<kv path>#<field>"`);
      return refAt(built, { kv: id, field: key }, where);
    }
    return refAt(built, { id, ...(key === undefined ? {} : { jsonKey: key }) }, where);
  }

  withPassphrase(value: unknown, part: 'pem' | 'buf', where: string) {
    if (isObject(value) && part in value) {
      checkKeys(value, [part, 'passphrase'], where);
      const main = this.source(value[part], `${where}.${part}`);
      const passphrase =
        value.passphrase === undefined ? undefined : this.source(value.passphrase, `${where}.passphrase`);
      return part === 'pem'
        ? { pem: main, ...(passphrase === undefined ? {} : { passphrase }) }
        : { buf: main, ...(passphrase === undefined ? {} : { passphrase }) };
    }
    return this.source(value, where);
  }
}

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

function buildSpec(tls: unknown, builder: SpecBuilder): TlsSecretsSpec {
  if (!isObject(tls)) throw fail('tls', 'must be an object mapping ConnectionOptions fields to sources');
  const spec: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(tls)) {
    if (value === undefined) continue;
    const many = (build: (item: unknown, where: string) => unknown) => {
      const items = list(value).map((item, i) =>
        build(item, Array.isArray(value) ? `tls.${field}[${i}]` : `tls.${field}`),
      );
      return Array.isArray(value) ? items : items[0];
    };
    switch (field) {
      case 'key':
        spec.key = many((item, where) => builder.withPassphrase(item, 'pem', where));
        break;
      case 'pfx':
        spec.pfx = many((item, where) => builder.withPassphrase(item, 'buf', where));
        break;
      case 'cert':
      case 'ca':
      case 'crl':
        spec[field] = many((item, where) => builder.source(item, where));
        break;
      case 'passphrase':
      case 'ticketKeys':
      case 'dhparam':
        spec[field] = builder.source(value, `tls.${field}`);
        break;
      case 'secureContext':
        throw fail('tls.secureContext', 'is built by the resolver, not configured');
      default:
        spec[field] = value;
    }
  }
  return spec as TlsSecretsSpec;
}

function checkResolverOptions(options: unknown): ResolverOptions {
  if (options === undefined) return {};
  if (!isObject(options)) throw fail('options', 'must be an object');
  checkKeys(options, [...RESOLVER_OPTIONS], 'options');
  return options as ResolverOptions;
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
  if (!isObject(raw)) throw new ConfigurationError('config must be an object');
  checkKeys(
    raw,
    ['$schema', 'providers', 'tls', 'options'],
    path === undefined ? 'top level' : `${path}, top level`,
  );
  if (!isObject(raw.providers) || Object.keys(raw.providers).length === 0) {
    throw fail('providers', 'must name at least one provider');
  }

  const built = new Map<string, Built>();
  try {
    for (const [name, providerConfig] of Object.entries(raw.providers)) {
      if (!/^[A-Za-z0-9_.-]+$/.test(name))
        throw fail(`providers.${name}`, 'names use letters, digits, _ . -');
      built.set(
        name,
        await buildProvider(name, providerConfig, baseDir, `providers.${name}`).catch(
          placed(`providers.${name}`),
        ),
      );
    }
    const spec = buildSpec(raw.tls, new SpecBuilder(built));
    const resolver = createResolver(spec, {
      ...checkResolverOptions(raw.options),
      ...options.resolverOptions,
    });
    const providers = new Map([...built].map(([name, entry]) => [name, entry.provider]));
    return {
      resolver,
      providers,
      path,
      warnings,
      async close() {
        await resolver.close();
        await closeAll(providers.values());
      },
    };
  } catch (err) {
    await closeAll([...built.values()].map((entry) => entry.provider));
    // Name the file: the CLI prints this message and nothing else.
    if (err instanceof ConfigurationError && path !== undefined) {
      throw new ConfigurationError(`config ${path}: ${err.message.replace(/^config /, '')}`, { cause: err });
    }
    throw err;
  }
}
