/** Real keys and certificates for the bench, from the test CA fixture: nothing is mocked. */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import * as x509 from '@peculiar/x509';
import { createTestCA, type Issued, type KeyAlgorithm, type TestCA } from '../../test/fixtures/ca.js';

export type { Issued, KeyAlgorithm };

export interface AlgorithmMaterial {
  readonly algorithm: KeyAlgorithm;
  readonly ca: TestCA;
  readonly server: Issued;
  readonly client: Issued;
  /** Further server certificates for rotation, each with its own key. */
  readonly rotation: readonly Issued[];
}

export interface Material {
  readonly ec: AlgorithmMaterial;
  readonly rsa: AlgorithmMaterial;
}

async function forAlgorithm(algorithm: KeyAlgorithm, rotations: number): Promise<AlgorithmMaterial> {
  const ca = await createTestCA({ algorithm, commonName: `tls-secrets bench ${algorithm} CA` });
  const server = await ca.issue({ commonName: 'bench server', dnsNames: ['localhost'] });
  const client = await ca.issue({ commonName: 'bench client', dnsNames: ['client.bench'] });
  const rotation: Issued[] = [];
  for (let i = 0; i < rotations; i++) {
    rotation.push(await ca.issue({ commonName: `bench server ${i + 1}`, dnsNames: ['localhost'] }));
  }
  return { algorithm, ca, server, client, rotation };
}

export async function createMaterial(): Promise<Material> {
  return { ec: await forAlgorithm('ec', 4), rsa: await forAlgorithm('rsa', 0) };
}

/**
 * The large bundle a service gets when it appends its private CA to the public roots: Node's bundled roots
 * (~145) plus the test CA.
 */
export function largeBundle(caPem: string): string[] {
  return [...rootCertificates, caPem];
}

const DAY = 86_400_000;
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/**
 * `count` distinct self-signed CA certificates. One key pair signs them all: only parsing and storing the
 * certificates is under test, and fresh keys would triple the set-up time. (The CA fixture has already set
 * @peculiar/x509's crypto provider.)
 */
export async function distinctCaCertificates(count: number): Promise<string[]> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const pems: string[] = [];
  for (let i = 0; i < count; i++) {
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: (0x10_0000 + i).toString(16),
      name: `CN=tls-secrets bench growth CA ${i}`,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
      keys,
      signingAlgorithm: EC,
      extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
    });
    pems.push(cert.toString('pem'));
  }
  return pems;
}

/**
 * A bundle of exactly `count` CAs ending with `caPem`: Node's bundled roots (145 on Node 22, fewer on later
 * lines), topped up with distinct generated CA certificates where the roots run short, so that every Node line
 * measures the same size.
 */
export async function bundleOf(count: number, caPem: string): Promise<string[]> {
  const roots = rootCertificates.slice(0, count - 1);
  const extra = count - 1 - roots.length;
  return [...roots, ...(extra > 0 ? await distinctCaCertificates(extra) : []), caPem];
}
