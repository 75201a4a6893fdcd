/**
 * The validation gate: a bundle is swapped in only if everything here passes. Checks what
 * `tls.createSecureContext` lets through silently (mismatched key types, expired certificates, garbage in CA
 * bundles) as well as what it rejects with unhelpful messages (PFX mac failures, bad decrypts).
 */
import {
  createDiffieHellman,
  createHash,
  createPrivateKey,
  hkdfSync,
  type KeyObject,
  X509Certificate,
} from 'node:crypto';
import { Socket } from 'node:net';
import { createSecureContext, type SecureContext, type SecureContextOptions, TLSSocket } from 'node:tls';
import { crlFields, DerError, type UsageFields, usageFields } from './der.js';
import { InvalidMaterialError, safeCause } from './errors.js';
import { blockPath, fieldOf } from './field-path.js';
import { looksLikePem, type PemBlock, PemSyntaxError, parsePem, pemBytes, splitPem } from './pem.js';
import type { CertificateInfo, Role } from './types.js';

/** One value and where it came from, for error messages. */
export interface Item {
  readonly path: string;
  readonly ref: string;
  readonly value: string | Buffer;
}

export interface WithPassphrase extends Item {
  readonly passphrase?: Item;
}

export interface Material {
  key: WithPassphrase[];
  cert: Item[];
  ca: Item[];
  crl: Item[];
  pfx: WithPassphrase[];
  passphrase?: Item;
  ticketKeys?: Item;
  dhparam?: Item;
  psk: { identity: string; item: Item }[];
}

/** One presented certificate's usage extensions, kept so that a role declared later is checked without parsing. */
export interface PresentedUsage {
  readonly field: string;
  readonly ref: string;
  readonly serialNumber: string;
  /** The leaf (its key usage matters) or an intermediate of its chain (its extended key usage restricts). */
  readonly leaf: boolean;
  readonly usage: UsageFields;
  /** A CA certificate as OpenSSL's X509_check_ca() has one (basicConstraints CA:TRUE). */
  readonly ca: boolean;
  /** Issued by its own name: a root, which peers take from their trust store rather than check. */
  readonly selfIssued: boolean;
}

/** An intermediate a presented chain reached, and where it came from (`cert#1`, or a CA entry `ca#2`). */
export interface ReachedIntermediate {
  readonly cert: X509Certificate;
  readonly field: string;
  readonly ref: string;
}

/** What a presented chain reached, for the next generation to be compared with. */
export interface ChainRecord {
  /**
   * The intermediates (not the self-signed root: peers anchor on their own copy) of the chain OpenSSL
   * presents for the leaf, each linked to the certificate below it by signature. A few per leaf.
   */
  readonly reached: readonly ReachedIntermediate[];
}

export interface ValidatedBundle {
  /** The secret fields in the form Node takes them (lists split per entry, PEM in canonical form). */
  readonly options: SecureContextOptions;
  /** Built by `buildContexts()` where there are no `ValidateOptions.contexts`, else on first use. */
  readonly secureContext: SecureContext;
  /** The contexts of `ValidateOptions.contexts`, in their order, built by `buildContexts()`. */
  readonly contexts: readonly (() => SecureContext)[];
  /**
   * Builds the contexts the material is accepted on (the consumers' contexts, or the bundle's own where
   * there are none), or throws InvalidMaterialError. Apart from the checks above so that the caller can
   * run it in a turn of its own: a context costs as much as parsing every CA entry again, and the two in one
   * turn stalled the event loop twice as long as the build alone.
   */
  buildContexts(): void;
  /**
   * Presented certificates: leaves, and intermediates of their chains (kind `intermediate`): from `cert`
   * (`cert#1`), or CA entries OpenSSL presents in a leaf-only chain (`ca#1`).
   */
  readonly certificates: readonly CertificateInfo[];
  /**
   * The CA entries; their expiry is reported, not enforced (bundles often carry expired roots), except for
   * those OpenSSL presents in a chain, which are also in `certificates` as intermediates.
   */
  readonly authorities: readonly CertificateInfo[];
  /** The CRLs (kind `crl`): notBefore/notAfter are thisUpdate/nextUpdate. */
  readonly crls: readonly CertificateInfo[];
  /**
   * Everything dated that the resolver must watch, in one list: presented certificates (CA entries in a
   * presented chain among them, as intermediates), CRLs (their expiry breaks every handshake: enforced) and
   * the other CA entries still valid at validation (reported only). Expiring and expired events,
   * refresh-ahead points and status() dates come from here.
   */
  readonly deadlines: readonly CertificateInfo[];
  /**
   * Earliest notAfter of what is enforced: every presented certificate (CA entries presented in a chain
   * too) and every CRL's nextUpdate.
   */
  readonly notAfter: Date | undefined;
  readonly psk: ReadonlyMap<string, Buffer>;
  /** Usage extensions of the presented certificates, for `checkRoles`. */
  readonly usages: readonly PresentedUsage[];
  /** Per `cert` field path, what its chain reached: the next validation refuses a chain that lost an intermediate. */
  readonly chains: ReadonlyMap<string, ChainRecord>;
  /**
   * A digest of who may connect (the canonical `ca` and `crl` entries), not secret: a server whose trust
   * digest changes must stop resuming sessions made under the old one.
   */
  readonly trustDigest: string;
}

export interface ValidateOptions {
  readonly now: number;
  readonly verifyChain: boolean;
  /** Non-secret context options (ciphers, minVersion, …) that the final context is built with. */
  readonly contextOptions: SecureContextOptions;
  /**
   * What the previous validation learnt of each CA entry and CRL, by PEM text: a rotation of one entry in a
   * large bundle then parses one certificate, not all of them, and an unchanged CRL builds no context to be
   * parsed again. Filled with this validation's entries. (Small records, not X509Certificate objects, which
   * hold native memory: ~12 KB each.)
   */
  readonly caCache?: {
    readonly previous: ReadonlyMap<string, CertificateInfo>;
    readonly next: Map<string, CertificateInfo>;
  };
  /** The roles the material is used in (server, client): every presented certificate must allow them. */
  readonly roles?: ReadonlySet<Role>;
  /**
   * What the served bundle's chains reached: a chain that carried an intermediate must not lose it (a write
   * in progress). The chains only, not the bundle: whatever a new bundle keeps of its options must not keep
   * the bundle before it, and through it every earlier one.
   */
  readonly previousChains?: ReadonlyMap<string, ChainRecord>;
  /**
   * Contexts other consumers will use as they are (a server's, built with its complete options), each given
   * the secret options and answering the complete options of its context. They are built by
   * `buildContexts()`, so that one that cannot be built refuses the material, and they are the only build:
   * `secureContext` (the context with `contextOptions`) is then built on first use.
   */
  readonly contexts?: readonly ((secretOptions: SecureContextOptions) => SecureContextOptions)[];
}

const invalid = (item: Pick<Item, 'path' | 'ref'>, reason: string, cause?: unknown) =>
  new InvalidMaterialError(reason, {
    field: item.path,
    ref: item.ref,
    cause: cause === undefined ? undefined : safeCause(cause),
  });

const text = (value: string | Buffer) => (typeof value === 'string' ? value : value.toString('latin1'));

/** PEM blocks by OpenSSL's rules (see pem.ts), each in canonical form; a syntax error names the line. */
function pemBlocks(item: Item, what: string): PemBlock[] {
  try {
    return parsePem(pemBytes(item.value));
  } catch (err) {
    if (err instanceof PemSyntaxError)
      throw invalid(item, `${what} is not a clean PEM bundle: ${err.message}`);
    throw err;
  }
}

/**
 * A PEM value split into one entry per block, each still attributed to its source and in canonical form
 * (the text OpenSSL is given is the text validated). A DER value stays one entry.
 */
function splitEntries(item: Item, expectedLabels: readonly string[], what: string): Item[] {
  if (!looksLikePem(item.value)) return [item];
  const blocks = pemBlocks(item, what);
  return blocks.map((block, index) => {
    if (!expectedLabels.includes(block.label)) {
      throw invalid(
        item,
        `${what} entry ${index} is a "${block.label}" block, expected ${expectedLabels.join(' or ')}`,
      );
    }
    return {
      path: blockPath(item.path, index, blocks.length),
      ref: item.ref,
      value: block.text,
    };
  });
}

const KEY_LABELS = [
  'PRIVATE KEY',
  'ENCRYPTED PRIVATE KEY',
  'RSA PRIVATE KEY',
  'EC PRIVATE KEY',
  'DSA PRIVATE KEY',
];
/** Blocks OpenSSL skips in a key file without harm: `openssl ecparam -genkey` output, key+cert files. */
const BESIDE_KEY_LABELS = ['EC PARAMETERS', 'CERTIFICATE', 'TRUSTED CERTIFICATE'];

/** The one private key block of a PEM key value, canonical; other blocks are refused or dropped. */
function canonicalKey(item: WithPassphrase): WithPassphrase {
  if (!looksLikePem(item.value)) return item;
  const blocks = pemBlocks(item, 'private key');
  const keys = blocks.filter((block) => KEY_LABELS.includes(block.label));
  const other = blocks.find(
    (block) => !KEY_LABELS.includes(block.label) && !BESIDE_KEY_LABELS.includes(block.label),
  );
  if (other) throw invalid(item, `private key value holds a "${other.label}" block`);
  const [key] = keys;
  if (!key) throw invalid(item, 'private key value holds no private key block');
  if (keys.length > 1)
    throw invalid(item, `private key value holds ${keys.length} private keys, expected one`);
  return { ...item, value: key.text };
}

function parseCertificate(item: Item, what: string): X509Certificate {
  try {
    return new X509Certificate(item.value);
  } catch (err) {
    throw invalid(item, `${what} is not a parsable X.509 certificate`, err);
  }
}

function certificateInfo(
  item: Item,
  cert: X509Certificate,
  kind: CertificateInfo['kind'] = 'leaf',
): CertificateInfo {
  return {
    kind,
    field: item.path,
    ref: item.ref,
    subject: cert.subject,
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
  };
}

function checkValidityWindow(item: Item, info: CertificateInfo, now: number, where = ''): void {
  const which = info.kind === 'intermediate' ? 'intermediate certificate' : 'certificate';
  if (now < info.notBefore.getTime()) {
    throw invalid(
      item,
      `${which} ${info.serialNumber}${where} is not valid before ${info.notBefore.toISOString()}`,
    );
  }
  if (now > info.notAfter.getTime()) {
    throw invalid(item, `${which} ${info.serialNumber}${where} expired at ${info.notAfter.toISOString()}`);
  }
}

function isEncryptedPem(value: string | Buffer): boolean {
  const head = text(value);
  return head.includes('ENCRYPTED PRIVATE KEY') || head.includes('Proc-Type: 4,ENCRYPTED');
}

function parsePrivateKey(item: WithPassphrase, sharedPassphrase: Item | undefined): KeyObject {
  const passphrase = item.passphrase ?? sharedPassphrase;
  if (isEncryptedPem(item.value) && !passphrase)
    throw invalid(item, 'private key is encrypted and no passphrase is given');
  try {
    return createPrivateKey({
      key: item.value,
      ...(passphrase
        ? {
            passphrase: typeof passphrase.value === 'string' ? passphrase.value : passphrase.value.toString(),
          }
        : {}),
    });
  } catch (err) {
    if (passphrase && isEncryptedPem(item.value)) {
      throw invalid(item, `private key cannot be decrypted with the passphrase from ${passphrase.ref}`, err);
    }
    throw invalid(item, 'not a parsable private key', err);
  }
}

/** The certificate a PFX carries, read back from a context built from it (Node has no PKCS#12 parser). */
function pfxLeaf(context: SecureContext): X509Certificate | undefined {
  const socket = new TLSSocket(new Socket(), { secureContext: context, isServer: true });
  try {
    return socket.getX509Certificate();
  } finally {
    socket.destroy();
  }
}

/**
 * The leaf's issuer among the certificates a PFX carries, read back from a context built from it with an
 * empty store; undefined for a PFX holding its leaf alone (or a self-signed one). A PFX's further chain
 * certificates are not readable without a PKCS#12 parser.
 */
function pfxIssuer(context: SecureContext): X509Certificate | undefined {
  const native = (context as { context?: { getIssuer?: () => Buffer | null | undefined } }).context;
  const der = native?.getIssuer?.();
  if (!der) return undefined;
  const issuer = new X509Certificate(der);
  return issuedBy(issuer, issuer) ? undefined : issuer;
}

/** Reads a DER length at `offset`: [length, offset of the content]. */
function derLength(der: Buffer, offset: number): [number, number] {
  const first = der[offset] ?? 0;
  if (first < 0x80) return [first, offset + 1];
  const bytes = first & 0x7f;
  let length = 0;
  for (let i = 1; i <= bytes; i++) length = length * 256 + (der[offset + i] ?? 0);
  return [length, offset + 1 + bytes];
}

/** The prime and generator of PEM `DH PARAMETERS` (DER SEQUENCE { INTEGER p, INTEGER g }), or undefined. */
function dhPrimeAndGenerator(pem: string): { prime: Buffer; generator: Buffer } | undefined {
  const blocks = splitPem(pem);
  if (blocks?.length !== 1 || blocks[0]?.label !== 'DH PARAMETERS') return undefined;
  const der = Buffer.from(blocks[0].text.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  if (der[0] !== 0x30) return undefined;
  const [, body] = derLength(der, 1);
  const integers: Buffer[] = [];
  let offset = body;
  for (let i = 0; i < 2; i++) {
    if (der[offset] !== 0x02) return undefined;
    const [length, start] = derLength(der, offset + 1);
    if (start + length > der.length) return undefined;
    integers.push(der.subarray(start, start + length));
    offset = start + length;
  }
  const [prime, generator] = integers;
  return prime && generator ? { prime, generator } : undefined;
}

/** Node drops unusable DH parameters silently (DHE ciphers just vanish): check them here instead. */
function checkDhParameters(item: Item): void {
  const parsed = dhPrimeAndGenerator(text(item.value));
  if (!parsed)
    throw invalid(item, 'dhparam is not a single PEM "DH PARAMETERS" block of a prime and a generator');
  let bits = parsed.prime.length * 8;
  while (bits > 0 && (parsed.prime[parsed.prime.length - bits / 8] ?? 0) === 0) bits -= 8;
  if (bits < 2048) throw invalid(item, `dhparam prime has ${bits} bits, at least 2048 are needed`);
  let verifyError: number;
  try {
    verifyError = createDiffieHellman(parsed.prime, parsed.generator).verifyError;
  } catch (err) {
    throw invalid(item, 'dhparam cannot be used', err);
  }
  // DH_CHECK_P_NOT_PRIME (1) and DH_CHECK_P_NOT_SAFE_PRIME (2) make the group unsafe.
  if (verifyError & 0x03)
    throw invalid(item, `dhparam prime fails OpenSSL's check (verifyError ${verifyError})`);
}

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
/** Server Gated Crypto (Netscape, Microsoft): OpenSSL still accepts them for a server (XKU_SGC). */
const SGC = ['2.16.840.1.113730.4.1', '1.3.6.1.4.1.311.10.3.3'];
const KU_DIGITAL_SIGNATURE = 0x80;
const KU_KEY_ENCIPHERMENT = 0x20;
const KU_KEY_AGREEMENT = 0x08;
const KU_KEY_CERT_SIGN = 0x04;

/**
 * Signature algorithms OpenSSL refuses in a chain at its default security level (1 and up): a certificate
 * signed with one fails every OpenSSL peer (CA signature digest algorithm too weak).
 */
const WEAK_SIGNATURES = new Map([
  ['1.2.840.113549.1.1.5', 'SHA-1 with RSA'],
  ['1.2.840.113549.1.1.4', 'MD5 with RSA'],
  ['1.2.840.113549.1.1.2', 'MD2 with RSA'],
  ['1.2.840.10045.4.1', 'ECDSA with SHA-1'],
  ['1.2.840.10040.4.3', 'DSA with SHA-1'],
]);

/**
 * What every OpenSSL peer refuses in a presented certificate whatever its role: a critical extension it does
 * not handle, a signature too weak for its default security level. The root on top is not checked: peers
 * anchor on their own copy.
 */
function checkPeersCanVerify(usages: readonly PresentedUsage[]): void {
  for (const presented of usages) {
    if (!presented.leaf && presented.selfIssued) continue;
    const which = presented.leaf ? 'certificate' : 'intermediate certificate';
    const where = { path: presented.field, ref: presented.ref };
    const [unhandled] = presented.usage.unhandledCritical;
    if (unhandled !== undefined) {
      throw invalid(
        where,
        `${which} ${presented.serialNumber} has a critical extension OpenSSL does not handle (${unhandled}): every peer refuses it`,
      );
    }
    const weak = WEAK_SIGNATURES.get(presented.usage.signatureAlgorithm);
    if (weak) {
      throw invalid(
        where,
        `${which} ${presented.serialNumber} is signed with ${weak}: peers at OpenSSL's default security level refuse it`,
      );
    }
  }
}

/** What OpenSSL's purpose check (`X509_check_purpose`, ssl_server / ssl_client) requires, by role. */
const PURPOSE = {
  server: {
    eku: [SERVER_AUTH, ...SGC],
    ekuName: 'serverAuth',
    keyUsage: KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT | KU_KEY_AGREEMENT,
    keyUsageName: 'digitalSignature, keyEncipherment or keyAgreement',
    nsCertType: 0x40,
  },
  client: {
    eku: [CLIENT_AUTH],
    ekuName: 'clientAuth',
    keyUsage: KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT,
    keyUsageName: 'digitalSignature or keyAgreement',
    nsCertType: 0x80,
  },
} as const;

/**
 * Throws InvalidMaterialError when a presented certificate does not allow one of the roles: its peers would
 * fail every handshake with INVALID_PURPOSE (OpenSSL checks the leaf's key usage and the extended key usage
 * of the leaf and of every intermediate). Runs on the validated records, no parsing: cheap for a role
 * declared after the bundle was validated.
 */
export function checkRoles(bundle: Pick<ValidatedBundle, 'usages'>, roles: Iterable<Role>): void {
  for (const role of roles) {
    const purpose = PURPOSE[role];
    for (const presented of bundle.usages) {
      // A root sent along is not what peers check: they verify up to the copy in their own trust store.
      if (!presented.leaf && presented.selfIssued) continue;
      const { extKeyUsage, keyUsage, nsCertType } = presented.usage;
      const which = presented.leaf ? 'certificate' : 'intermediate certificate';
      const where = { path: presented.field, ref: presented.ref };
      if (extKeyUsage && !extKeyUsage.some((id) => (purpose.eku as readonly string[]).includes(id))) {
        throw invalid(
          where,
          `${which} ${presented.serialNumber} is used as a ${role} but its extended key usage lacks ${purpose.ekuName}`,
        );
      }
      // OpenSSL reads a Netscape type on a leaf only: on a CA with basicConstraints (required below) it does not.
      if (presented.leaf && nsCertType !== undefined && !(nsCertType & purpose.nsCertType)) {
        throw invalid(
          where,
          `${which} ${presented.serialNumber} is used as a ${role} but its Netscape certificate type excludes it`,
        );
      }
      // Peers verify an intermediate as strictly as OpenSSL's X509_V_FLAG_X509_STRICT: basicConstraints CA:TRUE,
      // and a key usage (when there is one) that allows certificate signing.
      if (!presented.leaf && keyUsage !== undefined && !(keyUsage & KU_KEY_CERT_SIGN)) {
        throw invalid(
          where,
          `${which} ${presented.serialNumber} is presented as an issuer but its key usage lacks keyCertSign: every peer refuses the chain`,
        );
      }
      if (!presented.leaf && !presented.ca) {
        throw invalid(
          where,
          `${which} ${presented.serialNumber} is presented as an issuer but is not a CA certificate (no basicConstraints CA:TRUE): every peer refuses the chain`,
        );
      }

      if (presented.leaf && keyUsage !== undefined && !(keyUsage & purpose.keyUsage)) {
        throw invalid(
          where,
          `certificate ${presented.serialNumber} is used as a ${role} but its key usage lacks ${purpose.keyUsageName}`,
        );
      }
    }
  }
}

function presentedUsage(item: Item, cert: X509Certificate, leaf: boolean): PresentedUsage {
  let usage: UsageFields;
  try {
    usage = usageFields(cert.raw);
  } catch (err) {
    if (!(err instanceof DerError)) throw err;
    throw invalid(item, `certificate ${cert.serialNumber} has extensions that cannot be read`);
  }
  return {
    field: item.path,
    ref: item.ref,
    serialNumber: cert.serialNumber,
    leaf,
    usage,
    ca: cert.ca,
    selfIssued: cert.checkIssued(cert),
  };
}

/** The CRL's issuer, number and dates, read from its DER (checked by checkCrlDates). */
function crlInfo(item: Item): CertificateInfo {
  let der: Buffer;
  if (looksLikePem(item.value)) {
    const [block] = parsePem(pemBytes(item.value));
    der = Buffer.from((block?.text ?? '').replace(/-----[^\n]*-----/g, '').replace(/\s/g, ''), 'base64');
  } else {
    der = Buffer.isBuffer(item.value) ? item.value : Buffer.from(item.value, 'latin1');
  }
  let fields: ReturnType<typeof crlFields>;
  try {
    fields = crlFields(der);
  } catch (err) {
    if (!(err instanceof DerError)) throw err;
    throw invalid(item, 'CRL cannot be parsed');
  }
  const digest = createHash('sha256').update(der).digest('hex').toUpperCase();
  return {
    kind: 'crl',
    field: item.path,
    ref: item.ref,
    subject: fields.issuer,
    serialNumber: fields.number ?? '',
    fingerprint256: digest.match(/../g)?.join(':') ?? digest,
    notBefore: fields.thisUpdate,
    // No nextUpdate: never stale by date; the far future keeps the record's type simple.
    notAfter: fields.nextUpdate ?? new Date(NO_NEXT_UPDATE),
  };
}

const NO_NEXT_UPDATE = 8.64e15;

/** A CRL OpenSSL would refuse at every handshake by its dates (CRL_NOT_YET_VALID, CRL_HAS_EXPIRED). */
function checkCrlDates(item: Item, info: CertificateInfo, now: number): void {
  if (now < info.notBefore.getTime()) {
    throw invalid(item, `CRL is not valid before its thisUpdate ${info.notBefore.toISOString()}`);
  }
  if (info.notAfter.getTime() !== NO_NEXT_UPDATE && now > info.notAfter.getTime()) {
    throw invalid(
      item,
      `CRL expired at its nextUpdate ${info.notAfter.toISOString()} (every peer would be refused with CRL_HAS_EXPIRED)`,
    );
  }
}

/** One context, or InvalidMaterialError on `at` (the entry most likely at fault). */
function buildContext(contextOptions: SecureContextOptions, at: Pick<Item, 'path' | 'ref'>): SecureContext {
  try {
    return createSecureContext(contextOptions);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw invalid(at, `TLS context cannot be built${code ? ` (${code})` : ''}`, err);
  }
}

/**
 * A context built on first use, once. Outside validateMaterial on purpose: a closure made there shares its
 * scope, which holds `options` (and once held the previous bundle there, so each generation kept the one
 * before it alive: the soak grew 11 KB per rotation).
 */
function onFirstUse(
  contextOptions: SecureContextOptions,
  at: Pick<Item, 'path' | 'ref'>,
): () => SecureContext {
  let built: SecureContext | undefined;
  return () => {
    built ??= buildContext(contextOptions, at);
    return built;
  };
}

/**
 * The bundle with `secureContext` as a getter, made outside validateMaterial for the reason above: a getter
 * written in its return value kept its whole scope (the options, the material) alive as long as the bundle.
 */
function withLazyContext(
  fields: Omit<ValidatedBundle, 'secureContext'>,
  secureContext: () => SecureContext,
): ValidatedBundle {
  return {
    ...fields,
    get secureContext() {
      return secureContext();
    },
  };
}

/** `buildContexts()`: the consumers' contexts, or the bundle's own where there are none (outside, as above). */
function contextsBuilder(contexts: readonly (() => SecureContext)[], own: () => SecureContext): () => void {
  return () => {
    if (contexts.length === 0) own();
    for (const context of contexts) context();
  };
}

/**
 * Ticket keys from a store are shared by a fleet so that any server resumes any session. Under trust
 * material (`ca`, `crl`) they are bound to it: the keys OpenSSL gets are derived from the store's and the
 * trust digest, so every server with the same keys and the same trust still shares sessions, and a change
 * of trust (a CRL revoking a client, a CA dropped) makes every older ticket undecryptable.
 */
function boundTicketKeys(storeKeys: Buffer, trustDigest: string): Buffer {
  return Buffer.from(
    hkdfSync('sha256', storeKeys, Buffer.from(trustDigest, 'hex'), 'tls-secrets ticket keys', 48),
  );
}

export function validateMaterial(material: Material, options: ValidateOptions): ValidatedBundle {
  const { now } = options;
  const certificates: CertificateInfo[] = [];
  const usages: PresentedUsage[] = [];
  const chains = new Map<string, ChainRecord>();

  if (material.ticketKeys) {
    const bytes = material.ticketKeys.value;
    const length = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.length;
    if (typeof bytes === 'string' || length !== 48) {
      throw invalid(
        material.ticketKeys,
        `ticketKeys must be exactly 48 bytes, got ${length}${typeof bytes === 'string' ? ' of text (use encoding "base64" or "binary")' : ''}`,
      );
    }
  }

  const dhparam = material.dhparam && {
    ...material.dhparam,
    value: splitEntries(material.dhparam, ['DH PARAMETERS'], 'dhparam')[0]?.value ?? material.dhparam.value,
  };
  if (dhparam) checkDhParameters(dhparam);

  const psk = new Map<string, Buffer>();
  for (const { identity, item } of material.psk) {
    const bytes = typeof item.value === 'string' ? Buffer.from(item.value, 'utf8') : item.value;
    // OpenSSL's limit (PSK_MAX_PSK_LEN); below 16 bytes a PSK is guessable.
    if (bytes.length < 16 || bytes.length > 512) {
      throw invalid(item, `PSK for identity "${identity}" must be 16 to 512 bytes, got ${bytes.length}`);
    }
    psk.set(identity, bytes);
  }

  const ca = material.ca.flatMap((item) => splitEntries(item, ['CERTIFICATE', 'TRUSTED CERTIFICATE'], 'CA'));
  const authorities: CertificateInfo[] = [];
  const caValues: (string | Buffer)[] = [];
  const caEntries: CaEntry[] = [];
  /** CA entries by normalised subject: the candidates to stand in for a leaf's issuer, found without parsing. */
  const caBySubject = new Map<string, CaEntry[]>();
  for (const item of ca) {
    const key = typeof item.value === 'string' ? item.value : undefined;
    const known = key === undefined ? undefined : options.caCache?.previous.get(key);
    // verifyChain needs the certificates themselves; otherwise a known entry needs no parsing (a stand-in
    // candidate is parsed when a chain asks for it).
    const cert = known && !options.verifyChain ? undefined : parseCertificate(item, 'CA entry');
    const info: CertificateInfo = cert
      ? certificateInfo(item, cert, 'authority')
      : { ...(known as CertificateInfo), field: item.path, ref: item.ref };
    if (key !== undefined) options.caCache?.next.set(key, info);
    const entry: CaEntry = { item, info, cert };
    caEntries.push(entry);
    const byName = caBySubject.get(nameKey(info.subject));
    if (byName) byName.push(entry);
    else caBySubject.set(nameKey(info.subject), [entry]);
    authorities.push(info);
    // Node's ca option takes PEM only: a DER entry goes on as PEM.
    caValues.push(looksLikePem(item.value) || !cert ? item.value : cert.toString());
  }

  const crl = material.crl.flatMap((item) => splitEntries(item, ['X509 CRL'], 'CRL'));
  const crls: CertificateInfo[] = [];
  for (const item of crl) {
    // A CRL OpenSSL took before is not parsed again (that costs a context); its dates are checked every time.
    const key = typeof item.value === 'string' ? `X509 CRL\n${item.value}` : undefined;
    const known = key === undefined ? undefined : options.caCache?.previous.get(key);
    let info: CertificateInfo;
    if (known) {
      info = { ...known, field: item.path, ref: item.ref };
    } else {
      try {
        createSecureContext({ crl: item.value });
      } catch (err) {
        throw invalid(item, 'CRL cannot be parsed', err);
      }
      info = crlInfo(item);
    }
    checkCrlDates(item, info, now);
    if (key !== undefined) options.caCache?.next.set(key, info);
    crls.push(info);
  }

  const keyItems = material.key.map(canonicalKey);
  const keys = keyItems.map((item) => ({ item, key: parsePrivateKey(item, material.passphrase) }));

  const leaves: { item: Item; cert: X509Certificate; chain: X509Certificate[] }[] = [];
  // DER certificates parse here but Node's cert and ca options take PEM only: pass them on as PEM.
  const certValues: (string | Buffer)[] = [];
  /** CA entries OpenSSL presents in some leaf's chain: checked and dated as presented certificates. */
  const presentedAuthorities = new Set<CertificateInfo>();
  /**
   * The chain OpenSSL presents with `leaf` (the `extra` certificates given with it, else completed from the
   * CA entries): the CA entries it takes are checked and dated as presented certificates, and the chain must
   * keep what the served one reached.
   */
  const presentChain = (item: Item, leaf: X509Certificate, extra: readonly Link[]): void => {
    const presented = presentedChain({ cert: leaf, item }, extra, caBySubject, now);
    usages.push(presentedUsage(item, leaf, true));
    for (const link of presented.slice(1)) {
      const standIn = link.standIn;
      // Peers check the certificates on the path only (a stray one given along is sent, unused), and the root
      // at its top not at all: they anchor on their own copy.
      if (!standIn && !link.selfSigned) {
        const info = certificateInfo(link.item, link.cert, 'intermediate');
        checkValidityWindow(item, info, now);
        certificates.push(info);
      }
      if (!standIn) usages.push(presentedUsage(link.item, link.cert, false));
      if (!standIn || link.selfSigned || presentedAuthorities.has(standIn.info)) continue;
      // OpenSSL sends this CA entry to every peer as part of the chain: peers check it as they check the leaf.
      presentedAuthorities.add(standIn.info);
      const info = certificateInfo(standIn.item, link.cert, 'intermediate');
      checkValidityWindow(
        standIn.item,
        info,
        now,
        ` (a CA entry OpenSSL presents in the chain of ${item.path})`,
      );
      certificates.push(info);
      usages.push(presentedUsage(standIn.item, link.cert, false));
    }
    checkChainKept(item, presented, options.previousChains?.get(item.path), { extra, caBySubject });
    chains.set(item.path, {
      reached: presented
        .slice(1)
        .filter((link) => !link.selfSigned)
        .map((link) => ({ cert: link.cert, field: link.item.path, ref: link.item.ref })),
    });
  };
  for (const item of material.cert) {
    const pem = looksLikePem(item.value);
    const entries = pem ? splitEntries(item, ['CERTIFICATE'], 'certificate chain') : [item];
    const chain = entries.map((entry) => parseCertificate(entry, 'certificate'));
    // OpenSSL gets the blocks validated, not the text they came in.
    certValues.push(
      pem ? entries.map((entry) => text(entry.value)).join('\n') : (chain[0]?.toString() ?? item.value),
    );
    const [leaf] = chain;
    if (!leaf) continue;
    const info = certificateInfo(entries[0] ?? item, leaf, 'leaf');
    checkValidityWindow(item, info, now);
    certificates.push({ ...info, field: item.path });
    leaves.push({ item, cert: leaf, chain });
    const extra = chain.slice(1).map((cert, index) => ({ cert, item: entries[index + 1] ?? item }));
    presentChain(item, leaf, extra);
  }

  const [firstLeaf] = leaves;
  if (firstLeaf && keys.length === 0)
    throw invalid(firstLeaf.item, 'certificate given without a private key');

  // Node pairs keys and certificates by type; a P-256 key next to an RSA certificate is accepted silently
  // and every handshake then fails. Require each certificate to have its key, and each key its certificate.
  const unmatchedKeys = new Set(keys);
  for (const leaf of leaves) {
    const match = keys.find(({ key }) => leaf.cert.checkPrivateKey(key));
    if (!match) {
      const keyRefs = keys.map(({ item }) => item.ref).join(', ') || 'none';
      throw invalid(
        leaf.item,
        `certificate ${leaf.cert.serialNumber} does not match any private key (keys: ${keyRefs})`,
      );
    }
    unmatchedKeys.delete(match);
  }
  const [orphan] = unmatchedKeys;
  if (orphan && material.pfx.length === 0) {
    throw invalid(
      orphan.item,
      leaves.length ? 'private key matches no certificate' : 'private key given without a certificate',
    );
  }

  if (options.verifyChain) {
    const caCerts = caEntries.map(caCertificate);
    for (const leaf of leaves) {
      const issuers = [...leaf.chain.slice(1), ...caCerts];
      let current = leaf.cert;
      const seen = new Set<string>();
      while (!seen.has(current.fingerprint256)) {
        seen.add(current.fingerprint256);
        const issuer = issuers.find(
          (candidate) => current.checkIssued(candidate) && current.verify(candidate.publicKey),
        );
        if (!issuer) {
          throw invalid(
            leaf.item,
            `certificate ${current.serialNumber} (${current.subject}) is not signed by any given CA`,
          );
        }
        if (caCerts.includes(issuer)) break;
        current = issuer;
      }
    }
  }

  const pfx = material.pfx.map((item) => {
    const passphrase = item.passphrase ?? material.passphrase;
    const entry = {
      buf: Buffer.isBuffer(item.value) ? item.value : Buffer.from(item.value),
      passphrase: passphrase ? text(passphrase.value) : undefined,
    };
    let context: SecureContext;
    try {
      // No CA entries and no root certificates in its store: the issuer Node reads back (below) is then one
      // the PFX carries.
      context = createSecureContext({ pfx: [entry], ca: [] });
    } catch (err) {
      const message = err instanceof Error ? err.message : '';
      const reason = /mac verify|bad decrypt/i.test(message)
        ? `PFX cannot be opened: wrong or missing passphrase${passphrase ? ` (from ${passphrase.ref})` : ''}`
        : /unsupported/i.test(message)
          ? 'PFX uses an unsupported (legacy RC2) cipher: re-export it with AES, or run Node with --openssl-legacy-provider'
          : 'PFX cannot be parsed';
      throw invalid(item, reason, err);
    }
    const leaf = pfxLeaf(context);
    if (leaf) {
      const info = { ...certificateInfo(item, leaf), field: item.path };
      checkValidityWindow(item, info, now);
      certificates.push(info);
      // OpenSSL presents the PFX's own chain certificates, or, for a PFX holding its leaf alone, the chain it
      // completes from `ca`. Node reads back one chain certificate: the leaf's issuer.
      const issuer = pfxIssuer(context);
      presentChain(item, leaf, issuer ? [{ cert: issuer, item }] : []);
    }
    return entry;
  });

  checkPeersCanVerify(usages);
  if (options.roles) checkRoles({ usages }, options.roles);

  const trustDigest = createHash('sha256')
    .update(
      [...caValues, ...crl.map((item) => item.value)]
        .map((value) => createHash('sha256').update(value).digest('hex'))
        .join('\n'),
    )
    .digest('hex');

  const secretOptions: SecureContextOptions = {};
  if (keys.length) {
    secretOptions.key = keyItems.map((item) => {
      const passphrase = item.passphrase ?? material.passphrase;
      return passphrase ? { pem: item.value, passphrase: text(passphrase.value) } : { pem: item.value };
    });
  }
  if (certValues.length) secretOptions.cert = certValues;
  if (caValues.length) secretOptions.ca = caValues;

  if (crl.length) secretOptions.crl = crl.map((item) => item.value);
  if (pfx.length) secretOptions.pfx = pfx;
  if (material.passphrase) secretOptions.passphrase = text(material.passphrase.value);
  if (material.ticketKeys) {
    const storeKeys = material.ticketKeys.value as Buffer;
    secretOptions.ticketKeys =
      caValues.length || crl.length ? boundTicketKeys(storeKeys, trustDigest) : storeKeys;
  }
  if (dhparam) secretOptions.dhparam = dhparam.value;

  // Where a context is built, a failure names the entry most likely at fault.
  const blame = material.dhparam ??
    material.cert[0] ??
    material.key[0] ??
    material.ca[0] ?? { path: 'bundle', ref: 'bundle' };
  const failedAt = { path: blame.path, ref: blame.ref };
  // A context costs as much as parsing every CA entry again (milliseconds for a large bundle): where the
  // consumers' own contexts are built, the resolver's is left until something asks for it.
  const contexts = (options.contexts ?? []).map((complete) =>
    onFirstUse(complete({ ...secretOptions }), failedAt),
  );
  const secureContext = onFirstUse({ ...options.contextOptions, ...secretOptions }, failedAt);

  const enforced = [...certificates, ...crls];
  const notAfter = enforced.reduce<Date | undefined>(
    (earliest, info) => (!earliest || info.notAfter < earliest ? info.notAfter : earliest),
    undefined,
  );
  const deadlines = [
    ...enforced,
    ...authorities.filter((info) => info.notAfter.getTime() > now && !presentedAuthorities.has(info)),
  ];
  return withLazyContext(
    {
      options: secretOptions,
      contexts,
      buildContexts: contextsBuilder(contexts, secureContext),
      certificates,
      authorities,
      crls,
      deadlines,
      notAfter,
      psk,
      usages,
      chains,
      trustDigest,
    },
    secureContext,
  );
}

/** A CA entry, parsed only when needed: a rotation of a large bundle parses the entries that changed. */
interface CaEntry {
  readonly item: Item;
  readonly info: CertificateInfo;
  cert: X509Certificate | undefined;
}

function caCertificate(entry: CaEntry): X509Certificate {
  entry.cert ??= parseCertificate(entry.item, 'CA entry');
  return entry.cert;
}

/**
 * A distinguished name compared loosely (case, runs of spaces): only to find candidates, each of which is
 * then linked by signature. OpenSSL compares names in a canonical form that folds the same way.
 */
function nameKey(name: string): string {
  return name.toLowerCase().replace(/\s+/g, ' ').trim();
}

/**
 * `issuer` issued `cert`: its name is the one `cert` names AND its key verifies the signature. As OpenSSL
 * links a chain it sends and peers build one: whether the issuer may sign certificates (key usage, CA flag) is
 * checked afterwards, on the chain so linked, and a peer refuses it there (checkRoles).
 */
function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  if (nameKey(issuer.subject) !== nameKey(cert.issuer)) return false;
  try {
    return cert.verify(issuer.publicKey);
  } catch {
    // A key OpenSSL cannot use (a damaged CA entry of the right name) issues nothing.
    return false;
  }
}

const validAt = (cert: X509Certificate, now: number) =>
  new Date(cert.validFrom).getTime() <= now && now <= new Date(cert.validTo).getTime();

/** One certificate of a presented chain, and where it came from. */
interface Link {
  readonly cert: X509Certificate;
  readonly item: Item;
  /** The CA entry it is, when OpenSSL takes it from `ca` (a leaf-only `cert`). */
  readonly standIn?: CaEntry;
  /** Signed by its own key: the chain's root, which peers take from their own trust store. */
  selfSigned?: boolean;
}

/**
 * The chain OpenSSL presents for `leaf`, each certificate linked to the one below it by signature (a name is
 * not enough: an intermediate of the same name with another key signs nothing here). A `cert` value with
 * chain entries is sent as given (OpenSSL does not add CA entries to it); a leaf alone is completed from
 * the CA entries, as OpenSSL's auto-chaining does, choosing among equal candidates one valid now.
 */
function presentedChain(
  leaf: Link,
  extra: readonly Link[],
  caBySubject: ReadonlyMap<string, readonly CaEntry[]>,
  now: number,
): Link[] {
  const chain: Link[] = [leaf];
  const used = new Set<X509Certificate>([leaf.cert]);
  for (let current = leaf; ; ) {
    current.selfSigned = issuedBy(current.cert, current.cert);
    if (current.selfSigned) break;
    let next: Link | undefined;
    if (extra.length > 0) {
      // Of two copies of an issuer (a renewal with the same key), peers take the one valid now, as OpenSSL does.
      const issuers = extra.filter((link) => !used.has(link.cert) && issuedBy(current.cert, link.cert));
      next = issuers.find((link) => validAt(link.cert, now)) ?? issuers[0];
    } else {
      const issuers = (caBySubject.get(nameKey(current.cert.issuer)) ?? [])
        .map((entry) => ({ entry, cert: caCertificate(entry) }))
        .filter(({ cert }) => !used.has(cert) && issuedBy(current.cert, cert));
      const chosen = issuers.find(({ cert }) => validAt(cert, now)) ?? issuers[0];
      next = chosen && { cert: chosen.cert, item: chosen.entry.item, standIn: chosen.entry };
    }
    if (!next) break;
    chain.push(next);
    used.add(next.cert);
    current = next;
  }
  return chain;
}

/**
 * A presented chain that stops short of an intermediate the served chain reached, while still needing it
 * (its top certificate is signed by that intermediate's key), is a write caught halfway (the leaf written
 * first, the chain a moment later), a CA entry removed that stood in for it, a same-named impostor, or a
 * mistake: peers that trust only the root would fail every handshake. A chain moving to a new issuer is a
 * rotation and passes.
 */
function checkChainKept(
  item: Item,
  chain: readonly Link[],
  previous: ChainRecord | undefined,
  given: { readonly extra: readonly Link[]; readonly caBySubject: ReadonlyMap<string, readonly CaEntry[]> },
): void {
  const top = chain[chain.length - 1];
  if (!top || !previous || top.selfSigned) return;
  const lost = previous.reached.find(
    (reached) =>
      !chain.some((link) => link.cert.fingerprint256 === reached.cert.fingerprint256) &&
      issuedBy(top.cert, reached.cert),
  );
  if (!lost) return;
  // Whom to name: the CA entry that supplied it, if it is gone; else the chain that no longer presents it.
  const candidates = given.caBySubject.get(nameKey(top.cert.issuer)) ?? [];
  const stillGiven = candidates.some((entry) => entry.info.fingerprint256 === lost.cert.fingerprint256);
  const blamed =
    lost.field.startsWith('ca') && !stillGiven
      ? { path: lost.field, ref: lost.ref }
      : { path: item.path, ref: item.ref };
  // A certificate of the issuer's name that did not sign: an impostor, or an intermediate re-keyed.
  const namesake =
    given.extra.length > 0
      ? given.extra.find((link) => nameKey(link.cert.subject) === nameKey(top.cert.issuer))?.cert.serialNumber
      : candidates[0]?.info.serialNumber;
  const hint = namesake
    ? `; the certificate of that name it holds (${namesake}) has another key`
    : stillGiven
      ? '; it is a CA entry, but OpenSSL sends a `cert` value with chain entries as given, adding no CA entry'
      : '';
  throw invalid(
    { path: fieldOf(blamed.path), ref: blamed.ref },
    `certificate chain of ${item.path} ends at certificate ${top.cert.serialNumber}, issued by intermediate ${lost.cert.serialNumber} ${JSON.stringify(lost.cert.subject)} (from ${lost.field}), which the served chain carried and this one lacks${hint} (incomplete write, or a CA entry removed?)`,
  );
}
