/**
 * The validation gate: a bundle is swapped in only if everything here passes. Checks what
 * `tls.createSecureContext` lets through silently (mismatched key types, expired certificates, garbage in CA
 * bundles) as well as what it rejects with unhelpful messages (PFX mac failures, bad decrypts).
 */
import { createDiffieHellman, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { Socket } from 'node:net';
import { createSecureContext, type SecureContext, type SecureContextOptions, TLSSocket } from 'node:tls';
import { InvalidMaterialError, safeCause } from './errors.js';
import { looksLikePem, splitPem } from './pem.js';
import type { CertificateInfo } from './types.js';

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

export interface ValidatedBundle {
  /** The secret fields in the form Node takes them (lists split per entry). */
  readonly options: SecureContextOptions;
  readonly secureContext: SecureContext;
  readonly certificates: readonly CertificateInfo[];
  /** The CA entries; their expiry is reported, not enforced (bundles often carry expired roots). */
  readonly authorities: readonly CertificateInfo[];
  readonly notAfter: Date | undefined;
  readonly psk: ReadonlyMap<string, Buffer>;
}

export interface ValidateOptions {
  readonly now: number;
  readonly verifyChain: boolean;
  /** Non-secret context options (ciphers, minVersion, …) that the final context is built with. */
  readonly contextOptions: SecureContextOptions;
  /**
   * What the previous validation learnt of each CA entry, by PEM text: a rotation of one entry in a large
   * bundle then parses one certificate, not all of them. Filled with this validation's entries. (Small
   * records, not X509Certificate objects, which hold native memory: ~12 KB each.)
   */
  readonly caCache?: {
    readonly previous: ReadonlyMap<string, CertificateInfo>;
    readonly next: Map<string, CertificateInfo>;
  };
}

const invalid = (item: Pick<Item, 'path' | 'ref'>, reason: string, cause?: unknown) =>
  new InvalidMaterialError(reason, {
    field: item.path,
    ref: item.ref,
    cause: cause === undefined ? undefined : safeCause(cause),
  });

const text = (value: string | Buffer) => (typeof value === 'string' ? value : value.toString('latin1'));

/** A CA or CRL value split into one entry per PEM block, each still attributed to its source. */
function splitEntries(item: Item, expectedLabels: readonly string[], what: string): Item[] {
  if (!looksLikePem(item.value)) return [item];
  const blocks = splitPem(text(item.value));
  if (!blocks) throw invalid(item, `${what} is not a clean PEM bundle (text outside or between PEM blocks)`);
  return blocks.map((block, index) => {
    if (!expectedLabels.includes(block.label)) {
      throw invalid(
        item,
        `${what} entry ${index} is a "${block.label}" block, expected ${expectedLabels.join(' or ')}`,
      );
    }
    return {
      path: blocks.length > 1 ? `${item.path}#${index}` : item.path,
      ref: item.ref,
      value: block.text,
    };
  });
}

function parseCertificate(item: Item, what: string): X509Certificate {
  try {
    return new X509Certificate(item.value);
  } catch (err) {
    throw invalid(item, `${what} is not a parsable X.509 certificate`, err);
  }
}

function certificateInfo(item: Item, cert: X509Certificate): CertificateInfo {
  return {
    field: item.path,
    ref: item.ref,
    subject: cert.subject,
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
  };
}

function checkValidityWindow(item: Item, info: CertificateInfo, now: number): void {
  if (now < info.notBefore.getTime()) {
    throw invalid(
      item,
      `certificate ${info.serialNumber} is not valid before ${info.notBefore.toISOString()}`,
    );
  }
  if (now > info.notAfter.getTime()) {
    throw invalid(item, `certificate ${info.serialNumber} expired at ${info.notAfter.toISOString()}`);
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

export function validateMaterial(material: Material, options: ValidateOptions): ValidatedBundle {
  const { now } = options;
  const certificates: CertificateInfo[] = [];

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

  if (material.dhparam) checkDhParameters(material.dhparam);

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
  const caCerts: X509Certificate[] = [];
  for (const item of ca) {
    const key = typeof item.value === 'string' ? item.value : undefined;
    const known = key === undefined ? undefined : options.caCache?.previous.get(key);
    // verifyChain needs the certificates themselves; otherwise a known entry needs no parsing.
    const cert = known && !options.verifyChain ? undefined : parseCertificate(item, 'CA entry');
    const info = cert
      ? certificateInfo(item, cert)
      : { ...(known as CertificateInfo), field: item.path, ref: item.ref };
    if (key !== undefined) options.caCache?.next.set(key, info);
    if (cert) caCerts.push(cert);
    authorities.push(info);
    // Node's ca option takes PEM only: a DER entry goes on as PEM.
    caValues.push(looksLikePem(item.value) || !cert ? item.value : cert.toString());
  }

  const crl = material.crl.flatMap((item) => splitEntries(item, ['X509 CRL'], 'CRL'));
  for (const item of crl) {
    try {
      createSecureContext({ crl: item.value });
    } catch (err) {
      throw invalid(item, 'CRL cannot be parsed', err);
    }
  }

  const keys = material.key.map((item) => ({ item, key: parsePrivateKey(item, material.passphrase) }));

  const leaves: { item: Item; cert: X509Certificate; chain: X509Certificate[] }[] = [];
  // DER certificates parse here but Node's cert and ca options take PEM only: pass them on as PEM.
  const certValues: (string | Buffer)[] = [];
  for (const item of material.cert) {
    const entries = looksLikePem(item.value)
      ? splitEntries(item, ['CERTIFICATE'], 'certificate chain')
      : [item];
    const chain = entries.map((entry) => parseCertificate(entry, 'certificate'));
    certValues.push(looksLikePem(item.value) ? item.value : (chain[0]?.toString() ?? item.value));
    chain.forEach((cert, index) => {
      const info = certificateInfo(entries[index] ?? item, cert);
      checkValidityWindow(item, info, now);
      if (index === 0) certificates.push({ ...info, field: item.path });
    });
    const [leaf] = chain;
    if (leaf) leaves.push({ item, cert: leaf, chain });
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
      context = createSecureContext({ pfx: [entry] });
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
    }
    return entry;
  });

  const secretOptions: SecureContextOptions = {};
  if (keys.length) {
    secretOptions.key = material.key.map((item) => {
      const passphrase = item.passphrase ?? material.passphrase;
      return passphrase ? { pem: item.value, passphrase: text(passphrase.value) } : { pem: item.value };
    });
  }
  if (certValues.length) secretOptions.cert = certValues;
  if (caValues.length) secretOptions.ca = caValues;

  if (crl.length) secretOptions.crl = crl.map((item) => item.value);
  if (pfx.length) secretOptions.pfx = pfx;
  if (material.passphrase) secretOptions.passphrase = text(material.passphrase.value);
  if (material.ticketKeys) secretOptions.ticketKeys = material.ticketKeys.value as Buffer;
  if (material.dhparam) secretOptions.dhparam = material.dhparam.value;

  let secureContext: SecureContext;
  try {
    secureContext = createSecureContext({ ...options.contextOptions, ...secretOptions });
  } catch (err) {
    const item = material.dhparam ??
      material.cert[0] ??
      material.key[0] ??
      material.ca[0] ?? { path: 'bundle', ref: 'bundle' };
    const code = (err as { code?: string }).code;
    throw invalid(item, `TLS context cannot be built${code ? ` (${code})` : ''}`, err);
  }

  const notAfter = certificates.reduce<Date | undefined>(
    (earliest, info) => (!earliest || info.notAfter < earliest ? info.notAfter : earliest),
    undefined,
  );
  return { options: secretOptions, secureContext, certificates, authorities, notAfter, psk };
}
