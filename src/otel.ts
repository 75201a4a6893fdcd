/**
 * Observability: OpenTelemetry metrics (`@opentelemetry/api` is an optional peer, loaded on demand) and a
 * pluggable logger with pino's shape. Both read events and `status()` only, and neither ever sees secret
 * material: certificates are described by subject, serial, fingerprint and dates, errors by code, field,
 * reference and message.
 */
import type { Attributes, Meter } from '@opentelemetry/api';
import type { TlsSecretsError } from './errors.js';
import type { Resolver } from './resolver/index.js';
import type { CertificateInfo, ExpiringEvent, RotateEvent, StaleEvent, StoreCallEvent } from './types.js';

export interface InstrumentOptions {
  /** Where instruments are created. Default: `metrics.getMeter('tls-secrets')` of `@opentelemetry/api`. */
  meter?: Meter;
  /** Added to every measurement, e.g. `{ 'tls_secrets.resolver': 'db-client' }`. Default none. */
  attributes?: Attributes;
}

export interface Instrumentation {
  /** False when no meter was given and `@opentelemetry/api` could not be loaded: nothing is recorded. */
  readonly enabled: boolean;
  /** Stops recording. */
  stop(): void;
}

/** Metric names, as exported. */
export const METRICS = {
  expiry: 'tls_secrets.certificate.expiry',
  stale: 'tls_secrets.stale',
  rotations: 'tls_secrets.rotations',
  errors: 'tls_secrets.errors',
  storeDuration: 'tls_secrets.store.duration',
} as const;

/**
 * Records, per resolver:
 * - `tls_secrets.certificate.expiry` (gauge, s): seconds until each certificate field's notAfter
 *   (negative once past), attributes `tls_secrets.field` and `tls_secrets.source`;
 * - `tls_secrets.stale` (gauge): 1 while the last refresh failed and the previous bundle is served;
 * - `tls_secrets.rotations` (counter): generations swapped in;
 * - `tls_secrets.errors` (counter): refresh failures, attributes `error.type` (the error code: FETCH_FAILED
 *   and NOT_FOUND are store fetches, INVALID_MATERIAL a refused bundle), `tls_secrets.field`,
 *   `tls_secrets.provider`.
 * - `tls_secrets.store.duration` (histogram, ms): each store call the resolver makes, attributes
 *   `tls_secrets.provider`, `tls_secrets.call` (`fetch`, `batch`, `probe`) and `tls_secrets.ok`.
 */
export async function instrument(
  resolver: Resolver,
  options: InstrumentOptions = {},
): Promise<Instrumentation> {
  let meter = options.meter;
  if (!meter) {
    try {
      meter = (await import('@opentelemetry/api')).metrics.getMeter('tls-secrets');
    } catch {
      return { enabled: false, stop: () => {} };
    }
  }
  const base = options.attributes ?? {};

  const expiry = meter.createObservableGauge(METRICS.expiry, {
    description: 'Seconds until the certificate expires',
    unit: 's',
  });
  const stale = meter.createObservableGauge(METRICS.stale, {
    description: '1 while the last refresh failed and the previous bundle is being served',
  });
  const rotations = meter.createCounter(METRICS.rotations, { description: 'Generations swapped in' });
  const errors = meter.createCounter(METRICS.errors, { description: 'Failed refreshes, by error code' });
  const storeDuration = meter.createHistogram(METRICS.storeDuration, {
    description: 'Duration of store calls (fetch, batch fetch, version probe)',
    unit: 'ms',
  });

  const observeExpiry = (result: { observe(value: number, attributes?: Attributes): void }) => {
    const now = Date.now();
    for (const field of resolver.status().fields) {
      if (!field.notAfter) continue;
      result.observe(Math.round((field.notAfter.getTime() - now) / 1000), {
        ...base,
        'tls_secrets.field': field.field,
        'tls_secrets.source': field.source,
      });
    }
  };
  const observeStale = (result: { observe(value: number, attributes?: Attributes): void }) => {
    if (resolver.generation > 0) result.observe(resolver.status().stale ? 1 : 0, base);
  };
  expiry.addCallback(observeExpiry);
  stale.addCallback(observeStale);

  const onRotate = () => rotations.add(1, base);
  const onError = (error: TlsSecretsError) =>
    errors.add(1, {
      ...base,
      'error.type': error.code,
      ...(error.field ? { 'tls_secrets.field': error.field } : {}),
      ...(error.provider ? { 'tls_secrets.provider': error.provider } : {}),
    });
  const onStoreCall = (call: StoreCallEvent) =>
    storeDuration.record(call.durationMs, {
      ...base,
      'tls_secrets.provider': call.provider,
      'tls_secrets.call': call.kind,
      'tls_secrets.ok': call.ok,
    });
  resolver.on('rotate', onRotate);
  resolver.on('error', onError);
  resolver.on('storeCall', onStoreCall);

  return {
    enabled: true,
    stop() {
      expiry.removeCallback(observeExpiry);
      stale.removeCallback(observeStale);
      resolver.off('rotate', onRotate);
      resolver.off('error', onError);
      resolver.off('storeCall', onStoreCall);
    },
  };
}

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
