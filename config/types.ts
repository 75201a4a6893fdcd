/** The shape of a config file. Provider option types live with each provider's adapter. */
import type { AwsSecretsManagerProviderConfig } from '../providers/aws-secrets-manager.config.js';
import type { AwsSsmProviderConfig } from '../providers/aws-ssm.config.js';
import type { EnvProviderConfig } from '../providers/env.config.js';
import type { FileProviderConfig } from '../providers/file.config.js';
import type { MemoryProviderConfig } from '../providers/memory.config.js';
import type { VaultProviderConfig } from '../providers/vault/config.js';
import type { ResolverOptions } from '../src/types.js';

export type {
  AwsSecretsManagerProviderConfig,
  AwsSsmProviderConfig,
  EnvProviderConfig,
  FileProviderConfig,
  MemoryProviderConfig,
  VaultProviderConfig,
};

/** A registered third-party provider: its `type` and the options its adapter declares. */
export interface CustomProviderConfig {
  type: string;
  [option: string]: unknown;
}

export type ProviderConfig =
  | MemoryProviderConfig
  | EnvProviderConfig
  | FileProviderConfig
  | AwsSecretsManagerProviderConfig
  | AwsSsmProviderConfig
  | VaultProviderConfig
  | CustomProviderConfig;

/**
 * A reference in object form: `provider` names an entry of `providers`; the other keys are that provider
 * type's (`id`, `encoding`, `jsonKey` for most; `kv`/`field`, `pki`/`part`, `pkiCa`, `pkiCrl` for vault;
 * `versionStage`/`versionId` for aws-secrets-manager). See docs/cli.md.
 */
export interface RefConfig {
  provider: string;
  [key: string]: unknown;
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

/** The secret fields take sources; the other ConnectionOptions fields pass through as written. */
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
