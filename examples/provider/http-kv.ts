/**
 * A complete small provider, written as a third party would: it imports only `tls-secrets/provider-kit`.
 * The store is an HTTP key/value service: `GET <baseUrl>/<key>` answers the value's bytes with an `ETag`,
 * `HEAD` the same headers without the body, 404 when the key does not exist, 401/403 when the token may not
 * read it. docs/providers/writing-a-provider.md walks through it; test/provider-example.test.ts runs the
 * conformance suite on it against a real node:http server.
 */
import {
  ClosedError,
  ConfigurationError,
  checkDurationMs,
  contentVersion,
  createRef,
  describeRef,
  FetchError,
  type FetchResult,
  MAX_SECRET_BYTES,
  type Provider,
  type RefOptions,
  redactProvider,
  SecretNotFoundError,
  type SecretRef,
  safeCause,
} from 'tls-secrets/provider-kit';

export interface HttpKvOptions {
  /** Where keys live, e.g. `https://kv.internal/v1/kv`. Required; must not carry credentials. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <token>`. Default: none. */
  token?: string;
  /** Bound of one request (ms). Default 5000. */
  requestTimeoutMs?: number;
  /** Provider name in errors and status. Default `http-kv`. */
  name?: string;
}

export interface HttpKvProvider extends Provider {
  /** A reference to `key`; creating it does no I/O. */
  ref(key: string, options?: RefOptions): SecretRef;
  currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | undefined>;
  close(): Promise<void>;
}

const KEY = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;

export function httpKv(options: HttpKvOptions): HttpKvProvider {
  const name = options.name ?? 'http-kv';
  // Options are checked here, at creation: a misconfiguration fails at start, not at the first handshake.
  let base: URL;
  try {
    base = new URL(options.baseUrl);
  } catch {
    // Not echoed: a URL that does not parse may still carry a password.
    throw new ConfigurationError('http-kv option baseUrl is not a URL', { provider: name });
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new ConfigurationError('http-kv option baseUrl must be http: or https:', { provider: name });
  if (base.username || base.password)
    throw new ConfigurationError('http-kv option baseUrl must not carry credentials (use token)', {
      provider: name,
    });
  const requestTimeoutMs = checkDurationMs(
    'http-kv option requestTimeoutMs',
    options.requestTimeoutMs,
    5_000,
    {
      min: 1,
      provider: name,
    },
  );
  const baseUrl = base.href.replace(/\/+$/, '');
  let closed = false;

  /** One request, bounded by the caller's signal and the request timeout; every failure a library error. */
  const request = async (method: 'GET' | 'HEAD', ref: SecretRef, signal: AbortSignal): Promise<Response> => {
    const context = { ref: describeRef(ref), provider: name };
    if (closed) throw new ClosedError(`${name} provider`, context);
    let response: Response;
    try {
      response = await fetch(`${baseUrl}/${ref.id}`, {
        method,
        headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
        signal: AbortSignal.any([signal, AbortSignal.timeout(requestTimeoutMs)]),
      });
    } catch (err) {
      // safeCause keeps the error's name and code, never a message that may quote the request.
      const reason = signal.aborted ? 'request aborted' : 'store unreachable or too slow';
      throw new FetchError(reason, { ...context, cause: safeCause(err, { secrets: [options.token ?? ''] }) });
    }
    // Only the store's explicit answer is "not found"; a denial or an outage is a FetchError with its status.
    if (response.status === 404) throw new SecretNotFoundError('key not found', context);
    if (response.status === 401 || response.status === 403)
      throw new FetchError(`access denied (HTTP ${response.status})`, { ...context, transient: false });
    if (!response.ok)
      throw new FetchError(`store answered HTTP ${response.status}`, {
        ...context,
        transient: response.status >= 500 || response.status === 429,
      });
    return response;
  };

  const provider: HttpKvProvider = {
    name,
    ref(key, refOptions) {
      // Not echoed: a value written where a key belongs would show in the error.
      if (typeof key !== 'string' || !KEY.test(key))
        throw new ConfigurationError('http-kv key must be path segments of letters, digits, _ . -', {
          provider: name,
        });
      return createRef(provider, key, refOptions);
    },
    async fetch(ref, signal): Promise<FetchResult> {
      const response = await request('GET', ref, signal);
      const bytes = new Uint8Array(await response.arrayBuffer());
      if (bytes.byteLength > MAX_SECRET_BYTES)
        throw new FetchError(`value is over the ${MAX_SECRET_BYTES}-byte limit`, {
          ref: describeRef(ref),
          provider: name,
          transient: false,
        });
      // The store's ETag where it sends one; otherwise a keyed content hash, which reveals nothing.
      return { value: bytes, version: response.headers.get('etag') ?? contentVersion(bytes) };
    },
    async currentVersion(ref, signal) {
      try {
        return (await request('HEAD', ref, signal)).headers.get('etag') ?? undefined;
      } catch (err) {
        // Absent: no version; the fetch that follows reports the not-found error.
        if (err instanceof SecretNotFoundError) return undefined;
        throw err;
      }
    },
    async close() {
      closed = true;
    },
  };
  // The token stays out of logs and JSON: only the name and the base URL show.
  return redactProvider(provider, 'HttpKvProvider', () => ({ baseUrl }));
}
