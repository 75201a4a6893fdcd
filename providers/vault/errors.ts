/**
 * Maps what node-vault rejects with onto the library's errors. node-vault rejects with an ApiResponseError
 * (`response.statusCode`, `response.body`) for every status but 200/204, and with a raw AxiosError for network
 * failures. The AxiosError carries the request config, so the token header and login bodies: it never
 * becomes a cause as it is.
 */
import {
  CleanCause,
  FetchError,
  holdsSecret,
  SecretNotFoundError,
  safeCause,
  TlsSecretsError,
} from '../../src/errors.js';

export interface ErrorWhere {
  provider: string;
  /** `<provider>:<id>[#field]`, or undefined for provider-level calls such as login. */
  ref: string | undefined;
  /** What was being done, e.g. `read secret/data/app`. Paths only, never values. */
  action: string;
  requestTimeoutMs: number;
  /** The provider's own credentials (tokens, AppRole ids, the Kubernetes JWT), kept out of wire text. */
  credentials: () => readonly string[];
  /** Vault refused auth/token/lookup-self to the (static) token too: a 403 then names the token. */
  tokenRefused?: boolean;
}

/** Tokens as Vault and OpenBao mint them: service (`hvs.`, `s.`), batch (`hvb.`, `b.`), recovery (`hvr.`, `r.`). */
const TOKEN_SHAPED = /(?<![A-Za-z0-9])(?:hv[sbr]|[sbr])\.[A-Za-z0-9_-]{16,}/g;
/** AppRole secret_ids and accessors are UUIDs; an error string needs none of them. */
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
/** A JWT, such as a Kubernetes service-account token sent to a login. */
const JWT = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;
/** The value after a credential's name, as a header, a query or a JSON body would spell it. */
const NAMED_VALUE =
  /((?:x-vault-token|authorization|secret_id|secret-id|client_token|jwt|token|password|role_id)["']?\s*[:=]\s*["']?)[^\s"',;}&]+/gi;
const CONTROL = /\p{Cc}+/gu;
/** Enough for Vault's own reasons ("permission denied", "invalid role or secret ID"). */
const MAX_ERROR_CHARS = 200;
const MAX_ERRORS = 3;

/**
 * How a credential may come back in an echo: as sent, URL-encoded, base64 and base64url, hex, `\\uXXXX`
 * escapes, and reversed. Base64 inside a larger blob (a request dump) depends on where the credential falls
 * in it: at a byte offset of 1 or 2 (mod 3) its characters are not those of its own encoding. So each offset
 * gives a form: the characters that only the credential's bytes decide, its neighbours' cut off.
 */
function echoForms(credential: string): string[] {
  const bytes = Buffer.from(credential);
  const aligned = (offset: number, encoding: 'base64' | 'base64url') =>
    Buffer.concat([Buffer.alloc(offset), bytes])
      .toString(encoding)
      .replace(/=+$/, '')
      .slice(Math.ceil((8 * offset) / 6), Math.floor((8 * (offset + bytes.length)) / 6));
  return [
    credential,
    encodeURIComponent(credential),
    ...[0, 1, 2].flatMap((offset) => [aligned(offset, 'base64'), aligned(offset, 'base64url')]),
    bytes.toString('hex'),
    [...credential].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join(''),
    [...credential].reverse().join(''),
    // Letters rotated (ROT13 and every other shift): a token with separators has no run long enough to look
    // encoded, so its rotations are looked for by name.
    ...Array.from({ length: 25 }, (_, shift) => rotated(credential, shift + 1)),
  ];
}

const rotated = (text: string, shift: number) =>
  text.replace(/[a-z]/gi, (c) => {
    const base = c <= 'Z' ? 65 : 97;
    return String.fromCharCode(((c.charCodeAt(0) - base + shift) % 26) + base);
  });

/**
 * Text that carries encoded data rather than words, whatever it might encode: a run of 20 letters or digits
 * (a token in base32, base64 or hex, or transformed: ROT13, doubled, fullwidth), six escapes in a row
 * (`\xHH`, `\uHHHH`, `\u{…}`, `&#…;`, `%HH`, `0xHH`, `\OOO`), eight hex pairs or decimal codes in a row
 * (`43:41:4e…`, `67,65,78…`), or a word of 24 characters or more holding three kinds of symbol a path does
 * not (Ascii85). Vault's own messages hold none of these (their longest words are English and paths), so such
 * text is withheld whole: the checks for each credential's own forms cannot list every encoding a proxy
 * might use.
 */
const SEP = '[\\s,;:]*';
const ENCODED = [
  /[\p{L}\p{N}]{20,}/u,
  // Escapes, each shape six in a row, with or without separators between them.
  ...[
    '\\\\x[0-9a-f]{2}',
    '\\\\u\\{?[0-9a-f]{2,6}\\}?',
    '&#x?[0-9a-f]{1,7};',
    '%(?:25)*[0-9a-f]{2}',
    '0x[0-9a-f]{1,8}',
    '\\\\[0-7]{1,3}',
  ].map((shape) => new RegExp(`(?:${shape}${SEP}){6,}`, 'i')),
  // Hex groups (pairs, UTF-16 code units, words) or decimal codes, eight in a row.
  /(?:\b[0-9a-f]{2,8}\b[\s:.,;-]+){7,}\b[0-9a-f]{2,8}\b/i,
  /(?:\b\d{2,5}\b[\s,;]+){8,}/,
];
const PATH_FREE_SYMBOLS = /[!#$%&()*+;<=>?@[\]^`{|}~\\]/g;
function looksEncoded(text: string): boolean {
  if (ENCODED.some((shape) => shape.test(text))) return true;
  return text
    .split(/\s+/)
    .some((word) => word.length >= 24 && new Set(word.match(PATH_FREE_SYMBOLS) ?? []).size >= 3);
}

/** Letters and digits only: what is left of an echo once a proxy's separators, quotes and spaces go. */
const squeeze = (text: string) => text.replace(/[^A-Za-z0-9]/g, '');

/**
 * Text that came from the wire, made safe to show, one string at a time. The provider's own credentials
 * (in every echo form) are removed wherever they appear, then anything shaped like a Vault token, a UUID (a
 * secret_id), a JWT or the value after a credential's name; control characters go and the rest is bounded.
 */
export function scrubWireText(text: string, credentials: Iterable<string>): string {
  let clean = text;
  for (const credential of credentials) {
    if (credential.length < 4) continue;
    for (const form of new Set(echoForms(credential))) {
      if (form.length >= 4) clean = clean.split(form).join('[redacted]');
    }
  }
  clean = clean
    .replace(TOKEN_SHAPED, '[redacted]')
    .replace(JWT, '[redacted]')
    .replace(UUID, '[redacted]')
    .replace(NAMED_VALUE, '$1[redacted]')
    .replace(CONTROL, ' ');
  return clean.length > MAX_ERROR_CHARS ? `${clean.slice(0, MAX_ERROR_CHARS)}…` : clean;
}

/** Vault's error strings as they may be shown, or `withheld` when they echoed a credential. */
export interface WireErrors {
  readonly errors: readonly string[];
  readonly withheld: boolean;
}

/**
 * Vault's `errors` strings, made safe to show as a whole. Scrubbing each string alone is not enough: a token
 * echoed over two strings (`["… <first half>", "<second half> …"]`) survives it and is whole again in the
 * joined message, and an echo may be encoded or spaced out. So the strings that would be shown are checked
 * together, joined and with every separator removed, for every echo form of every credential and for any
 * piece of one of 12 characters or more, and for anything shaped like encoded data (looksEncoded); if one is
 * there, the text is dropped entirely (Vault's status still says what happened) rather than patched. Otherwise each string is scrubbed of token-shaped text and bounded.
 */
export function wireErrors(errors: readonly string[], credentials: readonly string[]): WireErrors {
  // What could be shown: the first strings, each up to its bound plus a margin for a credential across the cut.
  const shown = errors.slice(0, MAX_ERRORS).map((e) => e.slice(0, MAX_ERROR_CHARS + 100));
  const forms = credentials.filter((c) => c.length >= 4).flatMap(echoForms);
  // Compatibility forms folded (fullwidth `ｔｏｋ` is `tok`): what a reader would decode is what is checked.
  const joined = shown.join('\n').normalize('NFKC');
  if (
    looksEncoded(joined) ||
    holdsSecret(joined, forms) ||
    holdsSecret(squeeze(joined), forms.map(squeeze))
  ) {
    return { errors: [], withheld: true };
  }
  const scrubbed = shown.map((e) => scrubWireText(e, credentials));
  if (!readsLikeVaultProse(scrubbed.join('\n'))) return { errors: [], withheld: true };
  return { errors: scrubbed, withheld: false };
}

/** An English word (lower-case or capitalised), a short acronym, or a number of up to five digits. */
const PROSE_WORD = /^(?:[A-Za-z][a-z]*|[A-Z]{1,5}s?|\d{1,5})$/;

/**
 * Vault's own messages are English and paths made of such words (`permission denied`, `no handler for route
 * "secret/data/app/tls"`). A word in mixed case, letters and digits together, non-ASCII letters or a long run
 * of numbers is how a credential looks in whatever form a proxy echoed it (cut into pieces, rotated, spelled
 * in look-alike letters, encoded): listing forms cannot end, so text that is not such prose is not shown.
 */
function readsLikeVaultProse(text: string): boolean {
  const words = text.split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  return words.every((word) => PROSE_WORD.test(word)) && words.filter((w) => /^\d/.test(w)).length <= 6;
}

/** The Vault answer as a cause: status and Vault's own error strings, scrubbed (see wireErrors) and bounded. */
export class VaultResponseError extends CleanCause {
  readonly statusCode: number;
  constructor(statusCode: number, wire: WireErrors) {
    const detail = wire.withheld
      ? 'error text withheld: it echoed a credential'
      : wire.errors.slice(0, MAX_ERRORS).join('; ');
    super(detail ? `Vault HTTP ${statusCode}: ${detail}` : `Vault HTTP ${statusCode}`);
    this.name = 'VaultResponseError';
    this.statusCode = statusCode;
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'ERR_NETWORK',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);
const TIMEOUT_CODES = new Set(['ETIMEDOUT', 'ECONNABORTED', 'ERR_SOCKET_CONNECTION_TIMEOUT']);

export interface VaultHttpFailure {
  statusCode: number;
  body: unknown;
}

/** The status and body of a Vault HTTP error, or undefined for anything else. */
export function httpFailure(err: unknown): VaultHttpFailure | undefined {
  const response = (err as { response?: { statusCode?: unknown; body?: unknown } } | null)?.response;
  if (response && typeof response.statusCode === 'number') {
    return { statusCode: response.statusCode, body: response.body };
  }
  return undefined;
}

function vaultErrors(body: unknown): string[] {
  const errors = (body as { errors?: unknown } | null | undefined)?.errors;
  return Array.isArray(errors) ? errors.filter((e): e is string => typeof e === 'string') : [];
}

/**
 * KV v2 answers a deleted or destroyed version with 404 and the full envelope, `data.metadata` included; a key
 * or version that never existed gets `{"errors":[]}`.
 */
function notFoundReason(body: unknown): string {
  const metadata = (body as { data?: { metadata?: unknown } } | null | undefined)?.data?.metadata;
  if (typeof metadata !== 'object' || metadata === null) return 'secret not found';
  return (metadata as { destroyed?: unknown }).destroyed === true
    ? 'secret version destroyed'
    : 'secret version deleted';
}

export function isPermissionDenied(err: unknown): boolean {
  return httpFailure(err)?.statusCode === 403;
}

/** The HTTP status behind a mapped error, when Vault answered at all. */
export function statusOf(err: unknown): number | undefined {
  const cause = (err as { cause?: unknown } | null)?.cause;
  return cause instanceof VaultResponseError ? cause.statusCode : undefined;
}

export function timeoutError(where: ErrorWhere, cause?: unknown): FetchError {
  return new FetchError(`Vault request timed out after ${where.requestTimeoutMs} ms (${where.action})`, {
    provider: where.provider,
    ref: where.ref,
    transient: true,
    cause,
  });
}

/**
 * A 200 answer whose body does not parse, or lacks what Vault documents for the call: a body cut off by a
 * proxy, a load balancer's page, a server that is not Vault. It says nothing about the secret (only Vault's
 * explicit 404 means not found), so it is transient; `what` names the field, never the body.
 */
export function malformedAnswer(
  where: Pick<ErrorWhere, 'provider' | 'ref' | 'action'>,
  what: string,
): FetchError {
  return new FetchError(`Vault sent a malformed answer (${where.action}): ${what}`, {
    provider: where.provider,
    ref: where.ref,
    transient: true,
  });
}

/** What node-vault resolves with for a 200 with an empty body (a 204 resolves with '' too): see session.ts. */
export class EmptyAnswer extends Error {
  constructor() {
    super('Vault answered 200 with an empty body');
    this.name = 'EmptyAnswer';
  }
}

/**
 * A `Retry-After` value as milliseconds from `now`: delay-seconds or an HTTP date (RFC 9110). OpenBao and
 * Vault send seconds with a rate-limit quota's 429 when `enable_rate_limit_response_headers` is set.
 */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000;
  // Each HTTP-date form begins with the day's name: anything else (`-5`, `1.5`) is no Retry-After at all,
  // where Date.parse would read `-5` as a year and answer "retry now".
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** What a 403 means when Vault also refused auth/token/lookup-self to a static token (both messages say it). */
export const TOKEN_REFUSED =
  'auth/token/lookup-self: the token is most likely invalid, expired or revoked (or was made without the default policy, which grants lookup-self)';

/** `retryAfterMs`: what the answer's Retry-After asked for (429 only; the resolver caps it). */
export function mapVaultError(err: unknown, where: ErrorWhere, retryAfterMs?: number): TlsSecretsError {
  if (err instanceof TlsSecretsError) return err;
  if (err instanceof EmptyAnswer) return malformedAnswer(where, 'the body is empty');
  const context = { provider: where.provider, ref: where.ref };
  const http = httpFailure(err);
  if (http) {
    const { statusCode, body } = http;
    // Vault's own words decide the mapping (sealed or not); only what wireErrors lets through is shown.
    const errors = vaultErrors(body);
    const cause = new VaultResponseError(statusCode, wireErrors(errors, where.credentials()));
    const fetchError = (reason: string, transient: boolean) =>
      new FetchError(`${reason} (${where.action})`, { ...context, transient, cause });
    if (statusCode === 404) return new SecretNotFoundError(notFoundReason(body), { ...context, cause });
    if (statusCode === 403) {
      return fetchError(
        where.tokenRefused
          ? `Vault denied permission, and also refused ${TOKEN_REFUSED}`
          : 'Vault denied permission',
        false,
      );
    }
    if (statusCode === 429) {
      // Rate-limited: transient, and the next attempt waits for the server's Retry-After when it sent one.
      // The server's figure, as it said it: the resolver waits for it at most retryMaxDelayMs.
      const after =
        retryAfterMs === undefined
          ? ''
          : `, the server asks to retry after ${Math.ceil(retryAfterMs / 1000)} s`;
      return new FetchError(`Vault rate limit exceeded (429)${after} (${where.action})`, {
        ...context,
        transient: true,
        cause,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    }
    if (statusCode === 503) {
      const sealed = errors.some((e) => /sealed/i.test(e));
      return fetchError(sealed ? 'Vault is sealed (503)' : 'Vault is unavailable (503)', true);
    }
    // 412: Enterprise eventual consistency asks the client to retry.
    if (statusCode === 412 || statusCode >= 500)
      return fetchError(`Vault server error (${statusCode})`, true);
    return fetchError(`Vault rejected the request (${statusCode})`, false);
  }
  const code = (err as { code?: unknown } | null)?.code;
  const cause = safeCause(err, { secrets: where.credentials() });
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return timeoutError(where, cause);
  if (typeof code === 'string' && NETWORK_CODES.has(code)) {
    return new FetchError(`cannot reach Vault (${code}; ${where.action})`, {
      ...context,
      transient: true,
      cause,
    });
  }
  // TLS verification failures and anything unknown: name and code survive, the message may not.
  const tlsProblem = typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL/.test(code);
  return new FetchError(
    tlsProblem ? `TLS to Vault failed (${code}; ${where.action})` : `Vault request failed (${where.action})`,
    { ...context, transient: !tlsProblem, cause },
  );
}
