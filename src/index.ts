export {
  createAgent,
  createHttp2Client,
  type Http2Client,
  type Http2ClientOptions,
  type TlsAgentOptions,
  TlsSecretsAgent,
} from './agent.js';
export { type ConnectOptions, connect } from './connect.js';
export {
  CertificateExpiredError,
  ClosedError,
  ConfigurationError,
  type ErrorCode,
  FetchError,
  InvalidMaterialError,
  ListenerError,
  SecretNotFoundError,
  TlsSecretsError,
} from './errors.js';
export { attachLogger, type Logger } from './logger.js';
// Types for application code that passes references and providers around; what building a provider takes
// (createRef, describeRef, contentVersion, safeCause, …) is in `tls-secrets/provider-kit`.
export type { FetchResult, Provider, RawSecret, RefOptions, SecretRef } from './provider.js';
export { createResolver, type RefreshResult, Resolver } from './resolver/index.js';
export { attach, createServer } from './server.js';
export type * from './types.js';
// The one value in types.ts: `export type *` declares it too, so it must exist at run time as well.
export { SECRET_FIELDS } from './types.js';
