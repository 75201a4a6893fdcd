/**
 * What the CLI prints: the table of fields and certificates, problems, and the one place output is
 * written. Every line goes through withoutUrlCredentials: an endpoint's password never reaches the
 * terminal or a log.
 */
import { X509Certificate } from 'node:crypto';
import { safeCause, TlsSecretsError, withoutUrlCredentials } from '../src/errors.js';
import type { Resolver } from '../src/resolver/index.js';
import type { CertificateInfo, ResolvedOptions } from '../src/types.js';

const DAY = 86_400_000;

export interface Row {
  field: string;
  source: string;
  version: string | undefined;
  fetchedAt: string | undefined;
  subject: string | undefined;
  serialNumber: string | undefined;
  fingerprint256: string | undefined;
  notAfter: string | undefined;
  daysLeft: number | undefined;
}

export interface Problem {
  code: string;
  field: string | undefined;
  ref: string | undefined;
  message: string;
  /** Every field the problem is about, where one store call served several (`field` is the first). */
  fields?: string[];
}

export const out = (line: string) => process.stdout.write(`${withoutUrlCredentials(line)}\n`);
export const err = (line: string) => process.stderr.write(`${withoutUrlCredentials(line)}\n`);
/**
 * JSON output is cleaned value by value, before serialising: cleaning the serialised line could reach across
 * a closing quote. With `nulls`, missing values are null (check: machines get every column).
 */
export const outJson = (value: unknown, options: { space?: number; nulls?: boolean } = {}) => {
  const clean = (_key: string, v: unknown): unknown => {
    if (v === undefined) return options.nulls ? null : undefined;
    return typeof v === 'string' ? withoutUrlCredentials(v) : v;
  };
  process.stdout.write(`${JSON.stringify(value, clean, options.space)}\n`);
};

export function daysLeft(notAfter: Date, now = Date.now()): number {
  return Math.floor((notAfter.getTime() - now) / DAY);
}

/** X509Certificate prints a subject one attribute per line. */
function oneLine(subject: string): string {
  return subject.split('\n').filter(Boolean).join(', ');
}

export function certColumns(
  cert: Pick<CertificateInfo, 'subject' | 'serialNumber' | 'fingerprint256' | 'notAfter'>,
) {
  return {
    subject: oneLine(cert.subject),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    notAfter: cert.notAfter.toISOString(),
    daysLeft: daysLeft(cert.notAfter),
  };
}

export const NO_CERT = {
  subject: undefined,
  serialNumber: undefined,
  fingerprint256: undefined,
  notAfter: undefined,
  daysLeft: undefined,
};

/** One row per field, with the certificate it carries; the CA bundle gets one row per CA certificate. */
export function buildRows(
  resolver: Resolver,
  certificates: readonly CertificateInfo[],
  resolved: ResolvedOptions | undefined,
): Row[] {
  const byField = new Map(certificates.map((cert) => [cert.field, cert]));
  const fields = resolver.status().fields;
  const isCa = (field: string) => field === 'ca' || field.startsWith('ca[');
  const caSlots = fields.filter((field) => isCa(field.field));
  // The resolver reports leaf certificates only: read the CA certificates from the options it serves.
  const caCerts = (resolved?.ca === undefined ? [] : Array.isArray(resolved.ca) ? resolved.ca : [resolved.ca])
    .map((value) => {
      try {
        return new X509Certificate(value as string | Buffer);
      } catch {
        return undefined;
      }
    })
    .filter((cert) => cert !== undefined);

  const rows: Row[] = [];
  let caDone = false;
  for (const field of fields) {
    const base = {
      field: field.field,
      source: field.source,
      version: field.version,
      fetchedAt: field.fetchedAt?.toISOString(),
    };
    if (!isCa(field.field) || caCerts.length === 0) {
      const cert = byField.get(field.field);
      rows.push({ ...base, ...(cert ? certColumns(cert) : NO_CERT) });
      continue;
    }
    if (caDone) continue;
    caDone = true;
    const [slot] = caSlots;
    if (caSlots.length > 1) {
      for (const other of caSlots) {
        rows.push({
          field: other.field,
          source: other.source,
          version: other.version,
          fetchedAt: other.fetchedAt?.toISOString(),
          ...NO_CERT,
        });
      }
    }
    caCerts.forEach((cert, index) => {
      rows.push({
        field: caCerts.length > 1 ? `ca#${index}` : 'ca',
        source: caSlots.length === 1 && slot ? slot.source : '(ca bundle)',
        version: caSlots.length === 1 ? slot?.version : undefined,
        fetchedAt: caSlots.length === 1 ? slot?.fetchedAt?.toISOString() : undefined,
        ...certColumns({
          subject: cert.subject,
          serialNumber: cert.serialNumber,
          fingerprint256: cert.fingerprint256,
          notAfter: new Date(cert.validTo),
        }),
      });
    });
  }
  return rows;
}

export function unexpected(error: unknown): string {
  return `unexpected error: ${(safeCause(error) as Error).message}`;
}

export function problemOf(error: unknown): Problem {
  if (error instanceof TlsSecretsError) {
    return { code: error.code, field: error.field, ref: error.ref, message: error.message };
  }
  // A foreign error's message may quote what it failed on (Node's argument errors quote the value): it is
  // reduced as a cause would be.
  return { code: 'UNEXPECTED', field: undefined, ref: undefined, message: unexpected(error) };
}

/** Absolute paths under the working directory are shown relative to it. */
export function shorten(text: string): string {
  const cwd = `${process.cwd()}/`;
  return text.split(cwd).join('');
}

function clip(text: string | undefined, width: number): string {
  if (text === undefined) return '-';
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

export function table(rows: Row[]): string {
  const header = ['FIELD', 'SOURCE', 'VERSION', 'SHA-256', 'SUBJECT', 'NOT AFTER', 'DAYS LEFT'];
  const cells = rows.map((row) => [
    row.field,
    shorten(row.source),
    clip(row.version, 18),
    // The first 8 bytes tell certificates apart at a glance; --json carries the full fingerprint.
    row.fingerprint256 ? `${row.fingerprint256.slice(0, 23)}…` : '-',
    clip(row.subject, 40),
    row.notAfter ? row.notAfter.replace(/\.\d{3}Z$/, 'Z') : '-',
    row.daysLeft === undefined ? '-' : String(row.daysLeft),
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...cells.map((line) => (line[i] ?? '').length)),
  );
  return [header, ...cells]
    .map((line) =>
      line
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function certificateJson(cert: CertificateInfo) {
  return { field: cert.field, ref: cert.ref, ...certColumns(cert) };
}

export function describeCert(cert: CertificateInfo): string {
  const columns = certColumns(cert);
  return `${cert.field}: ${columns.subject}, SHA-256 ${cert.fingerprint256.slice(0, 23)}…, notAfter ${columns.notAfter} (${columns.daysLeft} days left)`;
}
