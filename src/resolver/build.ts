/**
 * The build step: assembles a candidate generation from the latest fetched values and validates it. The
 * swap (in the Resolver) then installs it whole, or the served generation stays.
 */
import { createHash } from 'node:crypto';
import type { SecureContext, SecureContextOptions } from 'node:tls';
import { FetchError } from '../errors.js';
import { describeRef, isSecretRef } from '../provider.js';
import { redactOptions } from '../redact.js';
import { transformValue } from '../transform.js';
import type { CertificateInfo, ResolvedOptions, Role, SecretField, TlsSecretsSpec } from '../types.js';
import {
  type Item,
  type Material,
  type ValidatedBundle,
  validateMaterial,
  type WithPassphrase,
} from '../validate.js';
import type { Unit } from './fetch.js';
import type { Shape, Slot } from './spec.js';

/**
 * A helper that serves a context of its own, built with its complete options (a server: its ciphers, ticket
 * keys, sessionIdContext). Its context is built in the validation of every candidate (`bundle.buildContexts()`),
 * as the candidate's only build, and installed when the candidate is swapped in: the context that was
 * validated is the one in use.
 */
export interface ContextProfile {
  /**
   * The complete context options for a candidate with these secret options, and what to do with the built
   * context once the candidate is swapped in. Must change nothing itself: the candidate may still be refused.
   */
  prepare(secretOptions: SecureContextOptions): {
    readonly options: SecureContextOptions;
    install(context: SecureContext): void;
  };
}

export interface Generation {
  readonly number: number;
  readonly options: ResolvedOptions;
  readonly resolved: Promise<ResolvedOptions>;
  readonly bundle: ValidatedBundle;
  readonly digest: string;
  readonly slotDigests: ReadonlyMap<string, string>;
  /** Per field path, what was served: the store's version and when it was fetched. */
  readonly versions: Readonly<Record<string, string | undefined>>;
  readonly fetchedAt: Readonly<Record<string, number | undefined>>;
  /** `expiring:<key>` / `expired:<key>` events already emitted for this generation. */
  readonly sent: Set<string>;
  /** Installs each profile's context, built in this generation's validation. */
  readonly installs: ReadonlyMap<ContextProfile, () => void>;
}

export interface BuildInput {
  readonly number: number;
  readonly previous: Generation | undefined;
  readonly shape: Shape;
  readonly unitBySlot: ReadonlyMap<Slot, Unit>;
  readonly passThrough: Omit<TlsSecretsSpec, SecretField | 'psk'>;
  readonly verifyChain: boolean;
  readonly now: number;
  /** CA entries parsed for the previous generation, by content: reused, not parsed again. */
  readonly caCache: ReadonlyMap<string, CertificateInfo>;
  /** The roles the helpers declared: every certificate's (extended) key usage must allow each. */
  readonly roles: ReadonlySet<Role>;
  /** Helpers whose own contexts this validation builds (servers). */
  readonly profiles: readonly ContextProfile[];
}

/**
 * The candidate generation, or `previous` itself when no value changed. Throws a typed error naming field
 * and reference when the material is refused. Returns the CA cache of the bundle just validated.
 */
export function buildGeneration(input: BuildInput): {
  generation: Generation;
  caCache: ReadonlyMap<string, CertificateInfo>;
} {
  const slotDigests = new Map<string, string>();
  const versions: Record<string, string | undefined> = {};
  const fetchedAt: Record<string, number | undefined> = {};
  const item = (slot: Slot): Item => {
    const unit = input.unitBySlot.get(slot);
    let value: string | Buffer;
    let ref = 'literal';
    if (unit && isSecretRef(slot.source)) {
      ref = describeRef(slot.source);
      const raw = unit.result?.value;
      if (raw === undefined) throw new FetchError('no value fetched yet', { field: slot.path, ref });
      const options = slot.source.options;
      const transformRef =
        slot.binary && !options.encoding
          ? { ...slot.source, options: { ...options, encoding: 'binary' as const } }
          : slot.source;
      value = transformValue(transformRef, raw, slot.path);
      versions[slot.path] = unit.result?.version;
      fetchedAt[slot.path] = unit.fetchedAt;
    } else {
      value = slot.source as string | Buffer;
    }
    slotDigests.set(slot.path, createHash('sha256').update(value).digest('hex'));
    return { path: slot.path, ref, value };
  };
  const withPassphrase = (entry: { pem: Slot; passphrase?: Slot }): WithPassphrase => {
    const base = item(entry.pem);
    return entry.passphrase ? { ...base, passphrase: item(entry.passphrase) } : base;
  };
  const { shape, previous } = input;
  const material: Material = {
    key: shape.key.map(withPassphrase),
    cert: shape.cert.map(item),
    ca: shape.ca.map(item),
    crl: shape.crl.map(item),
    pfx: shape.pfx.map(withPassphrase),
    ...(shape.passphrase ? { passphrase: item(shape.passphrase) } : {}),
    ...(shape.ticketKeys ? { ticketKeys: item(shape.ticketKeys) } : {}),
    ...(shape.dhparam ? { dhparam: item(shape.dhparam) } : {}),
    psk: shape.psk.map(({ identity, slot }) => ({ identity, item: item(slot) })),
  };
  const digest = createHash('sha256')
    .update([...slotDigests].map(([path, hash]) => `${path}=${hash}`).join('\n'))
    .digest('hex');
  if (previous && digest === previous.digest) return { generation: previous, caCache: input.caCache };

  const caCache = { previous: input.caCache, next: new Map<string, CertificateInfo>() };
  const prepared: { profile: ContextProfile; install(context: SecureContext): void }[] = [];
  const bundle = validateMaterial(material, {
    contexts: input.profiles.map((profile) => (secretOptions) => {
      const { options, install } = profile.prepare(secretOptions);
      prepared.push({ profile, install });
      return options;
    }),
    now: input.now,
    verifyChain: input.verifyChain,
    contextOptions: input.passThrough as SecureContextOptions,
    caCache,
    roles: input.roles,
    // The chain the served bundle presents: a candidate that lost an intermediate it carried is refused.
    previousChains: input.previous?.bundle.chains,
  });
  const { pskIdentity, ...passThrough } = input.passThrough;
  const options = { ...passThrough, ...bundle.options } as ResolvedOptions;
  // Enumerable, so that spreading the options carries the context; a getter, so that a resolver whose
  // server builds its own context builds this one only if a client asks for it.
  defineLazyContext(options, bundle);
  if (bundle.psk.size > 0) {
    const identity = pskIdentity ?? [...bundle.psk.keys()][0] ?? '';
    const psk = bundle.psk.get(identity);
    if (psk) options.pskCallback = pskAnswer(psk, identity);
  }
  redactOptions(options);
  const generation: Generation = {
    number: input.number,
    options,
    resolved: Promise.resolve(options),
    bundle,
    digest,
    slotDigests,
    versions,
    fetchedAt,
    sent: new Set(),
    installs: installsOf(prepared, bundle.contexts),
  };
  // Only the entries of the bundle just validated are kept: the cache never outgrows one generation.
  return { generation, caCache: caCache.next };
}

/*
 * The closures a generation keeps are made here, outside buildGeneration: a closure made in a function
 * shares that function's scope, and buildGeneration's holds the previous generation (`input.previous`), so
 * every generation kept the one before it alive (the soak grew 11 KB per rotation, without bound).
 */

/** `options.secureContext` as a getter: enumerable, so a spread carries it; built only if asked for. */
function defineLazyContext(
  options: ResolvedOptions,
  bundle: { readonly secureContext: SecureContext },
): void {
  Object.defineProperty(options, 'secureContext', {
    get: () => bundle.secureContext,
    enumerable: true,
    configurable: true,
  });
}

function installsOf(
  prepared: readonly { profile: ContextProfile; install(context: SecureContext): void }[],
  contexts: readonly (() => SecureContext)[],
): ReadonlyMap<ContextProfile, () => void> {
  return new Map(
    prepared.map(({ profile, install }, index) => [
      profile,
      () => {
        const context = contexts[index];
        if (context) install(context());
      },
    ]),
  );
}

function pskAnswer(psk: Buffer, identity: string): () => { psk: Buffer; identity: string } {
  return () => ({ psk, identity });
}
