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

export class TlsSecretsError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly ref: string | undefined;
  readonly provider: string | undefined;

  constructor(code: ErrorCode, reason: string, context: ErrorContext = {}) {
    const where = [context.field && `field ${context.field}`, context.ref && `ref ${context.ref}`]
      .filter(Boolean)
      .join(', ');
    super(
      where ? `${reason} (${where})` : reason,
      context.cause === undefined ? {} : { cause: context.cause },
    );
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

/** The store answered explicitly that the secret (or the version asked for) does not exist. */
export class SecretNotFoundError extends TlsSecretsError {
  constructor(reason: string, context: ErrorContext = {}) {
    super('NOT_FOUND', reason, context);
  }
}

/** The store could not be read: network, permission, throttling, sealed, 5xx. `transient` says retry helps. */
export class FetchError extends TlsSecretsError {
  readonly transient: boolean;
  constructor(reason: string, context: ErrorContext & { transient?: boolean } = {}) {
    super('FETCH_FAILED', reason, context);
    this.transient = context.transient ?? true;
  }
}

/** The material was fetched but is unusable: it is never swapped in. */
export class InvalidMaterialError extends TlsSecretsError {
  constructor(reason: string, context: ErrorContext = {}) {
    super('INVALID_MATERIAL', reason, context);
  }
}

/** Options or spec that cannot work; thrown when they are given, not at the first handshake. */
export class ConfigurationError extends TlsSecretsError {
  constructor(reason: string, context: ErrorContext = {}) {
    super('CONFIGURATION', reason, context);
  }
}

/** The only bundle available is past its certificate's notAfter (plus `maxStale`). */
export class CertificateExpiredError extends TlsSecretsError {
  readonly notAfter: Date;
  constructor(notAfter: Date, context: ErrorContext = {}) {
    super('CERTIFICATE_EXPIRED', `certificate expired at ${notAfter.toISOString()}`, context);
    this.notAfter = notAfter;
  }
}

export class ResolverClosedError extends TlsSecretsError {
  constructor() {
    super('CLOSED', 'resolver is closed');
  }
}

/**
 * An application's event listener threw. Reported as an `error` event (a process warning when nobody
 * listens); the resolver went on: rotation, servers and agents do not depend on user listeners.
 */
export class ListenerError extends TlsSecretsError {
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
 * A foreign error made safe to keep as `cause`. JSON.parse in Node 20 quotes the text it failed on, so
 * syntax errors keep only their name. HTTP client errors (axios, under node-vault) carry the request they
 * failed on, headers and body included (the Vault token, an AppRole secret_id): they keep name, code and
 * message only. OpenSSL and system errors describe the failure, not the input, and pass through.
 */
export function safeCause(err: unknown): unknown {
  if (err instanceof SyntaxError) {
    const clean = new SyntaxError('input is not valid JSON');
    clean.stack = `SyntaxError: ${clean.message}`;
    return clean;
  }
  if (err instanceof Error && ['config', 'request', 'response'].some((key) => key in err)) {
    const { code } = err as { code?: unknown };
    const clean = new Error(err.message);
    clean.name = err.name;
    if (typeof code === 'string') Object.assign(clean, { code });
    clean.stack = `${clean.name}: ${clean.message}`;
    return clean;
  }
  return err;
}
