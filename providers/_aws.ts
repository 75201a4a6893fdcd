/**
 * What the AWS providers (Secrets Manager, SSM Parameter Store) share: option checks, the lazily built SDK
 * client, the transient/permanent split of SDK errors, and small concurrency helpers. Not a provider (the
 * leading underscore keeps it out of the package's provider list); each service keeps its own error names.
 */
import { ClosedError, ConfigurationError, type FetchError, safeCause } from '../src/errors.js';
import { importOptional } from '../src/optional.js';
import { describeRef, type SecretRef } from '../src/provider.js';
import { after, systemClock } from '../src/timers.js';

/** Options every AWS provider takes when it builds its own client. */
export interface AwsClientConfigOptions {
  region?: string;
  endpoint?: string;
  credentials?: unknown;
  maxAttempts?: number;
  requestTimeoutMs?: number;
  client?: unknown;
  name?: string;
}

export const DEFAULT_MAX_ATTEMPTS = 3;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
const CONNECTION_TIMEOUT_MS = 3_000;

/**
 * How many sends a paced read gets: `maxAttempts`, or for an injected client (whose own maxAttempts cannot be
 * read back synchronously) the SDK's default, 3.
 */
export function pacedAttempts(options: { readonly client?: unknown; readonly maxAttempts?: number }): number {
  return options.client === undefined ? (options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS) : DEFAULT_MAX_ATTEMPTS;
}

interface ServiceInfo {
  /** Default provider name, e.g. `aws-ssm`. */
  readonly provider: string;
  /** The SDK client class, for messages: `SSMClient`. */
  readonly clientName: string;
  /** The service's own endpoint variable, e.g. `AWS_ENDPOINT_URL_SSM`. */
  readonly endpointVariable: string;
}

/** Refuses malformed options and `client` combined with client settings, at creation time. */
export function validateAwsOptions(options: AwsClientConfigOptions, service: ServiceInfo): void {
  const fail = (reason: string) =>
    new ConfigurationError(reason, { provider: options.name ?? service.provider });
  if (options.name !== undefined && (typeof options.name !== 'string' || options.name.trim() === '')) {
    throw fail('name must be a non-empty string');
  }
  const given = (['region', 'endpoint', 'credentials', 'maxAttempts', 'requestTimeoutMs'] as const).filter(
    (key) => options[key] !== undefined,
  );
  if (options.client !== undefined) {
    if (typeof (options.client as { send?: unknown } | null)?.send !== 'function') {
      throw fail(`client must be an ${service.clientName}`);
    }
    if (given.length > 0) {
      throw fail(`client cannot be combined with ${given.join(', ')}: configure the client instead`);
    }
    return;
  }
  const { region, endpoint, maxAttempts, requestTimeoutMs } = options;
  if (region !== undefined && (typeof region !== 'string' || !/^[a-z0-9]+(-[a-z0-9]+)+$/.test(region))) {
    throw fail(`region "${String(region)}" is not an AWS region name such as eu-west-1`);
  }
  if (endpoint !== undefined) checkEndpoint(endpoint, 'endpoint', fail);
  else if (!process.env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS) {
    for (const variable of [service.endpointVariable, 'AWS_ENDPOINT_URL']) {
      const value = process.env[variable];
      if (value) checkEndpoint(value, variable, fail);
    }
  }
  if (
    maxAttempts !== undefined &&
    !(Number.isInteger(maxAttempts) && maxAttempts >= 1 && maxAttempts <= 10)
  ) {
    throw fail('maxAttempts must be an integer from 1 to 10');
  }
  if (
    requestTimeoutMs !== undefined &&
    !(Number.isInteger(requestTimeoutMs) && requestTimeoutMs > 0 && requestTimeoutMs <= 600_000)
  ) {
    throw fail('requestTimeoutMs must be a positive integer of milliseconds, at most 600000');
  }
}

function checkEndpoint(value: unknown, label: string, fail: (reason: string) => Error): void {
  let url: URL | undefined;
  try {
    url = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  // The value is not echoed: an endpoint URL may carry user info.
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw fail(`${label} must be an http(s) URL`);
  }
  // AWS authenticates by signature, never by user info: a password here would only end up in logs.
  if (url.username || url.password) throw fail(`${label} must not carry credentials`);
}

/** The SDK client configuration built from validated options: bounded connection and request times. */
export function awsClientConfig(options: AwsClientConfigOptions): Record<string, unknown> {
  return {
    ...(options.region === undefined ? {} : { region: options.region }),
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    requestHandler: {
      connectionTimeout: CONNECTION_TIMEOUT_MS,
      requestTimeout: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      // Without it the SDK only logs a warning when requestTimeout passes.
      throwOnRequestTimeout: true,
    },
  };
}

interface DestroyableClient {
  destroy(): void;
}

/**
 * The SDK module and client, loaded on first use. `importSdk` is the provider's own `import()` (a literal
 * specifier, so bundlers see it); a client handed in is used as is and never destroyed here.
 */
export function lazyAwsClient<Sdk, Client extends DestroyableClient>(settings: {
  readonly name: string;
  readonly packageName: string;
  readonly importSdk: () => Promise<Sdk>;
  readonly injected: Client | undefined;
  readonly build: (sdk: Sdk) => Client;
}): { load(ref: SecretRef): Promise<{ sdk: Sdk; client: Client }>; close(): Promise<void> } {
  let loading: Promise<{ sdk: Sdk; client: Client }> | undefined;
  let owned: Client | undefined;
  let closed = false;
  const closedError = (ref: SecretRef) =>
    new ClosedError(`${settings.name} provider`, { ref: describeRef(ref), provider: settings.name });
  return {
    load(ref) {
      if (closed) return Promise.reject(closedError(ref));
      loading ??= (async () => {
        let sdk: Sdk;
        try {
          sdk = await importOptional(
            settings.packageName,
            `the ${settings.name} provider`,
            settings.importSdk,
          );
        } catch (err) {
          loading = undefined;
          throw err;
        }
        if (settings.injected) return { sdk, client: settings.injected };
        if (closed) throw closedError(ref);
        owned = settings.build(sdk);
        return { sdk, client: owned };
      })();
      return loading;
    },
    async close() {
      if (closed) return;
      closed = true;
      // A client handed in belongs to the caller; only one built here is torn down.
      await loading?.catch(() => undefined);
      owned?.destroy();
      owned = undefined;
    },
  };
}

const TRANSIENT_NAMES = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'InternalServiceError',
  'InternalServerError',
  'InternalFailure',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  // The default chain fetches fresh credentials on the next call.
  'ExpiredTokenException',
]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * Names every AWS service may answer with, and the SDK's own: with a service's own names (see `awsErrorNames`)
 * the closed set an AWS provider shows. The AWS common errors are listed in the API reference of each service.
 */
const COMMON_NAMES = [
  ...TRANSIENT_NAMES,
  'AccessDeniedException',
  'ValidationException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignature',
  'InvalidClientTokenId',
  'MissingAuthenticationToken',
  'MissingAuthenticationTokenException',
  'SignatureDoesNotMatch',
  'RequestExpired',
  'NotAuthorized',
  'OptInRequired',
  'InvalidAction',
  'UnknownOperationException',
  'MalformedQueryString',
  'CredentialsProviderError',
  'AbortError',
  'Error',
  'TypeError',
  'RangeError',
];

/** What the messages say for a name outside the closed set: the server wrote it, so it is not shown. */
export const UNRECOGNISED = 'an unrecognised error';

/** The closed set of names an AWS provider shows: the common ones and the service's own. */
export function awsErrorNames(serviceNames: Iterable<string>): ReadonlySet<string> {
  return new Set([...COMMON_NAMES, ...serviceNames]);
}

/**
 * The provider's own credentials, for removal from whatever is kept of an error: those given as the
 * `credentials` option, and those its signed requests carried (the access key id in `Authorization`, the
 * session token in `x-amz-security-token`), read from the request after signing. That covers credentials from
 * the SDK's default chain too, without asking the chain again (which may be I/O). The secret key never travels.
 */
export class AwsCredentialTrail {
  private readonly given: string[] = [];
  private readonly sent: string[] = [];

  constructor(credentials: unknown) {
    if (typeof credentials === 'object' && credentials !== null) {
      const c = credentials as Record<string, unknown>;
      for (const value of [c.accessKeyId, c.secretAccessKey, c.sessionToken]) {
        if (typeof value === 'string' && value !== '') this.given.push(value);
      }
    }
  }

  get values(): readonly string[] {
    return [...this.given, ...this.sent];
  }

  /** `command` with a step that notes the credentials its signed request carries; returns `command`. */
  watch<C>(command: C): C {
    const stack = (command as { middlewareStack?: MiddlewareStackLike } | null)?.middlewareStack;
    stack?.add(
      (next) => async (args) => {
        this.note(args.request);
        return next(args);
      },
      // The deserialize step runs inside finalizeRequest, where each attempt is signed.
      { step: 'deserialize', name: 'tlsSecretsCredentialTrail', override: true },
    );
    return command;
  }

  private note(request: unknown): void {
    const headers = (request as { headers?: Record<string, unknown> } | null)?.headers ?? {};
    const found: string[] = [];
    for (const [name, value] of Object.entries(headers)) {
      if (typeof value !== 'string') continue;
      const lower = name.toLowerCase();
      if (lower === 'x-amz-security-token') found.push(value);
      if (lower === 'authorization') {
        const id = /Credential=([^/,\s]+)\//.exec(value)?.[1];
        if (id) found.push(id);
      }
    }
    for (const value of found) {
      if (this.given.includes(value) || this.sent.includes(value)) continue;
      // The last few: a late answer may echo credentials that were replaced since.
      if (this.sent.push(value) > 8) this.sent.shift();
    }
  }
}

type Handler = (args: { request?: unknown }) => Promise<unknown>;
interface MiddlewareStackLike {
  add(
    middleware: (next: Handler) => Handler,
    options: { step: 'deserialize'; name: string; override: boolean },
  ): void;
}

export interface AwsLikeError {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown };
}

export interface AwsErrorParts {
  /** The name as the SDK set it, from the server's answer: for mapping only, never for a message. */
  name: string;
  /** The name to put in a message: `name` if in the closed set, else `an unrecognised error`. */
  shown: string;
  /** The SDK's message, from the server: for mapping only (`/kms/i`), never kept. */
  message: string;
  status: number | undefined;
  /** What is kept as the cause (a ForeignCause): closed-set name, HTTP status, a UUID request id, no credential. */
  cause: unknown;
  e: AwsLikeError;
}

/**
 * An SDK error taken apart. A server (or a proxy in front of it) writes the error's name (`__type`,
 * `x-amzn-errortype`), its request id (`x-amzn-requestid`) and the fields the SDK copies onto the error
 * (`code`, `message`): what is shown is limited to the closed set of names, a UUID request id, no code from
 * the answer, and no text holding the provider's own credentials.
 */
export function awsErrorParts(
  err: unknown,
  names: ReadonlySet<string>,
  credentials: readonly string[],
): AwsErrorParts {
  const e = (typeof err === 'object' && err !== null ? err : {}) as AwsLikeError;
  const name = typeof e.name === 'string' ? e.name : 'Error';
  const status = typeof e.$metadata?.httpStatusCode === 'number' ? e.$metadata.httpStatusCode : undefined;
  const answered = status !== undefined || e.$fault !== undefined;
  const cause = safeCause(err, { names, secrets: credentials, codeFromServer: answered });
  const shown = (cause as { name?: unknown } | undefined)?.name;
  return {
    e,
    name,
    shown: typeof shown === 'string' && names.has(shown) ? shown : UNRECOGNISED,
    message: typeof e.message === 'string' ? e.message : '',
    status,
    cause,
  };
}

/**
 * What every AWS service means alike: aborts, missing credentials or region, throttling, 5xx, network
 * failures. `fetchError(reason, transient)` builds the provider's own FetchError. Service-specific names are
 * mapped by the caller first. Mapping reads the real name; messages show `parts.shown` only.
 */
export function genericAwsError(
  parts: AwsErrorParts,
  signal: AbortSignal | undefined,
  fetchError: (reason: string, transient: boolean) => FetchError,
): FetchError {
  const { e, name, shown, message, status } = parts;
  if (signal?.aborted || name === 'AbortError') return fetchError('request aborted', true);
  if (name === 'CredentialsProviderError') {
    return fetchError('no AWS credentials found by the SDK default chain (CredentialsProviderError)', false);
  }
  if (name === 'TimeoutError') return fetchError('request timed out (TimeoutError)', true);
  if (message === 'Region is missing') {
    return fetchError('no region configured: set the region option or AWS_REGION', false);
  }
  if (name === 'ExpiredTokenException') {
    return fetchError(
      'credentials expired (ExpiredTokenException): the SDK fetches fresh ones on the next call',
      true,
    );
  }
  if (TRANSIENT_NAMES.has(name)) return fetchError(`service unavailable or throttling (${name})`, true);
  const withStatus = status === undefined ? shown : `${shown}, HTTP ${status}`;
  if (e.$fault === 'server' || (status !== undefined && status >= 500)) {
    return fetchError(`server error (${withStatus})`, true);
  }
  if (typeof e.code === 'string' && NETWORK_CODES.has(e.code))
    return fetchError(`network error (${e.code})`, true);
  if (e.$fault === 'client') {
    return fetchError(`request refused (${shown === UNRECOGNISED ? withStatus : shown})`, false);
  }
  // No AWS fault and no known code: a connection or runtime failure, worth another try.
  return fetchError(`request failed (${shown})`, true);
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function eachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * Throttling as the SDK's own retry classification sees it (@smithy service-error-classification,
 * `isThrottlingError`): a throttling name, HTTP 429, or the `throttling` retry trait.
 */
const THROTTLING_NAMES = new Set([
  'BandwidthLimitExceeded',
  'EC2ThrottledException',
  'LimitExceededException',
  'PriorRequestNotComplete',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ThrottledException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TransactionInProgressException',
]);

export function isThrottling(err: unknown): boolean {
  const e = (typeof err === 'object' && err !== null ? err : {}) as AwsLikeError & {
    $retryable?: { throttling?: unknown };
  };
  return (
    e.$metadata?.httpStatusCode === 429 ||
    (typeof e.name === 'string' && THROTTLING_NAMES.has(e.name)) ||
    e.$retryable?.throttling === true
  );
}

/**
 * A throttled answer, passed through the SDK's retry step as an error it does not retry (no throttling
 * name, status or trait): the caller has a better answer than retrying the same quota.
 */
export class ThrottledAnswer extends Error {
  constructor(readonly throttled: unknown) {
    super('throttled');
    this.name = 'ThrottledAnswer';
  }
}

/**
 * `command` with a step inside the SDK's retry loop that turns a throttled attempt into a ThrottledAnswer:
 * one attempt, however many `maxAttempts` the client has, and no retry-quota token spent. Returns `command`.
 */
export function failFastOnThrottling<C>(command: C): C {
  const stack = (command as { middlewareStack?: RetryStackLike } | null)?.middlewareStack;
  stack?.add(
    (next) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        throw isThrottling(err) ? new ThrottledAnswer(err) : err;
      }
    },
    // finalizeRequest at low priority runs inside the retry middleware (same step, high priority).
    { step: 'finalizeRequest', priority: 'low', name: 'tlsSecretsFailFastOnThrottling', override: true },
  );
  return command;
}

interface RetryStackLike {
  add(
    middleware: (next: Handler) => Handler,
    options: { step: 'finalizeRequest'; priority: 'low'; name: string; override: boolean },
  ): void;
}

/**
 * The least spacing a throttled answer sets (4 reads/s); successes shrink it back to none below half of it.
 * A throttled fleet's retries then start at 4 per instance and second, not 10: with 100 ms, the second after a
 * fleet's start was still above the quota (bench section 7).
 */
const PACE_MIN_MS = 250;
/**
 * The most: 2 reads/s per provider. A fleet of 5,000 instances so paced asks for the account's 10,000/s
 * (GetSecretValue's quota).
 */
const PACE_MAX_MS = 500;
/** After a throttled answer, reads that get through leave the spacing as it is for this long. */
const PACE_HOLD_MS = 1_000;
/**
 * Each read that gets through shrinks the spacing by this factor: about 14 reads halve it. The shrink is a
 * rate's growth, and every instance a fleet's start throttled starts growing within the same second: by 10 %
 * a read, the fleet was back above the quota 6 s after its start (bench section 7, 25 secrets each); by 7 %,
 * once each read's turn came one spacing after the last start, in 5 runs of 5.
 */
const PACE_SHRINK = 0.95;

/**
 * Spacing between the starts of one provider's reads, set by throttled answers: none until the store
 * throttles one, then doubled by each throttled answer (from 250 ms up to 500 ms) and shrunk by 5 % by each
 * read that gets through. A fleet of instances reading many secrets at once (a deploy, 25 secrets each)
 * would otherwise keep offering the account's quota many times what it allows, every instance retrying on
 * its own backoff; paced, each offers about what the quota has room for. The wait is spread (half to one and
 * a half spacing) so that instances throttled together do not ask again together. Reads take their turns in
 * order, each one spacing (as it is when the read goes) after the last start. A first attempt while no other
 * read is under way is not held: a cycle's first read after a throttling outage goes out at once.
 */
export class ReadPacer {
  #spacingMs = 0;
  #active = 0;
  #throttledAt = Number.NEGATIVE_INFINITY;
  /** When the last read started. */
  #lastStartAt = Number.NEGATIVE_INFINITY;
  /** Settles once every read waiting for its turn so far has started (or given up): turns go in order. */
  #queue: Promise<void> = Promise.resolve();

  constructor(private readonly random: () => number = Math.random) {}

  /** The current spacing in ms (0: unpaced). */
  get spacingMs(): number {
    return this.#spacingMs;
  }

  /**
   * One read in its turns: `send` (whose command must go through failFastOnThrottling, so that the SDK does
   * not retry a throttled attempt on its own backoff) is sent again after each throttled answer, up to
   * `attempts` sends in all; then the last throttled error is thrown. Any other error is thrown at once.
   */
  async send<T>(attempts: number, signal: AbortSignal, send: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.read(attempt, signal, send);
      } catch (err) {
        if (!(err instanceof ThrottledAnswer)) throw err;
        if (attempt >= attempts || signal.aborted) throw err.throttled;
      }
    }
  }

  /**
   * Runs attempt `attempt` (1 for the first) of one read in its turn; a throttled answer (ThrottledAnswer)
   * doubles the spacing, an answer shrinks it. Rejects with the signal's reason if aborted while waiting.
   */
  async read<T>(attempt: number, signal: AbortSignal, send: () => Promise<T>): Promise<T> {
    this.#active += 1;
    try {
      if (this.#spacingMs > 0 && !(attempt === 1 && this.#active === 1)) await this.#turn(signal);
      else this.#lastStartAt = Date.now();
      const answer = await send();
      // Held for a second after a throttled answer: the reads then under way were sent at the old rate.
      if (Date.now() - this.#throttledAt >= PACE_HOLD_MS) {
        const next = this.#spacingMs * PACE_SHRINK;
        this.#spacingMs = next < PACE_MIN_MS / 2 ? 0 : next;
      }
      return answer;
    } catch (err) {
      if (err instanceof ThrottledAnswer) {
        this.#throttledAt = Date.now();
        this.#spacingMs = Math.min(PACE_MAX_MS, Math.max(PACE_MIN_MS, this.#spacingMs * 2));
      }
      throw err;
    } finally {
      this.#active -= 1;
    }
  }

  /**
   * Waits for the reads queued before this one to start, then for the spacing in force when it goes (not
   * when this read queued or began to wait: a throttled answer meanwhile slows it too) since the last start.
   */
  async #turn(signal: AbortSignal): Promise<void> {
    const ahead = this.#queue;
    let started!: () => void;
    this.#queue = new Promise((resolve) => {
      started = resolve;
    });
    try {
      await afterOrAbort(ahead, signal);
      // Checked again after each wait: a throttled answer that came meanwhile (another read's) widened it.
      const spread = 0.5 + this.random();
      for (;;) {
        const wait = this.#lastStartAt + this.#spacingMs * spread - Date.now();
        if (wait <= 0) break;
        await delay(wait, signal);
      }
      this.#lastStartAt = Date.now();
    } finally {
      // A read that gave up before its turn hands the turn on only when the reads ahead of it have started.
      void ahead.then(started);
    }
  }
}

/**
 * At most `limit` calls in flight; the others wait in order. For a provider whose every call (reads, batches,
 * version checks) spends one small quota of the account, so that a refresh of many references does not
 * send them all at once before the store has said anything.
 */
export class InFlightLimit {
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(call: () => Promise<T>): Promise<T> {
    if (this.#active >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#active += 1;
    try {
      return await call();
    } finally {
      const next = this.#waiting.shift();
      // The slot passes to the next caller as it is: the count stays.
      if (next) next();
      else this.#active -= 1;
    }
  }
}

/** Resolves when `ahead` does (it never rejects), or rejects with the signal's reason on abort first. */
function afterOrAbort(ahead: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    void ahead.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** `ms` on the system clock (unref'd, as every timer here), ended early by `signal`. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      timer.cancel();
      reject(signal.reason);
    };
    const timer = after(systemClock, ms, () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
