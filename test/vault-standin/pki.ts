/**
 * PKI secrets engine over the real test CA of test/fixtures/ca.ts: roots, roles, issue, revoke, and the
 * unauthenticated CA/CRL fetch endpoints (builtin/logical/pki path_issue_sign.go, path_fetch.go).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { createTestCA, type KeyAlgorithm, type TestCA } from '../fixtures/ca.js';
import type { Engine, Lease, Mount, RequestContext } from './types.js';
import {
  badRequest,
  base62,
  bool,
  goDuration,
  type Json,
  list,
  noContent,
  notFound,
  ok,
  parseDuration,
  type Reply,
  randomUUID,
  raw,
  rfc3339Nano,
  SYSTEM_DEFAULT_TTL,
  SYSTEM_MAX_TTL,
  str,
  unsupportedOperation,
  unsupportedPath,
} from './util.js';

interface Issuer {
  id: string;
  name: string;
  keyId: string;
  ca: TestCA;
  /** PEM without the trailing newline, as certutil trims it. */
  pem: string;
  der: Buffer;
  notAfter: Date;
}

interface Role {
  allowedDomains: string[];
  allowSubdomains: boolean;
  allowBareDomains: boolean;
  allowGlobDomains: boolean;
  allowAnyName: boolean;
  allowLocalhost: boolean;
  allowIpSans: boolean;
  enforceHostnames: boolean;
  ttl: number;
  maxTtl: number;
  generateLease: boolean;
  noStore: boolean;
  keyType: KeyAlgorithm;
  keyBits: number;
  requireCn: boolean;
}

interface StoredCert {
  pem: string;
  /** Uppercase hex as Node prints it; the CRL generator takes this form. */
  hexSerial: string;
  revokedAt: number | null;
}

const HOSTNAME =
  /^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

function trimPem(pem: string): string {
  return pem.trim();
}

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** Vault prints serials as lowercase colon-separated hex. */
function colonSerial(hexSerial: string): string {
  const padded = hexSerial.length % 2 === 0 ? hexSerial : `0${hexSerial}`;
  return (padded.toLowerCase().match(/../g) ?? []).join(':');
}

function normaliseSerial(serial: string): string {
  return serial.toLowerCase().replace(/-/g, ':');
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(name);
}

export class PkiEngine implements Engine {
  private readonly issuers: Issuer[] = [];
  private defaultIssuerId: string | null = null;
  private readonly roles = new Map<string, Role>();
  private readonly certs = new Map<string, StoredCert>();
  private urls: Record<string, Json> = {
    issuing_certificates: [],
    crl_distribution_points: [],
    ocsp_servers: [],
  };

  constructor(
    private readonly mount: () => Mount,
    private readonly registerLease: (lease: Lease) => void,
  ) {}

  unauthenticated(subPath: string, op: RequestContext['op']): boolean {
    if (op !== 'read') return false;
    return /^(ca|ca\/pem|ca_chain|crl|crl\/pem|crl\/delta(\/pem)?|cert\/[^/]+|issuer\/[^/]+\/(pem|der|json|crl(\/pem|\/der)?))$/.test(
      subPath,
    );
  }

  async handle(ctx: RequestContext): Promise<Reply> {
    const { subPath, op } = ctx;
    let m = /^root\/generate\/(internal|exported)$/.exec(subPath);
    if (m) {
      if (op !== 'update') throw unsupportedOperation();
      return this.generateRoot(ctx, m[1] === 'exported');
    }
    if (subPath === 'root') {
      if (op !== 'delete') throw unsupportedOperation();
      this.issuers.length = 0;
      this.defaultIssuerId = null;
      return noContent();
    }
    if (subPath === 'root/replace' || subPath === 'config/issuers') {
      return this.issuerConfig(ctx);
    }
    if (subPath === 'roles' || subPath === 'roles/') {
      if (op !== 'list') throw unsupportedOperation();
      return this.keys([...this.roles.keys()]);
    }
    m = /^roles\/([^/]+)$/.exec(subPath);
    if (m) return this.rolePath(ctx, m[1] ?? '');
    m = /^issue\/([^/]+)$/.exec(subPath);
    if (m) {
      if (op !== 'update') throw unsupportedOperation();
      return this.issue(ctx, m[1] ?? '');
    }
    if (subPath === 'revoke') {
      if (op !== 'update') throw unsupportedOperation();
      return this.revoke(str(ctx.body.serial_number));
    }
    if (subPath === 'certs' || subPath === 'certs/') {
      if (op !== 'list') throw unsupportedOperation();
      return this.keys([...this.certs.keys()].map((s) => s.replace(/:/g, '-')));
    }
    if (subPath === 'issuers' || subPath === 'issuers/') {
      if (op !== 'list') throw unsupportedOperation();
      return this.keys(this.issuers.map((i) => i.id));
    }
    if (subPath === 'config/urls') {
      if (op === 'read') return ok(this.urls, { mountType: 'pki' });
      if (op !== 'update') throw unsupportedOperation();
      this.urls = {
        issuing_certificates: list(ctx.body.issuing_certificates),
        crl_distribution_points: list(ctx.body.crl_distribution_points),
        ocsp_servers: list(ctx.body.ocsp_servers),
      };
      return noContent();
    }
    if (op === 'read') return this.fetch(subPath);
    throw unsupportedPath();
  }

  private keys(keys: string[]): Reply {
    if (keys.length === 0) throw notFound();
    return ok({ keys: [...keys].sort() }, { mountType: 'pki' });
  }

  private ttlBounds(): { defaultTtl: number; maxTtl: number } {
    const mount = this.mount();
    return {
      defaultTtl: mount.defaultLeaseTtl || SYSTEM_DEFAULT_TTL,
      maxTtl: mount.maxLeaseTtl || SYSTEM_MAX_TTL,
    };
  }

  /** GetCertificateNotAfter: a TTL over the max is capped with a warning, not refused. */
  private resolveTtl(
    requested: number,
    roleTtl: number,
    roleMax: number,
  ): { ttl: number; warnings: string[] } {
    const bounds = this.ttlBounds();
    let ttl = requested || roleTtl || bounds.defaultTtl;
    const maxTtl = roleMax || bounds.maxTtl;
    const warnings: string[] = [];
    if (ttl > maxTtl) {
      warnings.push(
        `TTL "${goDuration(ttl)}" is longer than permitted maxTTL "${goDuration(maxTtl)}", so maxTTL is being used`,
      );
      ttl = maxTtl;
    }
    return { ttl, warnings };
  }

  private defaultIssuer(): Issuer | undefined {
    return this.issuers.find((i) => i.id === this.defaultIssuerId);
  }

  private resolveIssuer(ref: string): Issuer | undefined {
    if (ref === 'default') return this.defaultIssuer();
    return this.issuers.find((i) => i.id === ref || (i.name !== '' && i.name === ref));
  }

  private async generateRoot(ctx: RequestContext, exported: boolean): Promise<Reply> {
    const b = ctx.body;
    const commonName = str(b.common_name);
    if (!commonName) {
      throw badRequest(
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
      );
    }
    const keyType = keyAlgorithm(b.key_type);
    const { ttl, warnings } = this.resolveTtl(parseDuration(b.ttl, 'ttl'), 0, 0);
    const now = Date.now();
    const ca = await createTestCA({
      commonName,
      algorithm: keyType,
      notBefore: new Date(now - 30_000),
      notAfter: new Date(now + ttl * 1000),
    });
    const parsed = new X509Certificate(ca.certPem);
    const issuer: Issuer = {
      id: randomUUID(),
      name: str(b.issuer_name),
      keyId: randomUUID(),
      ca,
      pem: trimPem(ca.certPem),
      der: parsed.raw,
      notAfter: new Date(parsed.validTo),
    };
    this.issuers.push(issuer);
    // Since Vault 1.11 a new root becomes the default only when no default issuer exists yet.
    this.defaultIssuerId ??= issuer.id;
    const format = str(b.format, 'pem') || 'pem';
    const der = format === 'der';
    const data: Record<string, Json> = {
      certificate: der ? issuer.der.toString('base64') : issuer.pem,
      expiration: Math.floor(issuer.notAfter.getTime() / 1000),
      issuer_id: issuer.id,
      issuer_name: issuer.name,
      issuing_ca: der ? issuer.der.toString('base64') : issuer.pem,
      key_id: issuer.keyId,
      key_name: '',
      serial_number: colonSerial(ca.serial),
    };
    if (exported) {
      const key = nativeKey(ca.keyPem, keyType);
      data.private_key = der ? pemToDer(key).toString('base64') : key;
      data.private_key_type = keyType;
    }
    return ok(data, { warnings, mountType: 'pki' });
  }

  private issuerConfig(ctx: RequestContext): Reply {
    if (ctx.op === 'read' && ctx.subPath === 'config/issuers') {
      return ok(
        { default: this.defaultIssuerId ?? '', default_follows_latest_issuer: false },
        { mountType: 'pki' },
      );
    }
    if (ctx.op !== 'update') throw unsupportedOperation();
    const ref = str(ctx.body.default, ctx.subPath === 'root/replace' ? 'next' : '');
    const issuer = this.resolveIssuer(ref);
    if (!issuer) throw badRequest(`unable to resolve issuer reference "${ref}"`);
    this.defaultIssuerId = issuer.id;
    return ok({ default: issuer.id, default_follows_latest_issuer: false }, { mountType: 'pki' });
  }

  private rolePath(ctx: RequestContext, name: string): Reply {
    if (ctx.op === 'delete') {
      this.roles.delete(name);
      return noContent();
    }
    if (ctx.op === 'read') {
      const role = this.roles.get(name);
      if (!role) throw notFound();
      return ok(
        {
          allow_any_name: role.allowAnyName,
          allow_bare_domains: role.allowBareDomains,
          allow_glob_domains: role.allowGlobDomains,
          allow_ip_sans: role.allowIpSans,
          allow_localhost: role.allowLocalhost,
          allow_subdomains: role.allowSubdomains,
          allowed_domains: role.allowedDomains,
          enforce_hostnames: role.enforceHostnames,
          generate_lease: role.generateLease,
          key_bits: role.keyBits,
          key_type: role.keyType,
          max_ttl: role.maxTtl,
          no_store: role.noStore,
          require_cn: role.requireCn,
          ttl: role.ttl,
        },
        { mountType: 'pki' },
      );
    }
    if (ctx.op !== 'update') throw unsupportedOperation();
    const b = ctx.body;
    const keyType = keyAlgorithm(b.key_type);
    const ttl = parseDuration(b.ttl, 'ttl');
    const maxTtl = parseDuration(b.max_ttl, 'max_ttl');
    if (maxTtl > 0 && ttl > maxTtl) throw badRequest('"ttl" value must be less than "max_ttl" value');
    this.roles.set(name, {
      allowedDomains: list(b.allowed_domains),
      allowSubdomains: bool(b.allow_subdomains, false),
      allowBareDomains: bool(b.allow_bare_domains, false),
      allowGlobDomains: bool(b.allow_glob_domains, false),
      allowAnyName: bool(b.allow_any_name, false),
      allowLocalhost: bool(b.allow_localhost, true),
      allowIpSans: bool(b.allow_ip_sans, true),
      enforceHostnames: bool(b.enforce_hostnames, true),
      ttl,
      maxTtl,
      generateLease: bool(b.generate_lease, false),
      noStore: bool(b.no_store, false),
      keyType,
      keyBits: keyType === 'ec' ? 256 : 2048,
      requireCn: bool(b.require_cn, true),
    });
    return noContent();
  }

  /** validateNames, reduced to the role switches this stand-in supports. */
  private nameAllowed(role: Role, name: string): boolean {
    if (role.allowAnyName) return true;
    const lower = name.toLowerCase();
    if (role.allowLocalhost && (lower === 'localhost' || lower === 'localdomain')) return true;
    if (role.enforceHostnames && !HOSTNAME.test(lower)) return false;
    for (const domain of role.allowedDomains.map((d) => d.toLowerCase())) {
      if (role.allowBareDomains && lower === domain) return true;
      if (role.allowSubdomains && lower.endsWith(`.${domain}`)) return true;
      if (role.allowGlobDomains && domain.includes('*') && globMatch(domain, lower)) return true;
    }
    return false;
  }

  private async issue(ctx: RequestContext, roleName: string): Promise<Reply> {
    const b = ctx.body;
    const role = this.roles.get(roleName);
    if (!role) throw badRequest(`unknown role: ${roleName}`);
    const format = str(b.format, 'pem') || 'pem';
    if (!['pem', 'der', 'pem_bundle'].includes(format)) {
      throw badRequest('the "format" path parameter must be "pem", "der", or "pem_bundle"');
    }
    const keyFormat = str(b.private_key_format, 'der') || 'der';
    if (!['der', 'pem', 'pkcs8'].includes(keyFormat)) {
      throw badRequest('the "private_key_format" field must be "der", "pem" or "pkcs8"');
    }
    const issuer = this.defaultIssuer();
    if (!issuer)
      throw badRequest(
        'could not fetch the CA certificate (was one set?): no default issuer currently configured',
      );

    const commonName = str(b.common_name);
    if (!commonName && role.requireCn) {
      throw badRequest(
        'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true, unless "require_cn" is set to false',
      );
    }
    const cnIsIp = commonName !== '' && isIP(commonName) !== 0;
    if (commonName && !cnIsIp && !this.nameAllowed(role, commonName)) {
      throw badRequest(`common name ${commonName} not allowed by this role`);
    }
    const altNames = [...new Set(list(b.alt_names))].sort();
    for (const name of altNames) {
      if (!this.nameAllowed(role, name))
        throw badRequest(`subject alternate name ${name} not allowed by this role`);
    }
    const ipSans = list(b.ip_sans);
    if (cnIsIp) ipSans.unshift(commonName);
    if (ipSans.length > 0 && !role.allowIpSans) {
      throw badRequest(
        `IP Subject Alternative Names are not allowed in this role, but was provided [${ipSans.join(' ')}]`,
      );
    }
    for (const ip of ipSans) {
      if (isIP(ip) === 0) throw badRequest(`the value "${ip}" is not a valid IP address`);
    }
    const excludeCn = bool(b.exclude_cn_from_sans, false);
    const dnsNames = [
      ...new Set([
        ...(commonName && !cnIsIp && !excludeCn && HOSTNAME.test(commonName) ? [commonName] : []),
        ...altNames,
      ]),
    ];

    const { ttl, warnings } = this.resolveTtl(parseDuration(b.ttl, 'ttl'), role.ttl, role.maxTtl);
    const now = Date.now();
    const notAfter = new Date(now + ttl * 1000);
    // leaf_not_after_behavior defaults to "err": a leaf may not outlive its issuer.
    if (notAfter.getTime() > issuer.notAfter.getTime()) {
      throw badRequest(
        `cannot satisfy request, as TTL would result in notAfter of ${rfc3339Nano(BigInt(notAfter.getTime()) * 1_000_000n)} that is beyond the expiration of the CA certificate at ${rfc3339Nano(BigInt(issuer.notAfter.getTime()) * 1_000_000n)}`,
      );
    }

    const leaf = await issuer.ca.issue({
      commonName: commonName || undefined,
      algorithm: role.keyType,
      notBefore: new Date(now - 30_000),
      notAfter,
      dnsNames,
      ipAddresses: [...new Set(ipSans)],
    });
    const parsed = new X509Certificate(leaf.certPem);
    const serial = colonSerial(leaf.serial);
    const certPem = trimPem(leaf.certPem);
    const keyPem = keyFormat === 'pkcs8' ? trimPem(leaf.keyPem) : nativeKey(leaf.keyPem, role.keyType);
    const nativeKeyPem = nativeKey(leaf.keyPem, role.keyType);
    const chain = bool(b.remove_roots_from_chain, false) ? [] : [issuer.pem];

    const data: Record<string, Json> = {
      expiration: Math.floor(new Date(parsed.validTo).getTime() / 1000),
      not_before: Math.floor(new Date(parsed.validFrom).getTime() / 1000),
      serial_number: serial,
    };
    if (format === 'der') {
      data.certificate = parsed.raw.toString('base64');
      data.issuing_ca = issuer.der.toString('base64');
      if (chain.length > 0) data.ca_chain = chain.map((p) => pemToDer(p).toString('base64'));
      data.private_key = pemToDer(keyPem).toString('base64');
    } else {
      data.issuing_ca = issuer.pem;
      // certutil's ToPEMBundle: private key, certificate, then the chain, joined by newlines.
      data.certificate = format === 'pem_bundle' ? [nativeKeyPem, certPem, ...chain].join('\n') : certPem;
      if (chain.length > 0) data.ca_chain = chain;
      data.private_key = keyPem;
    }
    data.private_key_type = role.keyType;

    if (!role.noStore) this.certs.set(serial, { pem: certPem, hexSerial: leaf.serial, revokedAt: null });

    if (!role.generateLease) return ok(data, { warnings, mountType: 'pki' });
    const leaseId = `${this.mount().path}issue/${roleName}/${base62(24)}`;
    const expireAt = new Date(parsed.validTo).getTime();
    this.registerLease({ id: leaseId, expireAt, renewable: false });
    return ok(data, {
      leaseId,
      leaseDuration: Math.max(0, Math.round((expireAt - Date.now()) / 1000)),
      renewable: false,
      warnings,
      mountType: 'pki',
    });
  }

  private revoke(serialRaw: string): Reply {
    const serial = normaliseSerial(serialRaw);
    const cert = this.certs.get(serial);
    if (!cert) throw badRequest(`certificate with serial ${serialRaw} not found.`);
    cert.revokedAt ??= Date.now();
    const seconds = Math.floor(cert.revokedAt / 1000);
    return ok(
      {
        revocation_time: seconds,
        revocation_time_rfc3339: rfc3339Nano(BigInt(cert.revokedAt) * 1_000_000n),
        state: 'revoked',
      },
      { mountType: 'pki' },
    );
  }

  private async crlPem(issuer: Issuer): Promise<string> {
    const revoked = [...this.certs.values()].filter((c) => c.revokedAt !== null).map((c) => c.hexSerial);
    return trimPem(await issuer.ca.crl(revoked));
  }

  /** The read-only fetch endpoints; raw ones carry no JSON envelope. */
  private async fetch(subPath: string): Promise<Reply> {
    const issuerMatch = /^issuer\/([^/]+)\/(pem|der|json|crl|crl\/pem|crl\/der)$/.exec(subPath);
    const issuer = issuerMatch ? this.resolveIssuer(issuerMatch[1] ?? '') : this.defaultIssuer();
    const kind = issuerMatch ? `issuer/${issuerMatch[2]}` : subPath;
    const certMatch = /^cert\/(.+)$/.exec(subPath);
    if (certMatch && !['ca', 'ca_chain', 'crl', 'delta-crl'].includes(certMatch[1] ?? '')) {
      const cert = this.certs.get(normaliseSerial(certMatch[1] ?? ''));
      if (!cert) throw notFound();
      return ok(
        {
          certificate: cert.pem,
          revocation_time: cert.revokedAt === null ? 0 : Math.floor(cert.revokedAt / 1000),
          revocation_time_rfc3339:
            cert.revokedAt === null ? '' : rfc3339Nano(BigInt(cert.revokedAt) * 1_000_000n),
        },
        { mountType: 'pki' },
      );
    }
    switch (kind) {
      case 'ca/pem':
      case 'issuer/pem':
        return issuer ? raw('application/pem-certificate-chain', issuer.pem) : { kind: 'empty', status: 204 };
      case 'ca':
      case 'issuer/der':
        return issuer ? raw('application/pkix-cert', issuer.der) : { kind: 'empty', status: 204 };
      case 'ca_chain':
        return issuer ? raw('application/pkix-cert', issuer.pem) : { kind: 'empty', status: 204 };
      case 'cert/ca':
        if (!issuer) throw notFound();
        return ok(
          { certificate: issuer.pem, revocation_time: 0, revocation_time_rfc3339: '' },
          { mountType: 'pki' },
        );
      case 'cert/ca_chain':
        if (!issuer) throw notFound();
        return ok({ ca_chain: issuer.pem, certificate: issuer.pem }, { mountType: 'pki' });
      case 'issuer/json':
        if (!issuer) throw notFound();
        return ok(
          {
            ca_chain: [issuer.pem],
            certificate: issuer.pem,
            issuer_id: issuer.id,
            issuer_name: issuer.name,
            key_id: issuer.keyId,
            leaf_not_after_behavior: 'err',
            usage: 'crl-signing,issuing-certificates,ocsp-signing,read-only',
          },
          { mountType: 'pki' },
        );
      case 'crl/pem':
      case 'issuer/crl/pem':
        return issuer
          ? raw('application/x-pem-file', await this.crlPem(issuer))
          : { kind: 'empty', status: 204 };
      case 'crl':
      case 'issuer/crl/der':
        return issuer
          ? raw('application/pkix-crl', pemToDer(await this.crlPem(issuer)))
          : { kind: 'empty', status: 204 };
      case 'cert/crl':
        if (!issuer) throw notFound();
        return ok(
          { certificate: await this.crlPem(issuer), revocation_time: 0, revocation_time_rfc3339: '' },
          { mountType: 'pki' },
        );
      case 'issuer/crl':
        if (!issuer) throw notFound();
        return ok({ crl: await this.crlPem(issuer) }, { mountType: 'pki' });
      default:
        throw unsupportedPath();
    }
  }
}

function keyAlgorithm(value: unknown): KeyAlgorithm {
  const type = str(value, 'rsa') || 'rsa';
  if (type === 'rsa' || type === 'ec') return type;
  throw badRequest(`unknown key_type value: ${type}`);
}

/** The key in its native DER form as PEM: `EC PRIVATE KEY` (SEC1) or `RSA PRIVATE KEY` (PKCS#1). */
function nativeKey(pkcs8Pem: string, type: KeyAlgorithm): string {
  return createPrivateKey(pkcs8Pem)
    .export({ type: type === 'ec' ? 'sec1' : 'pkcs1', format: 'pem' })
    .toString()
    .trim();
}
