/**
 * The little DER the gate needs and Node does not expose: CRL dates and issuer, and the key usage, extended
 * key usage and Netscape certificate type extensions of a certificate. Read-only, bounds-checked; a
 * malformed input throws DerError and the caller names the field.
 */

export class DerError extends Error {}

export interface Tlv {
  readonly tag: number;
  /** Offset of the content. */
  readonly start: number;
  /** Offset just past the content. */
  readonly end: number;
  /** Offset of the tag byte. */
  readonly offset: number;
}

export function readTlv(der: Uint8Array, offset: number, limit = der.length): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated');
  const tag = der[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not used here');
  const first = der[offset + 1] ?? 0;
  let length = first;
  let start = offset + 2;
  if (first & 0x80) {
    const bytes = first & 0x7f;
    if (bytes === 0 || bytes > 4) throw new DerError('unsupported length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + (der[start + i] ?? 0);
    start += bytes;
  }
  const end = start + length;
  if (end > limit) throw new DerError('truncated');
  return { tag, start, end, offset };
}

export function children(der: Uint8Array, parent: Tlv): Tlv[] {
  const list: Tlv[] = [];
  for (let at = parent.start; at < parent.end; ) {
    const child = readTlv(der, at, parent.end);
    list.push(child);
    at = child.end;
  }
  return list;
}

export function oid(der: Uint8Array, tlv: Tlv): string {
  if (tlv.tag !== 0x06) throw new DerError('expected an OBJECT IDENTIFIER');
  const parts: number[] = [];
  let value = 0;
  for (let i = tlv.start; i < tlv.end; i++) {
    const byte = der[i] ?? 0;
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      if (parts.length === 0)
        parts.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      else parts.push(value);
      value = 0;
    }
  }
  return parts.join('.');
}

/** UTCTime (0x17) or GeneralizedTime (0x18), as X.509 uses them (UTC, seconds). */
export function time(der: Uint8Array, tlv: Tlv): Date {
  const text = Buffer.from(der.subarray(tlv.start, tlv.end)).toString('latin1');
  const match =
    tlv.tag === 0x17
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
      : tlv.tag === 0x18
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
        : null;
  if (!match) throw new DerError('expected a UTC time');
  const [, y, mo, d, h, mi, se] = match.map(Number) as number[];
  const year = tlv.tag === 0x17 ? ((y ?? 0) >= 50 ? 1900 + (y ?? 0) : 2000 + (y ?? 0)) : (y ?? 0);
  return new Date(Date.UTC(year, (mo ?? 1) - 1, d, h, mi, se));
}

const NAME_KEYS: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '1.2.840.113549.1.9.1': 'emailAddress',
  '0.9.2342.19200300.100.1.25': 'DC',
};

/** A Name in Node's X509Certificate.subject format (`CN=x`, one attribute per line). */
export function name(der: Uint8Array, tlv: Tlv): string {
  const lines: string[] = [];
  for (const rdn of children(der, tlv)) {
    for (const attribute of children(der, rdn)) {
      const [type, value] = children(der, attribute);
      if (!type || !value) throw new DerError('malformed name');
      const bytes = Buffer.from(der.subarray(value.start, value.end));
      // BMPString is UTF-16BE; the others are ASCII or UTF-8.
      const text = value.tag === 0x1e ? bytes.swap16().toString('utf16le') : bytes.toString('utf8');
      lines.push(`${NAME_KEYS[oid(der, type)] ?? oid(der, type)}=${text}`);
    }
  }
  return lines.join('\n');
}

export interface CrlFields {
  readonly issuer: string;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  /** The cRLNumber extension, uppercase hex, when present. */
  readonly number: string | undefined;
}

/** CertificateList ::= SEQUENCE { tbsCertList SEQUENCE { version?, signature, issuer, thisUpdate, nextUpdate?, … } } */
export function crlFields(der: Uint8Array): CrlFields {
  const list = readTlv(der, 0);
  const [tbs] = children(der, list);
  if (list.tag !== 0x30 || tbs?.tag !== 0x30) throw new DerError('not a CertificateList');
  const fields = children(der, tbs);
  let i = fields[0]?.tag === 0x02 ? 1 : 0;
  i += 1; // signature algorithm
  const issuer = fields[i++];
  const thisUpdate = fields[i++];
  if (issuer?.tag !== 0x30 || !thisUpdate) throw new DerError('not a CertificateList');
  const maybeNext = fields[i];
  const nextUpdate = maybeNext && (maybeNext.tag === 0x17 || maybeNext.tag === 0x18) ? maybeNext : undefined;
  let number: string | undefined;
  const extensions = fields.find((field) => field.tag === 0xa0);
  if (extensions) {
    const [sequence] = children(der, extensions);
    for (const extension of sequence ? children(der, sequence) : []) {
      const parts = children(der, extension);
      const [type] = parts;
      const value = parts[parts.length - 1];
      if (type && value && oid(der, type) === '2.5.29.20') {
        const integer = readTlv(der, value.start, value.end);
        number = Buffer.from(der.subarray(integer.start, integer.end)).toString('hex').toUpperCase();
      }
    }
  }
  return {
    issuer: name(der, issuer),
    thisUpdate: time(der, thisUpdate),
    nextUpdate: nextUpdate && time(der, nextUpdate),
    number,
  };
}

export interface UsageFields {
  /** Extended key usage OIDs; undefined when the extension is absent (any usage). */
  readonly extKeyUsage: readonly string[] | undefined;
  /** Key usage bits as in the BIT STRING, first named bit (digitalSignature) = 0x80 of the first byte. */
  readonly keyUsage: number | undefined;
  /** Netscape certificate type bits (SSL client 0x80, SSL server 0x40), when present. */
  readonly nsCertType: number | undefined;
  /** Extensions marked critical that OpenSSL does not handle: every OpenSSL peer refuses the certificate. */
  readonly unhandledCritical: readonly string[];
  /** The OID of the algorithm the certificate is signed with. */
  readonly signatureAlgorithm: string;
}

/**
 * The extensions OpenSSL can process (X509_supported_extension in crypto/x509/v3_purp.c): one marked
 * critical that is not among them fails verification (unhandled critical extension).
 */
const OPENSSL_HANDLED = new Set([
  '2.16.840.1.113730.1.1', // Netscape certificate type
  '2.5.29.15', // key usage
  '2.5.29.17', // subject alternative name
  '2.5.29.19', // basic constraints
  '2.5.29.32', // certificate policies
  '2.5.29.31', // CRL distribution points
  '2.5.29.37', // extended key usage
  '1.3.6.1.5.5.7.1.7', // IP address blocks (RFC 3779)
  '1.3.6.1.5.5.7.1.8', // AS identifiers (RFC 3779)
  '1.3.6.1.5.5.7.48.1.5', // OCSP no check
  '2.5.29.36', // policy constraints
  '1.3.6.1.5.5.7.1.14', // proxy certificate information
  '2.5.29.30', // name constraints
  '2.5.29.33', // policy mappings
  '2.5.29.54', // inhibit any policy
]);

/** Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { …, [3] EXPLICIT Extensions }, … } */
export function usageFields(der: Uint8Array): UsageFields {
  const certificate = readTlv(der, 0);
  const [tbs] = children(der, certificate);
  if (certificate.tag !== 0x30 || tbs?.tag !== 0x30) throw new DerError('not a Certificate');
  const [, algorithm] = children(der, certificate);
  const [algorithmId] = algorithm ? children(der, algorithm) : [];
  if (!algorithmId) throw new DerError('no signature algorithm');
  const signatureAlgorithm = oid(der, algorithmId);
  const unhandledCritical: string[] = [];
  const wrapper = children(der, tbs).find((field) => field.tag === 0xa3);
  let extKeyUsage: string[] | undefined;
  let keyUsage: number | undefined;
  let nsCertType: number | undefined;
  const [sequence] = wrapper ? children(der, wrapper) : [];
  for (const extension of sequence ? children(der, sequence) : []) {
    const parts = children(der, extension);
    const [type] = parts;
    const value = parts[parts.length - 1];
    if (!type || value?.tag !== 0x04) continue;
    const id = oid(der, type);
    const flag = parts.length === 3 ? parts[1] : undefined;
    const critical = flag?.tag === 0x01 && flag.start < flag.end && der[flag.start] !== 0;
    if (critical && !OPENSSL_HANDLED.has(id)) unhandledCritical.push(id);
    const inner = () => readTlv(der, value.start, value.end);
    // The first byte of a BIT STRING's bits (after the unused-bits count): every bit the checks need.
    const firstByte = () => {
      const bitString = inner();
      if (bitString.tag !== 0x03) throw new DerError('expected a BIT STRING');
      return bitString.start + 1 < bitString.end ? (der[bitString.start + 1] ?? 0) : 0;
    };
    if (id === '2.5.29.37') extKeyUsage = children(der, inner()).map((child) => oid(der, child));
    else if (id === '2.5.29.15') keyUsage = firstByte();
    else if (id === '2.16.840.1.113730.1.1') nsCertType = firstByte();
  }
  return { extKeyUsage, keyUsage, nsCertType, unhandledCritical, signatureAlgorithm };
}
