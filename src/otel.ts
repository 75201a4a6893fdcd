/**
 * OpenTelemetry metrics, the `tls-secrets/otel` entry point: its own subpath because its types come from
 * `@opentelemetry/api`, an optional peer, so the main entry's declarations need nothing optional. The API
 * is loaded on demand (only when no meter is given). Reads events and `status()` only and never sees secret
 * material: certificates by field and dates, errors by code, field and provider. The logger is src/logger.ts.
 */
import type { Attributes, Meter } from '@opentelemetry/api';
import type { TlsSecretsError } from './errors.js';
import { importOptional } from './optional.js';
import type { Resolver } from './resolver/index.js';
import type { StoreCallEvent } from './types.js';

export interface InstrumentOptions {
  /** Where instruments are created. Default: `metrics.getMeter('tls-secrets')` of `@opentelemetry/api`. */
  meter?: Meter;
  /** Added to every measurement, e.g. `{ 'tls_secrets.resolver': 'db-client' }`. Default none. */
  attributes?: Attributes;
}

export interface Instrumentation {
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
 *
 * Rejects with a ConfigurationError naming `@opentelemetry/api` when no meter is given and it cannot be loaded.
 */
export async function instrument(
  resolver: Resolver,
  options: InstrumentOptions = {},
): Promise<Instrumentation> {
  // A missing API is a deployment mistake, not a reason to record nothing in silence.
  const meter =
    options.meter ??
    (
      await importOptional('@opentelemetry/api', 'instrument()', () => import('@opentelemetry/api'))
    ).metrics.getMeter('tls-secrets');
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
    stop() {
      expiry.removeCallback(observeExpiry);
      stale.removeCallback(observeStale);
      resolver.off('rotate', onRotate);
      resolver.off('error', onError);
      resolver.off('storeCall', onStoreCall);
    },
  };
}
