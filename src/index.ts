export {
  createAgent,
  createDispatcher,
  createHttp2Client,
  type DispatcherOptions,
  type Http2Client,
  type Http2ClientOptions,
  type TlsAgentOptions,
  TlsSecretsAgent,
} from './agent.js';
export { type ConnectOptions, connect } from './connect.js';
export { contentVersion } from './content-version.js';
export {
  type CauseFilter,
  CertificateExpiredError,
  CleanCause,
  ConfigurationError,
  type ErrorCode,
  FetchError,
  ForeignCause,
  InvalidMaterialError,
  ListenerError,
  ResolverClosedError,
  SecretNotFoundError,
  safeCause,
  TlsSecretsError,
} from './errors.js';
export {
  attachLogger,
  type Instrumentation,
  type InstrumentOptions,
  instrument,
  type Logger,
  METRICS,
} from './otel.js';
export {
  createRef,
  describeRef,
  type FetchResult,
  type Provider,
  type RawSecret,
  type RefOptions,
  type SecretRef,
} from './provider.js';
export { createResolver, type RefreshResult, Resolver } from './resolver/index.js';
export { attach, createServer } from './server.js';
export type * from './types.js';
// The one value in types.ts: `export type *` declares it too, so it must exist at run time as well.
export { SECRET_FIELDS } from './types.js';
