/**
 * Servers that follow the resolver: each new generation is installed with `setSecureContext`, given the
 * COMPLETE options (it resets every option left out: an mTLS server swapped with only key/cert loses its
 * `ca`) and the current ticket keys (a swap drops them otherwise). Live connections keep their context.
 *
 * Revocation must bite: a TLS session resumes without any certificate check (TLS 1.2 tickets, TLS 1.3
 * PSK tickets), so a client revoked by a new CRL, or whose CA was dropped, would keep getting in by
 * resuming. When the trust material (`ca`, `crl`) changes, sessions made under the old one stop resuming:
 * the ticket keys change (fresh random ones, or keys bound to the trust digest where they come from a
 * store or the server's options, so a fleet sharing them still shares sessions) and so does the
 * `sessionIdContext` (OpenSSL refuses to resume a session of another context, which also covers session-ID
 * caches kept through 'newSession'/'resumeSession'). When only the server's own key or certificate
 * changes, the keys and context stay, and resumption continues.
 */
import { createHash, hkdfSync, randomBytes } from 'node:crypto';
import {
  type SecureContextOptions,
  type Server,
  type TLSSocket,
  type TlsOptions,
  createServer as tlsCreateServer,
} from 'node:tls';
import {
  type BuiltContext,
  type HeldContextOptions,
  nodeContextArgs,
  withBuiltContext,
} from './built-context.js';
import { ConfigurationError } from './errors.js';
import { internal, type Resolver } from './resolver/index.js';
import { SECRET_FIELDS } from './types.js';

/** Spec options only a client uses: a server never gets them (a client's pskCallback has another signature). */
const CLIENT_ONLY: ReadonlySet<string> = new Set([
  'host',
  'port',
  'path',
  'socket',
  'servername',
  'session',
  'checkServerIdentity',
  'lookup',
  'timeout',
  'minDHSize',
  'pskIdentity',
  'pskCallback',
  'requestOCSP',
  'family',
  'localAddress',
  'autoSelectFamily',
  'autoSelectFamilyAttemptTimeout',
  'signal',
  'hints',
  'onread',
]);

/**
 * Server options that Node reads only when the server is created (setSecureContext does not take them):
 * attach() cannot give them to a server that exists, so a spec that sets them differently is refused there.
 */
const CONSTRUCTION_ONLY = [
  'requestCert',
  'rejectUnauthorized',
  'ALPNProtocols',
  'ALPNCallback',
  'SNICallback',
  'handshakeTimeout',
  'pskIdentityHint',
  'enableTrace',
  'allowHalfOpen',
  'pauseOnConnect',
  'noDelay',
  'keepAlive',
  'keepAliveInitialDelay',
  'highWaterMark',
  'blockList',
] as const;

/** The construction-time options a server shows, so that attach() can tell whether it was created with them. */
const VERIFIABLE: ReadonlySet<string> = new Set(['requestCert', 'rejectUnauthorized', 'ALPNProtocols']);

/** The wire form Node keeps of ALPNProtocols: each name prefixed with its length. */
function alpnWire(value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value);
  if (!Array.isArray(value)) return undefined;
  return Buffer.concat(
    value.map((name) => {
      const bytes = Buffer.isBuffer(name) ? name : Buffer.from(String(name));
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    }),
  );
}

/** Whether the server already has this construction-time option (only the VERIFIABLE ones can be read). */
function onServer(server: Server, name: string, value: unknown): boolean {
  const held = (server as unknown as Record<string, unknown>)[name];
  if (name === 'requestCert' || name === 'rejectUnauthorized') return held === value;
  if (name === 'ALPNProtocols') {
    const want = alpnWire(value);
    return want !== undefined && Buffer.isBuffer(held) && held.equals(want);
  }
  return false;
}

/** Same option, same value (arrays and buffers by content, functions and objects by identity). */
function sameOption(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => sameOption(x, b[i]));
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  return false;
}

/** The options actually set: `{ requestCert: undefined }` must not unset the spec's `requestCert: true`. */
function setOnly(options: TlsOptions): TlsOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as TlsOptions;
}

/**
 * A spec that says one thing and code that says another is refused, by name: an mTLS requirement in a config
 * file must not be dropped by an option in code without anyone noticing.
 */
function refuseConflicts(spec: TlsOptions, given: TlsOptions, where: string): void {
  const a = spec as Record<string, unknown>;
  const b = given as Record<string, unknown>;
  for (const name of Object.keys(b)) {
    if (a[name] === undefined || b[name] === undefined || sameOption(a[name], b[name])) continue;
    throw new ConfigurationError(
      `${name} is set both in the spec and for ${where}, differently: set it in one place`,
      { field: name },
    );
  }
}

/**
 * The spec's options a server applies (its requestCert, ALPNProtocols, ciphers, minVersion, …): a config
 * file has no other place for them, and ignoring them served without mTLS a spec that asked for it.
 */
function specServerOptions(resolver: Resolver): TlsOptions {
  const options: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(resolver[internal].passThrough())) {
    if (!CLIENT_ONLY.has(name) && value !== undefined) options[name] = value;
  }
  return options as TlsOptions;
}

/** The server's own options with the secret fields of the current generation. */
function contextOptions(base: TlsOptions, resolved: SecureContextOptions): TlsOptions {
  const options: TlsOptions = { ...base };
  const secret = resolved as Partial<Record<string, unknown>>;
  for (const field of SECRET_FIELDS) {
    if (secret[field] !== undefined) Object.assign(options, { [field]: secret[field] });
  }
  return options;
}

/** A digest of who may connect, from the canonical `ca` and `crl` entries the gate validated. */
function trustDigest(resolved: SecureContextOptions): string | undefined {
  const entries = [resolved.ca, resolved.crl].map((value) =>
    value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String),
  );
  if (entries.every((list) => list.length === 0)) return undefined;
  return createHash('sha256').update(JSON.stringify(entries)).digest('hex');
}

/** Ticket keys bound to the trust: equal for equal keys and trust, unrelated once the trust changes. */
function bindTicketKeys(keys: Buffer, trust: string): Buffer {
  return Buffer.from(
    hkdfSync('sha256', keys, Buffer.from(trust, 'hex'), 'tls-secrets server ticket keys', 48),
  );
}

/**
 * Node's tls.Server keeps the options it was last given as properties (`server.key`, `server.pfx`, …), so
 * `inspect(server)` or a logger serialising it would print the private key. The secure context is built by
 * then and Node reads none of them again: they are dropped.
 */
function forgetSecretOptions(server: Server): void {
  const holder = server as unknown as Record<string, unknown>;
  for (const field of SECRET_FIELDS) if (field in holder) holder[field] = undefined;
}

/**
 * Keeps `server` on the resolver's current generation. Resolves once the first generation is installed;
 * the returned function stops following (also done when the server closes).
 *
 * One context per rotation: the server's complete context (its own options, the trust-bound ticket keys and
 * sessionIdContext) is what the resolver builds to validate each candidate, and exactly that context is
 * installed, so a refused candidate never reaches the server and a rotation builds no second context.
 */
export async function attach(
  server: Server,
  resolver: Resolver,
  passedOptions: TlsOptions = {},
): Promise<() => void> {
  const givenOptions = setOnly(passedOptions);
  const spec = specServerOptions(resolver);
  refuseConflicts(spec, givenOptions, 'attach()');
  const wanted = { ...spec, ...givenOptions } as Record<string, unknown>;
  for (const name of CONSTRUCTION_ONLY) {
    const value = wanted[name];
    if (value === undefined || onServer(server, name, value)) continue;
    // What the server cannot show us (an SNICallback, a timeout) is trusted when given here: the documented
    // use passes the constructor's own options again. From the spec alone it would be a silent gap.
    if (!VERIFIABLE.has(name) && name in givenOptions) continue;
    throw new ConfigurationError(
      `${name} is set ${name in givenOptions ? 'for attach()' : 'in the spec'} but the server was not created with that value: attach() cannot change it on a server that exists; give it to the server's constructor (or use createServer)`,
      { field: name },
    );
  }
  const serverOptions: TlsOptions = { ...spec, ...givenOptions };
  let installed: { trust: string | undefined } | undefined;
  /** What a generation with these secret options installs. Changes nothing: it may be refused yet. */
  const plan = (resolved: SecureContextOptions) => {
    const options = contextOptions(serverOptions, resolved);
    const trust = trustDigest(resolved);
    const trustChanged = installed !== undefined && trust !== installed.trust;
    if (resolved.ticketKeys !== undefined) {
      // From a store: the gate already bound them to the trust material.
    } else if (serverOptions.ticketKeys !== undefined) {
      if (trust !== undefined) options.ticketKeys = bindTicketKeys(serverOptions.ticketKeys, trust);
    } else {
      // The server's own keys (Node's, or set with setTicketKeys) carry over unless the trust changed.
      options.ticketKeys = trustChanged ? randomBytes(48) : server.getTicketKeys();
    }
    if (trust !== undefined) {
      options.sessionIdContext = createHash('sha256')
        .update(`${serverOptions.sessionIdContext ?? ''}\n${trust}`)
        .digest('hex')
        .slice(0, 32);
    }
    return { options, trust };
  };
  const install = (planned: { options: TlsOptions; trust: string | undefined }, built?: BuiltContext) => {
    installed = { trust: planned.trust };
    if (built) withBuiltContext(built, () => server.setSecureContext(planned.options));
    else server.setSecureContext(planned.options);
    forgetSecretOptions(server);
  };
  const first = await resolver.resolve();
  // The certificate must allow server auth: the generation about to be installed is checked (once per
  // generation, never per handshake); the role binds later generations only once it passed.
  resolver.declareRole('server');
  // The first generation was validated before this server was known: setSecureContext builds its context.
  install(plan(resolver.current()?.options ?? first));
  // An internal profile, not a 'rotate' listener: an application listener that throws cannot keep the
  // server on the old certificate, and every later candidate is validated by building this server's context.
  const unsubscribe = resolver[internal].serveContext({
    prepare(secretOptions) {
      const planned = plan(secretOptions);
      const args = nodeContextArgs(server as unknown as HeldContextOptions, planned.options);
      return { options: args, install: (context) => install(planned, { args, context }) };
    },
  });
  const detach = () => {
    unsubscribe();
    server.off('close', detach);
  };
  server.once('close', detach);
  return detach;
}

/**
 * A `tls.Server` served from the resolver. Nothing is fetched until `listen()`, which binds only after
 * the first bundle is in place (a fetch or validation failure is emitted as the server's 'error').
 */
export function createServer(
  resolver: Resolver,
  options: TlsOptions = {},
  secureConnectionListener?: (socket: TLSSocket) => void,
): Server {
  const pskCallback = resolver.serverPskCallback();
  // The spec's server options (requestCert, ALPNProtocols, SNICallback, …) apply, with those given here.
  const spec = specServerOptions(resolver);
  const given = setOnly(options);
  refuseConflicts(spec, given, 'createServer()');
  // A spec written for a client may turn verification off (a peer with a self-signed certificate). Applied to
  // a server that asks for client certificates, it would let unverified clients in: that must be said in code.
  const asksForCerts = (given.requestCert ?? spec.requestCert) === true;
  if (asksForCerts && spec.rejectUnauthorized === false && given.rejectUnauthorized === undefined) {
    throw new ConfigurationError(
      'the spec sets rejectUnauthorized: false, which would let a server that requests client certificates accept unverified ones: pass rejectUnauthorized to createServer() if that is meant',
      { field: 'rejectUnauthorized' },
    );
  }
  const complete: TlsOptions = { ...spec, ...given };
  const server = tlsCreateServer(
    { ...(pskCallback ? { pskCallback } : {}), ...complete },
    secureConnectionListener,
  );
  const listen = server.listen.bind(server) as (...args: unknown[]) => Server;
  const close = server.close.bind(server);
  // listen() waits for the first bundle. A close() before it binds (a deploy stopped during a slow start)
  // cancels the listens still waiting, at once: Node's 'close' event comes a tick later, and a bundle
  // arriving in between bound a server that had been told to stop. A listen() after the close() stands.
  const waiting = new Set<{ cancelled: boolean }>();
  server.close = ((callback?: (err?: Error) => void) => {
    for (const pending of waiting) pending.cancelled = true;
    waiting.clear();
    return close(callback);
  }) as Server['close'];
  server.listen = ((...args: unknown[]) => {
    const pending = { cancelled: false };
    waiting.add(pending);
    attach(server, resolver, complete).then(
      (detach) => {
        waiting.delete(pending);
        if (pending.cancelled) detach();
        else listen(...args);
      },
      (error: unknown) => {
        waiting.delete(pending);
        if (!pending.cancelled) server.emit('error', error);
      },
    );
    return server;
  }) as Server['listen'];
  return server;
}
