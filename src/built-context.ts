/**
 * One context per rotation for servers that install with `setSecureContext` (ours, and grpc-js's http2
 * servers): the resolver validates a candidate by building the context such a server will ask Node for, and
 * that built context answers Node's own build when the candidate is installed.
 */
import { createHash } from 'node:crypto';
import tls, { type SecureContext, type SecureContextOptions, type TlsOptions } from 'node:tls';

/** A context built from `args`: what `tls.createSecureContext(args)` gave. */
export interface BuiltContext {
  readonly args: SecureContextOptions;
  readonly context: SecureContext;
}

/** What a tls.Server keeps from earlier `setSecureContext` calls (its own properties). */
export interface HeldContextOptions {
  readonly ticketKeys?: Buffer;
  readonly sessionTimeout?: number;
}

/** Node's default `sessionIdContext` for a server given none (lib/_tls_wrap.js, the same in Node 22 to 26). */
const nodeSessionIdContext = () =>
  createHash('sha1').update(process.argv.join(' ')).digest('hex').slice(0, 32);

/**
 * The options `Server.prototype.setSecureContext(options)` passes to `tls.createSecureContext`, worked out
 * the way it does (Node 22 to 26): a context built with them is the context it would build. `ticketKeys`
 * and `sessionTimeout` are sticky there (kept from before when left out): `held` is what the server keeps.
 */
export function nodeContextArgs(held: HeldContextOptions, options: TlsOptions): SecureContextOptions {
  const o = options as TlsOptions & Record<string, unknown>;
  return {
    pfx: o.pfx || undefined,
    key: o.key || undefined,
    passphrase: o.passphrase || undefined,
    cert: o.cert || undefined,
    clientCertEngine: o.clientCertEngine || undefined,
    ca: o.ca || undefined,
    ciphers: o.ciphers || undefined,
    sigalgs: o.sigalgs,
    ecdhCurve: o.ecdhCurve,
    dhparam: o.dhparam || undefined,
    minVersion: o.minVersion || undefined,
    maxVersion: o.maxVersion || undefined,
    secureProtocol: o.secureProtocol || undefined,
    secureOptions: o.secureOptions || undefined,
    honorCipherOrder: o.honorCipherOrder !== undefined ? !!o.honorCipherOrder : true,
    crl: o.crl || undefined,
    sessionIdContext: o.sessionIdContext || nodeSessionIdContext(),
    ticketKeys: o.ticketKeys || held.ticketKeys,
    sessionTimeout: o.sessionTimeout || held.sessionTimeout,
    privateKeyIdentifier: o.privateKeyIdentifier,
    privateKeyEngine: o.privateKeyEngine,
    ...(o.certificateCompression === undefined ? {} : { certificateCompression: o.certificateCompression }),
  } as SecureContextOptions;
}

/** The same options by identity, field by field: what Node asks for is what was built. */
function sameArgs(a: object, b: object): boolean {
  const left = a as Record<string, unknown>;
  const right = b as Record<string, unknown>;
  for (const name of new Set([...Object.keys(left), ...Object.keys(right)])) {
    if (left[name] !== right[name]) return false;
  }
  return true;
}

/**
 * Runs `install` (code that calls `setSecureContext` synchronously, once or on several servers) with every
 * `tls.createSecureContext` call asking for exactly `built.args` answered with `built.context` instead of
 * building the same again. Nothing else runs meanwhile: the calls are synchronous. A call asking for other
 * options (a Node line that maps them differently, a server holding other ticket keys) builds its own as
 * before: slower, never different.
 */
export function withBuiltContext(built: BuiltContext, install: () => void): void {
  const original = tls.createSecureContext;
  tls.createSecureContext = (args?: SecureContextOptions) =>
    args && sameArgs(args, built.args) ? built.context : original(args);
  try {
    install();
  } finally {
    tls.createSecureContext = original;
  }
}
