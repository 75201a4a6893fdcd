/**
 * gRPC (`@grpc/grpc-js`, an optional peer loaded here) credentials that follow the resolver.
 *
 * Server: a subclass of grpc-js's exported `ServerCredentials` that hands the server the COMPLETE secure-context
 * options of each generation (key, cert, ca, crl, passphrase, pfx, dhparam), through the protected
 * `updateSecureContextOptions` grpc-js itself uses. grpc-js's certificate-provider server credentials pass only
 * CA, certificate and key to the TLS layer, so a CRL could not reach the server through them: a revoked client
 * would keep being accepted.
 *
 * Channel: grpc-js's certificate-provider channel credentials (public, `experimental`), fed by a provider that
 * answers from the resolver. Client-side, only CA, certificate and key matter; grpc-js builds one secure
 * context per connection attempt from the latest update.
 *
 * Established HTTP/2 connections keep their first handshake's certificates. The server options
 * `grpc.max_connection_age_ms` and `grpc.max_connection_age_grace_ms` bound how long that lasts (see
 * docs/integrations/grpc.md).
 */
import {
  checkServerIdentity,
  createSecureContext,
  type PeerCertificate,
  rootCertificates,
  type SecureContextOptions,
} from 'node:tls';
import { inspect } from 'node:util';
import type { ChannelCredentials, experimental, ServerCredentials, VerifyOptions } from '@grpc/grpc-js';
import { type BuiltContext, nodeContextArgs, withBuiltContext } from './built-context.js';
import { ConfigurationError } from './errors.js';
import { importOptional } from './optional.js';
import { redactOptions } from './redact.js';
import { internal, type Resolver } from './resolver/index.js';
import { type ResolvedOptions, SECRET_FIELDS } from './types.js';

type Grpc = typeof import('@grpc/grpc-js');
type CertificateProvider = experimental.CertificateProvider;
type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

export interface GrpcServerCredentialsOptions {
  /**
   * Ask every client for a certificate and refuse the handshake without one that chains to `ca` (and is not
   * in `crl`). Default false. With true, the resolver must have a `ca`.
   */
  requireClientCert?: boolean;
}

export interface GrpcChannelCredentialsOptions {
  /**
   * The name the server's certificate must carry, when the target does not (an IP address, a load balancer
   * name). Default: the host of the channel's target. It is also the TLS server name (SNI) sent: grpc-js
   * sends the target's host otherwise, and Node 26 refuses an IP address there, so an IP target needs it.
   * Set the channel option `grpc.default_authority` too if the server routes on `:authority`.
   */
  servername?: string;
  /** Called after the usual hostname check with the name checked and the server's certificate. */
  checkServerIdentity?: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

function loadGrpc(what: string): Promise<Grpc> {
  return importOptional('@grpc/grpc-js', what, () => import('@grpc/grpc-js'));
}

/**
 * Calls `apply` with each generation the resolver swaps in, until the returned function is called. Kept in
 * one place so that the way of following rotations can change without touching the credentials.
 */
function followRotations(resolver: Resolver, apply: (resolved: ResolvedOptions) => void): () => void {
  // An internal subscription, not a 'rotate' listener: an application listener that throws cannot keep the
  // credentials on an old generation.
  return resolver[internal].onGeneration((_event, options) => apply(options));
}

/** The secure-context part of a generation: every secret field, nothing the server options already hold. */
function contextOptions(resolved: ResolvedOptions): SecureContextOptions {
  const options: SecureContextOptions = {};
  for (const field of SECRET_FIELDS) {
    if (resolved[field] !== undefined) Object.assign(options, { [field]: resolved[field] });
  }
  for (const field of ['ciphers', 'ecdhCurve', 'minVersion', 'maxVersion', 'sigalgs'] as const) {
    if (resolved[field] !== undefined) Object.assign(options, { [field]: resolved[field] });
  }
  // grpc-js keeps these options on the credentials and its servers: printing either must not show the key.
  return redactOptions(options);
}

/** Hides what an object holds from `inspect` and JSON, for objects grpc-js keeps (updates, credentials). */
function hidden<T extends object>(value: T, label: string): T {
  Object.defineProperty(value, inspect.custom, { value: () => label });
  Object.defineProperty(value, 'toJSON', { value: () => label });
  return value;
}

/**
 * Server credentials serving the resolver's current generation, resolved before this returns (a bad store,
 * spec or bundle fails here, not at the first handshake). Each rotation reaches new handshakes without
 * rebinding; the credentials stop following the resolver when the last server using them shuts down, and
 * follow it again if bound anew.
 */
export async function grpcServerCredentials(
  resolver: Resolver,
  options: GrpcServerCredentialsOptions = {},
): Promise<ServerCredentials> {
  const requireClientCert = options.requireClientCert ?? false;
  if (typeof requireClientCert !== 'boolean') {
    throw new ConfigurationError('grpcServerCredentials: requireClientCert must be true or false');
  }
  const grpc = await loadGrpc('grpcServerCredentials');
  const first = await resolver.resolve();
  if (first.pfx === undefined && (first.key === undefined || first.cert === undefined)) {
    throw new ConfigurationError(
      'grpcServerCredentials: the resolver has no key and cert (or pfx) to serve',
      {
        field: first.key === undefined ? 'key' : 'cert',
      },
    );
  }
  if (requireClientCert && first.ca === undefined) {
    throw new ConfigurationError(
      'grpcServerCredentials: requireClientCert needs a ca to verify client certificates with',
      { field: 'ca' },
    );
  }

  // The certificate must allow server auth: the generation served now is checked here, later ones by the gate.
  resolver.declareRole('server');
  const passThrough = resolver[internal].passThrough();

  class ResolverServerCredentials extends grpc.ServerCredentials {
    #stop: (() => void) | undefined;

    constructor(initial: SecureContextOptions) {
      // requestCert/rejectUnauthorized are server options; everything secret is context options.
      super({ requestCert: requireClientCert, rejectUnauthorized: requireClientCert }, initial);
      this.#follow();
    }

    /**
     * An internal profile, not a 'rotate' listener: every candidate is validated by building the context
     * grpc-js's servers will ask Node for (they take exactly these options, and hold no ticket keys or session
     * timeout of their own), and that context is the one they install: one build per rotation, however many
     * addresses are bound. A refused candidate never reaches them.
     */
    #follow(): void {
      this.#stop ??= resolver[internal].serveContext({
        prepare: (secretOptions) => {
          const next = contextOptions({ ...passThrough, ...secretOptions } as ResolvedOptions);
          const args = nodeContextArgs({}, next);
          return { options: args, install: (context) => this.#install(next, { args, context }) };
        },
      });
    }

    #install(next: SecureContextOptions, built?: BuiltContext): void {
      if (built) {
        withBuiltContext(built, () => this.updateSecureContextOptions(next));
        return;
      }
      try {
        // grpc-js drops every new connection after a setSecureContext that throws: check first.
        createSecureContext(next);
      } catch {
        return;
      }
      this.updateSecureContextOptions(next);
    }

    /**
     * What grpc-js gives `http2.createSecureServer`, which Node keeps for the server's life: nothing secret.
     * With the material itself, every gRPC server kept its first generation's key and certificate past every
     * rotation (found by an outside tester). The watcher grpc-js adds next installs the current material,
     * before the server listens.
     */
    override _getSecureContextOptions(): SecureContextOptions | null {
      return {};
    }

    override _addWatcher(watcher: (context: SecureContextOptions | null) => void): void {
      super._addWatcher(watcher);
      const current = super._getSecureContextOptions();
      if (current) watcher(current);
      if (this.#stop === undefined) {
        this.#follow();
        // A rotation may have happened while nobody was bound: catch up.
        resolver.resolve().then(
          (resolved) => this.#install(contextOptions(resolved)),
          () => undefined,
        );
      }
    }

    override _removeWatcher(watcher: (context: SecureContextOptions | null) => void): void {
      super._removeWatcher(watcher);
      if (this.getWatcherCount() === 0) {
        this.#stop?.();
        this.#stop = undefined;
      }
    }

    _equals(other: ServerCredentials): boolean {
      return other === this;
    }
  }

  return hidden(
    new ResolverServerCredentials(contextOptions(first)),
    `ResolverServerCredentials { requireClientCert: ${requireClientCert} }`,
  );
}

const toBuffer = (value: string | Buffer) => (typeof value === 'string' ? Buffer.from(value) : value);

/** The PEM text of a field that may be one value or a list; undefined where the field is absent. */
function pemOf(value: unknown, field: string): Buffer | undefined {
  if (value === undefined) return undefined;
  const items = (Array.isArray(value) ? value : [value]) as unknown[];
  const parts: Buffer[] = [];
  for (const entry of items) {
    // A key comes as `{ pem }` (with `passphrase` when encrypted, which grpc-js cannot take).
    const item =
      typeof entry === 'object' &&
      entry !== null &&
      'pem' in entry &&
      !('passphrase' in entry && entry.passphrase)
        ? (entry as { pem: unknown }).pem
        : entry;
    if (typeof item !== 'string' && !Buffer.isBuffer(item)) {
      throw new ConfigurationError(
        `grpcChannelCredentials: ${field} must be PEM text; grpc-js certificate providers take no passphrase or pfx`,
        { field },
      );
    }
    parts.push(toBuffer(item), Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

interface ChannelMaterial {
  readonly ca: Buffer | undefined;
  readonly identity: { certificate: Buffer; privateKey: Buffer } | undefined;
}

function channelMaterial(resolved: ResolvedOptions): ChannelMaterial {
  if (resolved.pfx !== undefined || resolved.passphrase !== undefined) {
    throw new ConfigurationError(
      'grpcChannelCredentials: grpc-js certificate providers take a PEM key and cert, not pfx or an encrypted key',
      { field: resolved.pfx !== undefined ? 'pfx' : 'passphrase' },
    );
  }
  if (Array.isArray(resolved.key) && resolved.key.length > 1) {
    throw new ConfigurationError('grpcChannelCredentials: one client key and cert, not several', {
      field: 'key',
    });
  }
  const key = pemOf(Array.isArray(resolved.key) ? resolved.key[0] : resolved.key, 'key');
  const cert = pemOf(resolved.cert, 'cert');
  if ((key === undefined) !== (cert === undefined)) {
    throw new ConfigurationError('grpcChannelCredentials: a client certificate needs both key and cert', {
      field: key === undefined ? 'key' : 'cert',
    });
  }
  return {
    ca: pemOf(resolved.ca, 'ca'),
    identity: key && cert ? { certificate: cert, privateKey: key } : undefined,
  };
}

/**
 * A grpc-js CertificateProvider answering from the resolver. Listeners are called on a later tick, never
 * inside `add…Listener`: grpc-js registers what waits for the update only after adding its listener.
 */
function resolverCertificateProvider(resolver: Resolver, first: ChannelMaterial): CertificateProvider {
  let latest = first;
  const caListeners = new Set<CaListener>();
  const identityListeners = new Set<IdentityListener>();
  let stop: (() => void) | undefined;
  const caUpdate = () =>
    hidden({ caCertificate: latest.ca ?? Buffer.from(rootCertificates.join('\n')) }, '[CA certificates]');
  const identityUpdate = () =>
    latest.identity ? hidden({ ...latest.identity }, '[redacted client certificate and key]') : null;

  const apply = (resolved: ResolvedOptions) => {
    let next: ChannelMaterial;
    try {
      next = channelMaterial(resolved);
      createSecureContext({ ca: next.ca, cert: next.identity?.certificate, key: next.identity?.privateKey });
    } catch {
      // The resolver validated the bundle; one grpc-js cannot take keeps the previous material serving.
      return;
    }
    latest = next;
    for (const listener of caListeners) listener(caUpdate());
    for (const listener of identityListeners) listener(identityUpdate());
  };
  const changed = () => {
    const listening = caListeners.size + identityListeners.size > 0;
    if (listening && !stop) {
      stop = followRotations(resolver, apply);
      // Catch up with a rotation that happened while nobody listened.
      resolver.resolve().then(apply, () => undefined);
    } else if (!listening && stop) {
      stop();
      stop = undefined;
    }
  };
  return {
    addCaCertificateListener(listener) {
      caListeners.add(listener);
      changed();
      setImmediate(() => caListeners.has(listener) && listener(caUpdate()));
    },
    removeCaCertificateListener(listener) {
      caListeners.delete(listener);
      changed();
    },
    addIdentityCertificateListener(listener) {
      identityListeners.add(listener);
      changed();
      setImmediate(() => identityListeners.has(listener) && listener(identityUpdate()));
    },
    removeIdentityCertificateListener(listener) {
      identityListeners.delete(listener);
      changed();
    },
  };
}

/**
 * Channel credentials doing TLS (mutual, when the resolver has a key and cert) with the resolver's current
 * generation, resolved before this returns. New connections use the latest certificates; the client does not
 * need to be recreated.
 */
export async function grpcChannelCredentials(
  resolver: Resolver,
  options: GrpcChannelCredentialsOptions = {},
): Promise<ChannelCredentials> {
  const { servername, checkServerIdentity: extraCheck } = options;
  if (servername !== undefined && (typeof servername !== 'string' || servername === '')) {
    throw new ConfigurationError('grpcChannelCredentials: servername must be a non-empty host name');
  }
  const grpc = await loadGrpc('grpcChannelCredentials');
  const first = channelMaterial(await resolver.resolve());
  // A client certificate must allow client auth: the generation served now is checked here, later ones by
  // the gate.
  resolver.declareRole('client');
  const provider = resolverCertificateProvider(resolver, first);
  const verify: VerifyOptions = {};
  if (servername !== undefined || extraCheck !== undefined) {
    verify.checkServerIdentity = (host, cert) =>
      checkServerIdentity(servername ?? host, cert) ?? extraCheck?.(servername ?? host, cert);
  }
  const credentials = grpc.experimental.createCertificateProviderChannelCredentials(
    provider,
    first.identity ? provider : null,
    verify,
  );
  if (servername !== undefined) sendServername(credentials, servername);
  return hidden(
    credentials,
    `ResolverChannelCredentials { clientCertificate: ${first.identity !== undefined} }`,
  );
}

/**
 * grpc-js sends the target's host as the TLS server name unless the channel has
 * `grpc.ssl_target_name_override`; Node 26 throws for an IP address there (ERR_INVALID_ARG_VALUE), so an IP
 * target could not connect at all. The override is given for the channels these credentials serve, through
 * the hook grpc-js calls per subchannel (`_createSecureConnector`, in 1.13 and 1.14); a channel's own
 * override still wins. The identity check stays ours (`verify.checkServerIdentity`, on `servername`).
 */
function sendServername(credentials: ChannelCredentials, servername: string): void {
  type Connectable = {
    _createSecureConnector?: (target: unknown, options: object, ...rest: unknown[]) => unknown;
  };
  const connectable = credentials as unknown as Connectable;
  const create = connectable._createSecureConnector?.bind(credentials);
  if (!create) return;
  connectable._createSecureConnector = (target, options, ...rest) =>
    create(target, { 'grpc.ssl_target_name_override': servername, ...options }, ...rest);
}
