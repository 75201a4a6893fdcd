/**
 * A three-level PKI for the gate's tests (root → intermediate → leaf), with what test/fixtures/ca.ts does
 * not offer: intermediates, chosen key usages and CRLs with a chosen nextUpdate. Real keys, real X.509.
 */
import { webcrypto, X509Certificate } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams;
export const DAY = 86_400_000;

type Keys = webcrypto.CryptoKeyPair;

export interface Cert {
  readonly certPem: string;
  readonly keyPem: string;
  readonly serial: string;
  readonly subject: string;
  readonly cert: x509.X509Certificate;
  readonly keys: Keys;
}

export interface CertOptions {
  commonName?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Extended key usages; `null` leaves the extension out. Default server and client auth. */
  extKeyUsage?: readonly string[] | null;
  /** Key usage flags; undefined leaves the extension out. */
  keyUsage?: number;
  /** The key pair of another certificate: a renewal with the same key. */
  keys?: Keys;
  /** An intermediate's path length constraint (default 0: it issues leaves only). */
  pathLength?: number;
  /** An intermediate's basicConstraints extension; false leaves it out (default true: CA:TRUE). */
  basicConstraints?: boolean;
  /** A Netscape certificate type extension with these bits (SSL client 0x80, server 0x40, SSL CA 0x04, object signing CA 0x01). */
  nsCertType?: number;
  /** An extension of this OID marked critical, which no one handles. */
  criticalExtension?: string;
  /** The hash the issuer signs with (default SHA-256). */
  signatureHash?: 'SHA-1' | 'SHA-256';
}

/** The extensions every certificate may carry: a Netscape type, an unknown critical one. */
const optionalExtensions = (options: CertOptions): x509.Extension[] => [
  ...(options.nsCertType === undefined ? [] : [nsCertTypeExtension(options.nsCertType)]),
  ...(options.criticalExtension === undefined
    ? []
    : [new x509.Extension(options.criticalExtension, true, new Uint8Array([0x05, 0x00]))]),
];
const signing = (options: CertOptions) => ({ ...SIGN, hash: options.signatureHash ?? SIGN.hash });

/** The Netscape certificate type extension: a BIT STRING of one byte, no unused bits. */
const nsCertTypeExtension = (bits: number) =>
  new x509.Extension('2.16.840.1.113730.1.1', false, new Uint8Array([0x03, 0x02, 0x00, bits]));

export interface CrlOptions {
  revoked?: readonly string[];
  thisUpdate?: Date;
  nextUpdate?: Date;
}

export interface Authority extends Cert {
  issue(options?: CertOptions): Promise<Cert>;
  intermediate(options?: CertOptions): Promise<Authority>;
  crl(options?: CrlOptions): Promise<string>;
}

let serialCounter = 0;
function serial(): string {
  serialCounter += 1;
  return `1${Date.now().toString(16)}${serialCounter.toString(16).padStart(4, '0')}`;
}

async function keyPem(keys: Keys): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function finish(cert: x509.X509Certificate, keys: Keys): Promise<Cert> {
  const certPem = cert.toString('pem');
  return {
    certPem: `${certPem}\n`,
    keyPem: await keyPem(keys),
    serial: new X509Certificate(certPem).serialNumber,
    subject: cert.subject,
    cert,
    keys,
  };
}

function authority(self: Cert): Authority {
  return {
    ...self,
    async issue(options = {}) {
      const keys =
        options.keys ?? ((await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as Keys);
      const eku =
        options.extKeyUsage === undefined
          ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
          : options.extKeyUsage;
      const extensions: x509.Extension[] = [
        new x509.BasicConstraintsExtension(false),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
        ]),
        await x509.AuthorityKeyIdentifierExtension.create(self.cert),
      ];
      if (eku) extensions.push(new x509.ExtendedKeyUsageExtension([...eku]));
      if (options.keyUsage !== undefined)
        extensions.push(new x509.KeyUsagesExtension(options.keyUsage, true));
      extensions.push(...optionalExtensions(options));
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${options.commonName ?? 'localhost'}`,
        issuer: self.cert.subject,
        notBefore: options.notBefore ?? new Date(Date.now() - 60_000),
        notAfter: options.notAfter ?? new Date(Date.now() + 30 * DAY),
        publicKey: keys.publicKey,
        signingKey: self.keys.privateKey,
        signingAlgorithm: signing(options),
        extensions,
      });
      return finish(cert, keys);
    },
    async intermediate(options = {}) {
      const keys =
        options.keys ?? ((await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as Keys);
      const extensions: x509.Extension[] = [
        new x509.KeyUsagesExtension(
          options.keyUsage ?? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(self.cert),
      ];
      if (options.basicConstraints !== false) {
        extensions.unshift(new x509.BasicConstraintsExtension(true, options.pathLength ?? 0, true));
      }
      if (options.extKeyUsage) extensions.push(new x509.ExtendedKeyUsageExtension([...options.extKeyUsage]));
      extensions.push(...optionalExtensions(options));
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: `CN=${options.commonName ?? 'gate test intermediate'}`,
        issuer: self.cert.subject,
        notBefore: options.notBefore ?? new Date(Date.now() - DAY),
        notAfter: options.notAfter ?? new Date(Date.now() + 180 * DAY),
        publicKey: keys.publicKey,
        signingKey: self.keys.privateKey,
        signingAlgorithm: signing(options),
        extensions,
      });
      return authority(await finish(cert, keys));
    },
    async crl(options = {}) {
      const crl = await x509.X509CrlGenerator.create({
        issuer: self.cert.subject,
        thisUpdate: options.thisUpdate ?? new Date(Date.now() - 60_000),
        nextUpdate: options.nextUpdate ?? new Date(Date.now() + 7 * DAY),
        entries: (options.revoked ?? []).map((serialNumber) => ({
          serialNumber,
          revocationDate: new Date(),
        })),
        signingKey: self.keys.privateKey,
        signingAlgorithm: SIGN,
      });
      return `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`;
    },
  };
}

/** A self-signed root; `options.keys` re-issues another root's (a renewal of the same trust anchor). */
export async function createRoot(
  commonName = 'gate test root',
  options: Pick<CertOptions, 'keys' | 'notBefore' | 'notAfter'> = {},
): Promise<Authority> {
  const keys = options.keys ?? ((await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as Keys);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${commonName}`,
    notBefore: options.notBefore ?? new Date(Date.now() - 2 * DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + 3650 * DAY),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return authority(await finish(cert, keys));
}

export { x509 };
