/**
 * One error module. Every error names provider, field and reference where known, keeps `cause`, and never
 * carries secret bytes: messages are built here from names and reasons only.
 */

export type ErrorCode =
  | 'NOT_FOUND'
  | 'FETCH_FAILED'
  | 'INVALID_MATERIAL'
  | 'CONFIGURATION'
  | 'CERTIFICATE_EXPIRED'
  | 'CLOSED'
  | 'LISTENER_FAILED';

export interface ErrorContext {
  /** ConnectionOptions field, e.g. `cert` or `key[1].passphrase`. */
  readonly field?: string;
  /** Reference description `<provider>:<id>`, or `literal`. */
  readonly ref?: string;
  readonly provider?: string;
  readonly cause?: unknown;
}

/** Marks the package's errors across copies of it (its ESM and CommonJS builds each have their own classes). */
const ERROR_BRAND = Symbol.for('tls-secrets.error');

export class TlsSecretsError extends Error {
  /**
   * The code of every instance of this class; undefined on the base class (any code). A getter, not a static
   * field: the CommonJS build lowers static fields into renamed class expressions, and every error's `name`
   * read `_class2`.
   */
  protected static get classCode(): ErrorCode | undefined {
    return undefined;
  }

  /**
   * `instanceof` holds across the ESM and CommonJS builds: a provider built on one and a resolver on the
   * other (a CommonJS adapter loaded by the ESM CLI) each see the other's errors as their own. Without it a
   * foreign not-found or denial was wrapped as a transient "fetch failed", its reason lost, and retried.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class on the right of instanceof (a subclass too)
    // biome-ignore lint/complexity/noUselessThisAlias: one place that says why `this` is used here
    const target = this;
    if (Function.prototype[Symbol.hasInstance].call(target, value)) return true;
    if (typeof value !== 'object' || value === null || !(ERROR_BRAND in value)) return false;
    const code = (target as unknown as { classCode: ErrorCode | undefined }).classCode;
    return code === undefined || (value as { code?: unknown }).code === code;
  }

  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly ref: string | undefined;
  readonly provider: string | undefined;

  constructor(code: ErrorCode, reason: string, context: ErrorContext = {}) {
    reason = withoutUrlCredentials(reason);
    const where = [context.field && `field ${context.field}`, context.ref && `ref ${context.ref}`]
      .filter(Boolean)
      .join(', ');
    // Every cause goes through the allowlist, whoever builds the error: no provider can forget it.
    const cause = safeCause(context.cause);
    super(where ? `${reason} (${where})` : reason, cause === undefined ? {} : { cause });
    this.name = new.target.name;
    this.code = code;
    this.field = context.field;
    this.ref = context.ref;
    this.provider = context.provider;
  }

  /** Names the field on an error raised where only the reference was known (inside a provider). */
  withField(field: string): this {
    if (this.field !== undefined) return this;
    const annotated = Object.create(Object.getPrototypeOf(this)) as this;
    Object.assign(annotated, this, {
      field,
      message: `${this.message.replace(/ \((?:field|ref) [^)]*\)$/, '')} (${[`field ${field}`, this.ref && `ref ${this.ref}`].filter(Boolean).join(', ')})`,
    });
    Object.defineProperty(annotated, 'stack', {
      value: this.stack?.replace(this.message, annotated.message),
      configurable: true,
      writable: true,
    });
    if (this.cause !== undefined)
      Object.defineProperty(annotated, 'cause', { value: this.cause, configurable: true, writable: true });
    return annotated;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, field: this.field, ref: this.ref };
  }
}

Object.defineProperty(TlsSecretsError.prototype, ERROR_BRAND, { value: true });

/** The store answered explicitly that the secret (or the version asked for) does not exist. */
export class SecretNotFoundError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'NOT_FOUND';
  }
  constructor(reason: string, context: ErrorContext = {}) {
    super('NOT_FOUND', reason, context);
  }
}

/**
 * The store could not be read: network, permission, throttling, sealed, 5xx. `transient` says retry helps;
 * `retryAfterMs` is how long the store asked to be left alone (a 429's `Retry-After`), when it said so.
 */
export class FetchError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'FETCH_FAILED';
  }
  readonly transient: boolean;
  readonly retryAfterMs: number | undefined;
  constructor(reason: string, context: ErrorContext & { transient?: boolean; retryAfterMs?: number } = {}) {
    super('FETCH_FAILED', reason, context);
    this.transient = context.transient ?? true;
    this.retryAfterMs = context.retryAfterMs;
  }
}

/** The material was fetched but is unusable: it is never swapped in. */
export class InvalidMaterialError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'INVALID_MATERIAL';
  }
  constructor(reason: string, context: ErrorContext = {}) {
    super('INVALID_MATERIAL', reason, context);
  }
}

/** Options or spec that cannot work; thrown when they are given, not at the first handshake. */
export class ConfigurationError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'CONFIGURATION';
  }
  constructor(reason: string, context: ErrorContext = {}) {
    super('CONFIGURATION', reason, context);
  }
}

/** The only bundle available is past its certificate's notAfter (plus `maxStaleMs`). */
export class CertificateExpiredError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'CERTIFICATE_EXPIRED';
  }
  readonly notAfter: Date;
  constructor(notAfter: Date, context: ErrorContext = {}) {
    super('CERTIFICATE_EXPIRED', `certificate expired at ${notAfter.toISOString()}`, context);
    this.notAfter = notAfter;
  }
}

/**
 * The one error for anything used after its `close()`: a resolver, a provider, an HTTP/2 client. `what` names
 * it (`resolver`, `vault provider`); a closed thing stays closed, so retrying never helps.
 */
export class ClosedError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'CLOSED';
  }
  constructor(what: string, context: Omit<ErrorContext, 'cause'> = {}) {
    super('CLOSED', `${what} is closed`, context);
  }
}

/**
 * An application's event listener threw. Reported as an `error` event (a process warning when nobody
 * listens); the resolver went on: rotation, servers and agents do not depend on user listeners.
 */
export class ListenerError extends TlsSecretsError {
  protected static override get classCode(): ErrorCode {
    return 'LISTENER_FAILED';
  }
  /** The event whose listener threw, e.g. `rotate`. */
  readonly event: string;
  /** The listener function's name, or `anonymous`. */
  readonly listener: string;
  constructor(event: string, listener: string, cause: unknown) {
    const name = listener || 'anonymous';
    super('LISTENER_FAILED', `a '${event}' listener (${name}) threw; the resolver went on`, { cause });
    this.event = event;
    this.listener = name;
  }
}

/**
 * A cause whose text the library wrote, or cleaned of credentials and bounded (a store's own error strings):
 * safeCause keeps it as it is. Providers extend it for the answers they scrub (VaultResponseError).
 */
export class CleanCause extends Error {}

/**
 * Removes the user info (`user:password@`) of every URL in `text`, up to the last `@` before whitespace, so a
 * password holding `@` or `/` goes too. Applied to every message of the library's errors and every CLI line.
 */
export function withoutUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)\S*@/gi, '$1');
}

/**
 * What is left of a foreign error after safeCause: its name, code, HTTP status and request id, and a message
 * only where the error's kind is known to describe the failure rather than quote its input.
 */
export class ForeignCause extends Error {
  readonly code: string | number | undefined;
  readonly statusCode: number | undefined;
  readonly requestId: string | undefined;
  constructor(
    name: string,
    message: string,
    details: { code?: string | number; statusCode?: number; requestId?: string },
  ) {
    super(message);
    this.name = name;
    this.code = details.code;
    this.statusCode = details.statusCode;
    this.requestId = details.requestId;
    // The stack of the foreign error is not kept: its first line is its message.
    this.stack = `${name}: ${message}`;
  }
}

/**
 * What a foreign error may show, by shape: shapes that cannot carry a token, a key or their hex/base64. An
 * error's name is letters only (`InternalFailure`, `AxiosError`); a code is an errno (`ECONNREFUSED`) or an
 * upper-case code in short segments (`ERR_OSSL_EVP_BAD_DECRYPT`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`); a
 * request id is a UUID, which is what AWS JSON services send. A server or a proxy that echoes the request
 * into a name, a code or a request id gets nothing of it shown.
 */
const NAME = /^[A-Z][A-Za-z]{1,63}$/;
const CODE = /^(?=.{2,64}$)(?:E[A-Z]{2,20}|[A-Z][A-Z0-9]{0,11}(?:_[A-Z0-9]{1,12}){1,10})$/;
const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** A name outside the closed set a caller shows: `ForeignCause.name` says only that. */
export const UNRECOGNISED_NAME = 'UnrecognisedError';
/** The shortest piece of a credential looked for in kept text. */
const FRAGMENT = 12;

const pick = (value: unknown, shape: RegExp): string | undefined =>
  typeof value === 'string' && shape.test(value) ? value : undefined;

/**
 * Whether `text` holds one of `secrets`, or a piece of one at least 12 characters long, compared without
 * case. Secrets shorter than 8 characters are not looked for: they would match ordinary words.
 */
/**
 * The shortest secret looked for. Dev tokens are short (`root`, `roottok`): an echo of one went through
 * when this was 8. Below 4, chance matches in ordinary text would withhold too much to be useful.
 */
const MIN_SECRET = 4;

export function holdsSecret(text: string, secrets: Iterable<string>): boolean {
  const haystack = text.toLowerCase();
  let pieces: Set<string> | undefined;
  for (const secret of secrets) {
    if (typeof secret !== 'string' || secret.length < MIN_SECRET) continue;
    const needle = secret.toLowerCase();
    if (haystack.includes(needle)) return true;
    if (needle.length < FRAGMENT) continue;
    // Every 12-character piece of the text, once: each piece of a secret is then one lookup.
    if (pieces === undefined) {
      pieces = new Set();
      for (let at = 0; at + FRAGMENT <= haystack.length; at++) pieces.add(haystack.slice(at, at + FRAGMENT));
    }
    for (let at = 0; at + FRAGMENT <= needle.length; at++) {
      if (pieces.has(needle.slice(at, at + FRAGMENT))) return true;
    }
  }
  return false;
}

/** How a caller narrows what safeCause keeps of an error from its own kind of server. */
export interface CauseFilter {
  /** The caller's own credentials: a name, code, request id or message holding one (or a piece) is not kept. */
  readonly secrets?: Iterable<string>;
  /** The closed set of names the caller shows: any other name becomes `UnrecognisedError`. */
  readonly names?: ReadonlySet<string>;
  /** The error's `code` was copied from a server's answer (the AWS SDK copies body fields): not kept. */
  readonly codeFromServer?: boolean;
}

function statusOf(err: Record<string, unknown>): number | undefined {
  const metadata = err.$metadata as { httpStatusCode?: unknown } | undefined;
  const response = err.response as { status?: unknown; statusCode?: unknown } | undefined;
  for (const value of [
    metadata?.httpStatusCode,
    err.statusCode,
    err.status,
    response?.statusCode,
    response?.status,
  ]) {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 100 && value <= 599) return value;
  }
  return undefined;
}

/**
 * Errors whose message describes the failure, not the input: OpenSSL's (`error:1E08010C:DECODER
 * routines::unsupported`) and system calls' (`ENOENT: no such file or directory, open '<path>'`, a path the
 * reference already names). Node's own ERR_* argument errors are not among them: they quote the value received.
 */
function describesFailureOnly(err: Record<string, unknown>): boolean {
  const code = typeof err.code === 'string' ? err.code : '';
  if (code.startsWith('ERR_OSSL_') || Array.isArray(err.opensslErrorStack)) return true;
  if (typeof err.library === 'string' && typeof err.reason === 'string') return true;
  return typeof err.syscall === 'string' && typeof err.errno === 'number' && /^E[A-Z]+$/.test(code);
}

/**
 * A foreign error made safe to keep as `cause`, for every provider: an allowlist, not a blocklist. SDK and
 * HTTP client errors carry the request they failed on (the AWS SDK's hidden `$response` holds the signed
 * request with its `x-amz-security-token`; axios's `config` holds the Vault token header and login bodies),
 * and a 5xx body that echoes the request puts it in the message. So a foreign error keeps only its name,
 * code, HTTP status and request id, each only in a shape that cannot carry a credential (see NAME, CODE,
 * REQUEST_ID), and its message only when its kind is known not to quote input; everything else (properties,
 * nested causes, the stack) is dropped. A provider narrows it further with `filter`: its closed set of names,
 * its own credentials, and whether the code came from the server. JSON.parse's SyntaxError quotes the text
 * it failed on and keeps only its name. The library's own errors (TlsSecretsError, CleanCause) pass as they are.
 */
export function safeCause(err: unknown, filter: CauseFilter = {}): unknown {
  if (err === undefined || err instanceof TlsSecretsError || err instanceof CleanCause) return err;
  if (err instanceof ForeignCause) return err;
  if (err instanceof SyntaxError) return new ForeignCause('SyntaxError', 'input is not valid JSON', {});
  const e = (typeof err === 'object' && err !== null ? err : {}) as Record<string, unknown>;
  const secrets = [...(filter.secrets ?? [])];
  const clean = (text: string | undefined) =>
    text !== undefined && secrets.length > 0 && holdsSecret(text, secrets) ? undefined : text;
  const shaped = clean(pick(e.name, NAME));
  const name =
    shaped === undefined
      ? err instanceof Error
        ? filter.names
          ? UNRECOGNISED_NAME
          : 'Error'
        : typeof err
      : filter.names && !filter.names.has(shaped)
        ? UNRECOGNISED_NAME
        : shaped;
  const code = filter.codeFromServer
    ? undefined
    : typeof e.code === 'number' && Number.isInteger(e.code)
      ? e.code
      : clean(pick(e.code, CODE));
  const statusCode = statusOf(e);
  const metadata = e.$metadata as { requestId?: unknown } | undefined;
  const requestId = clean(pick(metadata?.requestId, REQUEST_ID) ?? pick(e.requestId, REQUEST_ID));
  const described =
    describesFailureOnly(e) && typeof e.message === 'string' ? clean(e.message.slice(0, 300)) : undefined;
  const message =
    described !== undefined
      ? described
      : [
          name,
          code !== undefined && code !== name ? `code ${code}` : undefined,
          statusCode === undefined ? undefined : `HTTP ${statusCode}`,
          requestId === undefined ? undefined : `request id ${requestId}`,
        ]
          .filter(Boolean)
          .join(', ');
  return new ForeignCause(name, message, {
    ...(code === undefined ? {} : { code }),
    ...(statusCode === undefined ? {} : { statusCode }),
    ...(requestId === undefined ? {} : { requestId }),
  });
}
