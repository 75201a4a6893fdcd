/**
 * `tls-secrets/provider-kit`: what a provider author needs, from one place, so a provider of your own gets the
 * guarantees the built-in ones have (see docs/providers/writing-a-provider.md). The conformance suite that
 * checks them is `tls-secrets/testing`. Nothing here loads an optional package.
 */
export { type AbortableOptions, abortable } from './abort.js';
export { contentVersion } from './content-version.js';
export {
  type CauseFilter,
  CleanCause,
  ClosedError,
  ConfigurationError,
  type ErrorCode,
  type ErrorContext,
  FetchError,
  ForeignCause,
  holdsSecret,
  InvalidMaterialError,
  SecretNotFoundError,
  safeCause,
  TlsSecretsError,
  withoutUrlCredentials,
} from './errors.js';
export { importOptional } from './optional.js';
export {
  createRef,
  describeRef,
  type FetchResult,
  isSecretRef,
  type Provider,
  type RawSecret,
  type RefOptions,
  type SecretRef,
  type VersionProbe,
} from './provider.js';
export { redactProvider } from './redact.js';
export { checkDurationMs, MAX_TIMER, runAt, type TimerHandle } from './timers.js';
export { MAX_SECRET_BYTES } from './transform.js';
