/**
 * A pluggable logger with pino's shape for the resolver's events. Needs nothing optional, so it stays in the
 * main entry. Reads events only and never sees secret material: certificates are described by subject,
 * serial, fingerprint and dates, errors by code, field, reference and message.
 */
import type { TlsSecretsError } from './errors.js';
import type { Resolver } from './resolver/index.js';
import type { CertificateInfo, ExpiringEvent, RotateEvent, StaleEvent } from './types.js';

/** The shape of pino, bunyan-style child loggers and most structured loggers: `(object, message)`. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

function describeCertificate(cert: CertificateInfo) {
  return {
    field: cert.field,
    ref: cert.ref,
    subject: cert.subject,
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notAfter: cert.notAfter.toISOString(),
  };
}

/** An error as names and reasons: the cause is reduced to its name and code, whatever it carried. */
function describeError(error: TlsSecretsError) {
  const cause = error.cause as { name?: unknown; code?: unknown } | undefined;
  return {
    name: error.name,
    code: error.code,
    message: error.message,
    ...(error.field ? { field: error.field } : {}),
    ...(error.ref ? { ref: error.ref } : {}),
    ...(error.provider ? { provider: error.provider } : {}),
    ...('transient' in error ? { transient: error.transient } : {}),
    ...(cause && typeof cause === 'object'
      ? {
          cause: {
            ...(typeof cause.name === 'string' ? { name: cause.name } : {}),
            ...(typeof cause.code === 'string' || typeof cause.code === 'number' ? { code: cause.code } : {}),
          },
        }
      : {}),
  };
}

function describeExpiring(event: ExpiringEvent) {
  return {
    generation: event.generation,
    certificate: describeCertificate(event.certificate),
    remainingMs: event.remainingMs,
  };
}

/**
 * Logs the resolver's events: `rotate` (info), `error` and `stale` (warn), `expiring` (warn), `expired`
 * (error). Nothing is logged unless a logger is attached. Returns the function that detaches it.
 */
export function attachLogger(resolver: Resolver, logger: Logger): () => void {
  const onRotate = (event: RotateEvent) =>
    logger.info(
      {
        event: 'rotate',
        generation: event.generation,
        changed: event.changed,
        versions: event.versions,
        certificates: event.certificates.map(describeCertificate),
      },
      `tls-secrets: generation ${event.generation} in use (changed: ${event.changed.join(', ') || 'nothing'})`,
    );
  const onError = (error: TlsSecretsError) =>
    logger.warn({ event: 'error', err: describeError(error) }, `tls-secrets: ${error.message}`);
  const onStale = (event: StaleEvent) =>
    logger.warn(
      {
        event: 'stale',
        generation: event.generation,
        since: event.since.toISOString(),
        notAfter: event.notAfter?.toISOString(),
        err: describeError(event.error),
      },
      `tls-secrets: serving generation ${event.generation} from before the failed refresh`,
    );
  const onExpiring = (event: ExpiringEvent) =>
    logger.warn(
      { event: 'expiring', ...describeExpiring(event) },
      `tls-secrets: certificate ${event.certificate.field} expires at ${event.certificate.notAfter.toISOString()}`,
    );
  const onExpired = (event: ExpiringEvent) =>
    logger.error(
      { event: 'expired', ...describeExpiring(event) },
      `tls-secrets: certificate ${event.certificate.field} expired at ${event.certificate.notAfter.toISOString()}`,
    );
  resolver.on('rotate', onRotate);
  resolver.on('error', onError);
  resolver.on('stale', onStale);
  resolver.on('expiring', onExpiring);
  resolver.on('expired', onExpired);
  return () => {
    resolver.off('rotate', onRotate);
    resolver.off('error', onError);
    resolver.off('stale', onStale);
    resolver.off('expiring', onExpiring);
    resolver.off('expired', onExpired);
  };
}
