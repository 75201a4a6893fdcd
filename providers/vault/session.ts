/**
 * The connection to Vault: the lazily loaded node-vault client, the token lifecycle (login, lookup,
 * renewal, re-login) and one `call` that every Vault request goes through, which bounds it in time, retries
 * it once after a fresh login when Vault answers 403, and maps every failure to the library's errors.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { abortable } from '../../src/abort.js';
import { ClosedError, ConfigurationError, FetchError, safeCause } from '../../src/errors.js';
import { importOptional } from '../../src/optional.js';
import { runAt, type TimerHandle } from '../../src/timers.js';
import {
  EmptyAnswer,
  type ErrorWhere,
  httpFailure,
  isPermissionDenied,
  malformedAnswer,
  mapVaultError,
  parseRetryAfter,
  timeoutError,
} from './errors.js';
import type { ResolvedOptions, VaultClient, VaultRequestOptions } from './options.js';

export interface VaultCall {
  method: 'read' | 'write';
  /** Path under `/v1/`, already URL-encoded where it holds user input. */
  path: string;
  body?: object;
  /** Reference description for errors. */
  ref?: string;
  /**
   * What a 200 answer must be: a JSON object (the default; anything else is a malformed answer, see
   * malformedAnswer) or text (the raw PKI CA and CRL endpoints, which the caller checks).
   */
  answer?: 'json' | 'text';
}

/** Below this remaining lifetime a login token is treated as gone: a request would race its expiry. */
const EXPIRY_MARGIN_MS = 1_000;
/** Never re-arm a renewal timer faster than this, whatever TTL Vault hands out. */
const MIN_TIMER_MS = 100;

interface TokenState {
  token: string;
  /** Epoch ms when the token stops working; undefined for tokens without TTL (root, dev). */
  expiresAt: number | undefined;
  ttlMs: number;
  renewable: boolean;
  /** A static token that Vault refused auth/token/lookup-self to: most likely invalid, expired or revoked. */
  lookupDenied?: boolean;
}

/** The token's own lookup: its TTL at start, and whether Vault still knows it after a 403. */
const LOOKUP_SELF: Readonly<VaultCall> = { method: 'read', path: 'auth/token/lookup-self' };

export class VaultSession {
  private clientPromise: Promise<VaultClient> | undefined;
  private state: TokenState | undefined;
  private authInFlight: Promise<TokenState> | undefined;
  private timer: TimerHandle | undefined;
  /** Tokens this session has sent lately: a late answer may echo one that was replaced since. */
  private readonly recentTokens: string[] = [];
  /** The Kubernetes service-account token last read, for scrubbing. */
  private jwt: string | undefined;
  /** Aborts background renewals and logins at close. */
  private readonly background = new AbortController();
  private closed = false;
  /**
   * The created client's own connection pools, destroyed at close(). Node's global agents would keep an idle
   * keep-alive socket to Vault, and its idle timer, alive after the provider is closed.
   */
  private agents: { http: http.Agent; https: https.Agent } | undefined;
  /**
   * The Retry-After of recent 429 answers, by request path. node-vault hands over status and body only:
   * the session's own agents see the headers (an injected client's answers carry none of this).
   */
  private readonly retryAfter = new Map<string, number>();

  constructor(private readonly options: ResolvedOptions) {}

  get authMethod(): string {
    return this.options.auth.method;
  }

  /** Runs one Vault request with the current token; after a 403, logs in again (where it can) and retries once. */
  async call(call: VaultCall, signal: AbortSignal): Promise<unknown> {
    const where = this.where(call);
    this.assertOpen(where);
    const client = await this.bounded(this.client(), signal, where, false);
    const state = await this.bounded(this.currentToken(), signal, where, false);
    try {
      return await this.send(client, call, state.token, signal, where);
    } catch (err) {
      if (!isPermissionDenied(err) || this.closed) throw mapVaultError(err, where);
      if (!this.canLogin()) {
        // A static token cannot be replaced: say whether Vault still knows it (a revoked, expired or mistyped
        // token is refused everywhere, lookup-self included, which the default policy grants).
        const refused = state.lookupDenied || (await this.lookupRefused(client, state, signal));
        throw mapVaultError(err, refused ? { ...where, tokenRefused: true } : where);
      }
      const fresh = await this.bounded(this.relogin(state), signal, where, false);
      try {
        return await this.send(client, call, fresh.token, signal, where);
      } catch (retryErr) {
        throw mapVaultError(retryErr, where);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.background.abort();
    this.state = undefined;
    this.recentTokens.length = 0;
    this.jwt = undefined;
    this.agents?.http.destroy();
    this.agents?.https.destroy();
  }

  private where(call: Pick<VaultCall, 'method' | 'path' | 'ref'>): ErrorWhere {
    return {
      provider: this.options.name,
      ref: call.ref,
      action: `${call.method} ${call.path.split('?')[0]}`,
      requestTimeoutMs: this.options.requestTimeoutMs,
      credentials: () => this.credentials(),
    };
  }

  /** Everything this session sends that must never be shown: tokens, AppRole ids, the Kubernetes JWT. */
  private credentials(): string[] {
    const auth = this.options.auth;
    const own =
      auth.method === 'token'
        ? [auth.token]
        : auth.method === 'approle'
          ? [auth.secretId, auth.roleId]
          : [this.jwt];
    return [...own, this.state?.token, ...this.recentTokens].filter(
      (value): value is string => typeof value === 'string' && value !== '',
    );
  }

  private assertOpen(where: ErrorWhere): void {
    if (this.closed) {
      throw new ClosedError('vault provider', { provider: where.provider, ref: where.ref });
    }
  }

  private canLogin(): boolean {
    return this.options.auth.method !== 'token';
  }

  private client(): Promise<VaultClient> {
    this.clientPromise ??= this.createClient().catch((err: unknown) => {
      this.clientPromise = undefined;
      throw err;
    });
    return this.clientPromise;
  }

  private async createClient(): Promise<VaultClient> {
    const { client, endpoint, namespace, tls, requestTimeoutMs } = this.options;
    if (client) return client;
    // Loaded here so that users who never use Vault need not install it (optional peer dependency).
    const factory = (await importOptional('node-vault', 'the vault provider', () => import('node-vault')))
      .default;
    const tlsOptions = {
      ...(tls?.ca !== undefined ? { ca: tls.ca as string | Buffer | (string | Buffer)[] } : {}),
      ...(tls?.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls?.key !== undefined ? { key: tls.key } : {}),
    };
    // The same settings as Node's global agents (keep-alive, 5 s idle timeout), but owned by this provider.
    const agents = {
      http: new http.Agent({ keepAlive: true, timeout: 5_000 }),
      https: new https.Agent({ keepAlive: true, timeout: 5_000, ...tlsOptions }),
    };
    if (this.closed) {
      agents.http.destroy();
      agents.https.destroy();
    }
    this.noteRetryAfter(agents.http);
    this.noteRetryAfter(agents.https);
    this.agents = agents;
    const created = factory({
      endpoint,
      ...(namespace ? { namespace } : {}),
      requestOptions: {
        timeout: requestTimeoutMs,
        ...tlsOptions,
        httpAgent: agents.http,
        httpsAgent: agents.https,
      },
    });
    // node-vault falls back to VAULT_TOKEN; the token travels per request instead, so login calls go out
    // without one and the client object never holds a secret.
    created.token = '';
    // node-vault resolves a 204 and a 200 with an empty body alike, with ''. Only the 204 is Vault's answer
    // (the raw PKI endpoints' "no CA yet"); an empty 200 is a body lost on the way.
    const handle = created.handleVaultResponse.bind(created);
    created.handleVaultResponse = (response) =>
      response?.statusCode === 200 && (response.body === '' || response.body === undefined)
        ? Promise.reject(new EmptyAnswer())
        : handle(response);
    return created;
  }

  /** Records the Retry-After of every 429 that `agent` carries, for `send` to attach to the error. */
  private noteRetryAfter(agent: http.Agent): void {
    // addRequest is how every request reaches an agent (Node's http.ClientRequest calls it).
    const hooked = agent as unknown as { addRequest(req: http.ClientRequest, options: unknown): void };
    const addRequest = hooked.addRequest.bind(agent);
    hooked.addRequest = (req, options) => {
      req.once('response', (res: http.IncomingMessage) => {
        const ms = res.statusCode === 429 ? parseRetryAfter(res.headers['retry-after']) : undefined;
        if (ms === undefined) return;
        this.retryAfter.set(req.path.split('?')[0] ?? req.path, ms);
        // A handful of paths at most are rate-limited at once; keep the map bounded whatever happens.
        if (this.retryAfter.size > 32) this.retryAfter.delete(this.retryAfter.keys().next().value as string);
      });
      addRequest(req, options);
    };
  }

  /** The Retry-After noted for `path` (under /v1/), taken once. */
  private takeRetryAfter(path: string): number | undefined {
    const suffix = `/${path.split('?')[0]}`;
    for (const [requested, ms] of this.retryAfter) {
      if (!requested.endsWith(suffix)) continue;
      this.retryAfter.delete(requested);
      return ms;
    }
    return undefined;
  }

  private requestOptions(token: string | undefined): VaultRequestOptions {
    const headers: Record<string, string> = {};
    if (token) {
      headers['X-Vault-Token'] = token;
      if (!this.recentTokens.includes(token) && this.recentTokens.push(token) > 4) this.recentTokens.shift();
    }
    if (this.options.namespace) headers['X-Vault-Namespace'] = this.options.namespace;
    return { timeout: this.options.requestTimeoutMs, headers };
  }

  /**
   * One HTTP request; `token` undefined sends none (login endpoints must not see a stale token). axios hands
   * node-vault a body that does not parse as JSON as a string: for a JSON call that is a malformed answer.
   */
  private async send(
    client: VaultClient,
    call: VaultCall,
    token: string | undefined,
    signal: AbortSignal,
    where: ErrorWhere,
  ): Promise<unknown> {
    const opts = this.requestOptions(token);
    // node-vault adds `client.token` when no token header is given, and reads it synchronously inside
    // read()/write(): blank it for the duration of the call for unauthenticated requests.
    const saved = client.token;
    if (token === undefined) client.token = '';
    let pending: Promise<unknown>;
    try {
      pending =
        call.method === 'read'
          ? client.read(call.path, opts)
          : client.write(call.path, call.body ?? {}, opts);
    } finally {
      if (token === undefined) client.token = saved;
    }
    let answer: unknown;
    try {
      answer = await this.bounded(pending, signal, where, true);
    } catch (err) {
      if (httpFailure(err)?.statusCode === 429)
        throw mapVaultError(err, where, this.takeRetryAfter(call.path));
      throw err;
    }
    if (call.answer !== 'text' && !isJsonObject(answer)) {
      throw malformedAnswer(
        where,
        typeof answer === 'string' ? 'the body is not JSON' : 'the body is not a JSON object',
      );
    }
    return answer;
  }

  /**
   * Settles with `promise`, or rejects when `signal` aborts or the request timeout passes. node-vault cannot
   * take an AbortSignal, and its axios timeout only fires on an idle socket: this bound holds either way.
   */
  private bounded<T>(
    promise: Promise<T>,
    signal: AbortSignal,
    where: ErrorWhere,
    timed: boolean,
  ): Promise<T> {
    // The request itself cannot be cancelled; abortable clears the timer and the listener whichever comes
    // first, so a hung one keeps no timer alive after an abort or a close().
    return abortable(promise, signal, {
      onAbort: (reason) =>
        new FetchError(`Vault request aborted (${where.action})`, {
          provider: where.provider,
          ref: where.ref,
          transient: true,
          cause: reason,
        }),
      ...(timed ? { timeoutMs: where.requestTimeoutMs, onTimeout: () => timeoutError(where) } : {}),
    });
  }

  /**
   * Whether `state` can carry the next request. A static token is used until Vault refuses it: nothing could
   * replace it. A login token close to its end is replaced first rather than raced against its expiry.
   */
  private usable(state: TokenState | undefined): state is TokenState {
    if (state === undefined) return false;
    if (state.expiresAt === undefined || !this.canLogin()) return true;
    return state.expiresAt - Date.now() > Math.min(EXPIRY_MARGIN_MS, state.ttlMs / 4);
  }

  private currentToken(): Promise<TokenState> {
    if (this.usable(this.state)) return Promise.resolve(this.state);
    return this.authenticate();
  }

  /** Shares one login among every caller until it settles. */
  private authenticate(): Promise<TokenState> {
    this.authInFlight ??= this.login().finally(() => {
      this.authInFlight = undefined;
    });
    return this.authInFlight;
  }

  /** After a 403 with `stale`: a new login unless another caller already replaced the token. */
  private relogin(stale: TokenState): Promise<TokenState> {
    if (this.state !== stale && this.usable(this.state)) return Promise.resolve(this.state);
    if (this.state === stale) this.state = undefined;
    return this.authenticate();
  }

  private async login(): Promise<TokenState> {
    const client = await this.client();
    const signal = this.background.signal;
    const auth = this.options.auth;
    let state: TokenState;
    if (auth.method === 'token') {
      const token = auth.token ?? client.token;
      if (!token) {
        throw new ConfigurationError('no Vault token: set auth.token or VAULT_TOKEN', {
          provider: this.options.name,
        });
      }
      state = await this.lookupSelf(client, token, signal);
    } else {
      const body =
        auth.method === 'approle'
          ? { role_id: auth.roleId, ...(auth.secretId === undefined ? {} : { secret_id: auth.secretId }) }
          : { role: auth.role, jwt: await this.readJwt(auth.jwtPath) };
      const call: VaultCall = { method: 'write', path: `auth/${auth.mount}/login`, body };
      let response: unknown;
      try {
        response = await this.send(client, call, undefined, signal, this.where(call));
      } catch (err) {
        const mapped = mapVaultError(err, this.where(call));
        throw new FetchError(`Vault ${auth.method === 'approle' ? 'AppRole' : 'Kubernetes'} login failed`, {
          provider: this.options.name,
          transient: mapped instanceof FetchError ? mapped.transient : false,
          ...(mapped instanceof FetchError && mapped.retryAfterMs !== undefined
            ? { retryAfterMs: mapped.retryAfterMs }
            : {}),
          cause: mapped,
        });
      }
      state = this.fromAuth(response, this.where(call));
    }
    if (this.closed) throw new ClosedError('vault provider', { provider: this.options.name });
    this.state = state;
    this.schedule(state);
    return state;
  }

  private async readJwt(path: string): Promise<string> {
    try {
      const jwt = (await readFile(path, 'utf8')).trim();
      this.jwt = jwt || undefined;
      if (jwt) return jwt;
    } catch (err) {
      throw new FetchError(`cannot read the Kubernetes service-account token at ${path}`, {
        provider: this.options.name,
        transient: false,
        cause: safeCause(err),
      });
    }
    throw new FetchError(`the Kubernetes service-account token at ${path} is empty`, {
      provider: this.options.name,
      transient: false,
    });
  }

  /** Asks lookup-self for `state`'s token after a 403: true (and remembered) if Vault refuses that too. */
  private async lookupRefused(client: VaultClient, state: TokenState, signal: AbortSignal): Promise<boolean> {
    try {
      await this.send(client, LOOKUP_SELF, state.token, signal, this.where(LOOKUP_SELF));
      return false;
    } catch (err) {
      if (!isPermissionDenied(err)) return false;
      state.lookupDenied = true;
      return true;
    }
  }

  /**
   * Whether Vault refused auth/token/lookup-self to the static token in use: the default policy allows it,
   * so a 403 elsewhere most likely means the token itself is not valid (or was made without that policy).
   */
  tokenLookupDenied(): boolean {
    return this.state?.lookupDenied === true;
  }

  /**
   * A static token is looked up once for its TTL. Root and dev tokens report ttl 0 and no `renewable`:
   * they never expire and are never renewed. A token whose policy forbids lookup-self is used as it is.
   */
  private async lookupSelf(client: VaultClient, token: string, signal: AbortSignal): Promise<TokenState> {
    const call = LOOKUP_SELF;
    let response: unknown;
    try {
      response = await this.send(client, call, token, signal, this.where(call));
    } catch (err) {
      if (isPermissionDenied(err)) {
        return { token, expiresAt: undefined, ttlMs: 0, renewable: false, lookupDenied: true };
      }
      throw mapVaultError(err, this.where(call));
    }
    const data = (response as { data?: { ttl?: unknown; renewable?: unknown } } | null)?.data;
    const ttl = typeof data?.ttl === 'number' && data.ttl > 0 ? data.ttl * 1000 : 0;
    return {
      token,
      expiresAt: ttl > 0 ? Date.now() + ttl : undefined,
      ttlMs: ttl,
      renewable: data?.renewable === true,
    };
  }

  /** The token of a login or renewal answer; an answer without one did not arrive whole (Vault always sends it). */
  private fromAuth(response: unknown, where: ErrorWhere): TokenState {
    const auth = (
      response as { auth?: { client_token?: unknown; lease_duration?: unknown; renewable?: unknown } }
    )?.auth;
    if (typeof auth?.client_token !== 'string' || auth.client_token === '') {
      throw malformedAnswer(where, 'auth.client_token is missing');
    }
    const ttl =
      typeof auth.lease_duration === 'number' && auth.lease_duration > 0 ? auth.lease_duration * 1000 : 0;
    return {
      token: auth.client_token,
      expiresAt: ttl > 0 ? Date.now() + ttl : undefined,
      ttlMs: ttl,
      renewable: auth.renewable === true,
    };
  }

  /** Arms the timer that keeps `state` alive: renewal (or a new login) at 2/3 of its TTL. */
  private schedule(state: TokenState, delayMs = (state.ttlMs * 2) / 3): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.closed || state.expiresAt === undefined) return;
    if (!state.renewable && !this.canLogin()) return; // nothing to do before it expires
    // A token TTL beyond ~37 days puts 2/3 of it past what one timer can wait: runAt waits in steps.
    this.timer = runAt(Date.now() + Math.max(MIN_TIMER_MS, delayMs), () => void this.keepAlive(state));
  }

  private async keepAlive(state: TokenState): Promise<void> {
    this.timer = undefined;
    if (this.closed || this.state !== state) return;
    if (state.renewable) {
      try {
        const renewed = await this.renewSelf(state);
        if (this.closed || this.state !== state) return;
        // Vault caps renewals at the token's max TTL and then hands back only what is left: renewing again
        // extends nothing. A login method logs in anew at 2/3 of what is left; a static token just runs out.
        const capped = renewed.ttlMs < state.ttlMs;
        this.state = capped ? { ...renewed, renewable: false } : renewed;
        this.schedule(this.state);
        return;
      } catch {
        if (this.closed) return;
        if (!this.canLogin()) {
          this.retryLater(state);
          return;
        }
      }
    }
    if (!this.canLogin()) return;
    try {
      this.state = undefined;
      await this.authenticate();
    } catch {
      // The next fetch reports the failure; meanwhile keep the old token while it lives.
      if (this.closed || this.state !== undefined || !this.usable(state)) return;
      this.state = state;
      this.retryLater(state);
    }
  }

  private retryLater(state: TokenState): void {
    const remaining = (state.expiresAt ?? 0) - Date.now();
    if (remaining > 2 * EXPIRY_MARGIN_MS) this.schedule(state, remaining / 2);
  }

  private async renewSelf(state: TokenState): Promise<TokenState> {
    const client = await this.client();
    const call: VaultCall = { method: 'write', path: 'auth/token/renew-self', body: {} };
    const response = await this.send(client, call, state.token, this.background.signal, this.where(call));
    const renewed = this.fromAuth(response, this.where(call));
    // Here a lease of 0 means the token is at its end, not that it never expires.
    if (renewed.ttlMs === 0) return { token: state.token, expiresAt: Date.now(), ttlMs: 0, renewable: false };
    return { ...renewed, token: state.token };
  }
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
