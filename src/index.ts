export { type ConnectOptions, connect } from './connect.js';
export {
  CertificateExpiredError,
  ConfigurationError,
  type ErrorCode,
  FetchError,
  InvalidMaterialError,
  ResolverClosedError,
  SecretNotFoundError,
  TlsSecretsError,
} from './errors.js';
export {
  createRef,
  describeRef,
  type FetchResult,
  type Provider,
  type RawSecret,
  type RefOptions,
  type SecretRef,
} from './provider.js';
export { createResolver, type RefreshResult, Resolver } from './resolver.js';
export { attach, createServer } from './server.js';
export type * from './types.js';
