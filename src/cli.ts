#!/usr/bin/env node
/**
 * `tls-secrets check <config>`: resolve every source once, validate (the resolver's validation gate), print
 * what is served, and fail naming field and reference. `tls-secrets watch <config>`: keep the resolver
 * running and print rotations, errors and expiry warnings as they happen.
 * Exit codes: 0 fine, 1 a problem with the material or a store, 2 usage or configuration.
 */
import { X509Certificate } from 'node:crypto';
import { parseArgs } from 'node:util';
import { type ConfiguredResolver, createResolverFromConfig } from './config.js';
import { safeCause, TlsSecretsError, withoutUrlCredentials } from './errors.js';
import type { Resolver } from './resolver/index.js';
import type { CertificateInfo, ExpiringEvent, ResolvedOptions, RotateEvent, StaleEvent } from './types.js';

const USAGE = `Usage: tls-secrets <command> <config> [options]

Commands:
  check <config>    resolve and validate every source once, print a table, exit 1 on any problem
  watch <config>    keep running: print rotations, errors and expiry warnings as they happen

Options:
  --json            machine-readable output (check: one JSON document; watch: one JSON object per line)
  --min-days <n>    check: also fail when a certificate expires in fewer than n days
  --interval <ms>   override the config's refreshIntervalMs
  -h, --help        show this help

Config: JSON, or YAML with the "yaml" package installed. See docs/cli.md.
Exit codes: 0 fine, 1 a problem with the material or a store, 2 usage or configuration.
`;

const DAY = 86_400_000;

class UsageError extends Error {}

interface Row {
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

interface Problem {
  code: string;
  field: string | undefined;
  ref: string | undefined;
  message: string;
}

// Every line goes through withoutUrlCredentials: an endpoint's password never reaches the terminal or a log.
const out = (line: string) => process.stdout.write(`${withoutUrlCredentials(line)}\n`);
const err = (line: string) => process.stderr.write(`${withoutUrlCredentials(line)}\n`);
/**
 * JSON output is cleaned value by value, before serialising: cleaning the serialised line could reach across
 * a closing quote. With `nulls`, missing values are null (check: machines get every column).
 */
const outJson = (value: unknown, options: { space?: number; nulls?: boolean } = {}) => {
  const clean = (_key: string, v: unknown): unknown => {
    if (v === undefined) return options.nulls ? null : undefined;
    return typeof v === 'string' ? withoutUrlCredentials(v) : v;
  };
  process.stdout.write(`${JSON.stringify(value, clean, options.space)}\n`);
};

function daysLeft(notAfter: Date, now = Date.now()): number {
  return Math.floor((notAfter.getTime() - now) / DAY);
}

/** X509Certificate prints a subject one attribute per line. */
function oneLine(subject: string): string {
  return subject.split('\n').filter(Boolean).join(', ');
}

function certColumns(
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

const NO_CERT = {
  subject: undefined,
  serialNumber: undefined,
  fingerprint256: undefined,
  notAfter: undefined,
  daysLeft: undefined,
};

/** One row per field, with the certificate it carries; the CA bundle gets one row per CA certificate. */
function buildRows(
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

function unexpected(error: unknown): string {
  return `unexpected error: ${(safeCause(error) as Error).message}`;
}

function problemOf(error: unknown): Problem {
  if (error instanceof TlsSecretsError) {
    return { code: error.code, field: error.field, ref: error.ref, message: error.message };
  }
  // A foreign error's message may quote what it failed on (Node's argument errors quote the value): it is
  // reduced as a cause would be.
  return { code: 'UNEXPECTED', field: undefined, ref: undefined, message: unexpected(error) };
}

/** Absolute paths under the working directory are shown relative to it. */
function shorten(text: string): string {
  const cwd = `${process.cwd()}/`;
  return text.split(cwd).join('');
}

function clip(text: string | undefined, width: number): string {
  if (text === undefined) return '-';
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

function table(rows: Row[]): string {
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

interface Flags {
  json: boolean;
  minDays: number | undefined;
  interval: number | undefined;
}

async function load(configPath: string, flags: Flags): Promise<ConfiguredResolver> {
  const configured = await createResolverFromConfig(configPath, {
    // No start budget: `check` reports a failing store at once, and `watch` retries a cold load itself
    // (printing each failure, and stopping at once on a signal).
    resolverOptions: {
      startBudgetMs: 0,
      ...(flags.interval === undefined ? {} : { refreshIntervalMs: flags.interval }),
    },
  });
  // By line and kind only: the library never quotes a config's text, and neither does the CLI.
  for (const warning of configured.warnings) err(`tls-secrets: warning: ${warning}`);
  return configured;
}

async function check(configPath: string, flags: Flags): Promise<number> {
  const configured = await load(configPath, flags);
  const { resolver } = configured;
  let certificates: readonly CertificateInfo[] = [];
  resolver.on('rotate', (event) => {
    certificates = event.certificates;
  });
  let resolved: ResolvedOptions | undefined;
  let thrown: unknown;
  try {
    resolved = await resolver.resolve();
  } catch (error) {
    thrown = error;
  }
  const rows = buildRows(resolver, certificates, resolved);
  const problems: Problem[] = [];
  for (const field of resolver.status().fields) {
    if (field.lastError) {
      problems.push({
        code: field.lastError.code,
        field: field.field,
        ref: field.source,
        message: field.lastError.message,
      });
    }
  }
  if (thrown !== undefined) {
    const problem = problemOf(thrown);
    if (!problems.some((known) => known.message === problem.message)) problems.unshift(problem);
  }
  if (flags.minDays !== undefined) {
    for (const row of rows) {
      if (row.daysLeft !== undefined && row.daysLeft < flags.minDays) {
        problems.push({
          code: 'EXPIRES_SOON',
          field: row.field,
          ref: row.source,
          message: `certificate ${row.subject} expires in ${row.daysLeft} days (${row.notAfter}), under --min-days ${flags.minDays} (field ${row.field}, ref ${row.source})`,
        });
      }
    }
  }
  await configured.close();

  const ok = problems.length === 0;
  if (flags.json) {
    const status = resolver.status();
    outJson(
      {
        ok,
        config: configured.path,
        generation: status.generation,
        notAfter: status.notAfter?.toISOString(),
        fields: rows,
        problems,
      },
      { space: 2, nulls: true },
    );
  } else {
    out(table(rows));
    if (ok) {
      const soonest = rows.reduce<number | undefined>(
        (min, row) => (row.daysLeft === undefined ? min : Math.min(min ?? row.daysLeft, row.daysLeft)),
        undefined,
      );
      out(
        `\nOK: ${configPath} resolves and validates${soonest === undefined ? '' : `; the first certificate expires in ${soonest} days`}`,
      );
    } else {
      for (const problem of problems) err(`✗ ${problem.code}: ${shorten(problem.message)}`);
      err(`\nFAILED: ${problems.length} problem${problems.length > 1 ? 's' : ''} in ${configPath}`);
    }
  }
  return ok ? 0 : 1;
}

function certificateJson(cert: CertificateInfo) {
  return { field: cert.field, ref: cert.ref, ...certColumns(cert) };
}

function describeCert(cert: CertificateInfo): string {
  const columns = certColumns(cert);
  return `${cert.field}: ${columns.subject}, SHA-256 ${cert.fingerprint256.slice(0, 23)}…, notAfter ${columns.notAfter} (${columns.daysLeft} days left)`;
}

async function watch(configPath: string, flags: Flags): Promise<number> {
  const configured = await load(configPath, flags);
  const { resolver } = configured;
  const emit = (event: string, data: Record<string, unknown>, line: string) => {
    const time = new Date().toISOString();
    if (flags.json) outJson({ time, event, ...data });
    else out(`${time} ${line}`);
  };

  let ready = false;
  let certificates: readonly CertificateInfo[] = [];
  resolver.on('rotate', (event: RotateEvent) => {
    certificates = event.certificates;
    if (!ready) return;
    emit(
      'rotate',
      {
        generation: event.generation,
        changed: event.changed,
        versions: event.versions,
        certificates: event.certificates.map(certificateJson),
      },
      `rotate generation ${event.generation}: changed ${event.changed.join(', ') || 'nothing'}${event.certificates.map((cert) => `; ${describeCert(cert)}`).join('')}`,
    );
  });
  const onError = (error: unknown) => {
    const problem = problemOf(error);
    emit('error', { ...problem }, `error ${problem.code}: ${shorten(problem.message)}`);
  };
  resolver.on('error', onError);
  resolver.on('stale', (event: StaleEvent) =>
    emit(
      'stale',
      {
        generation: event.generation,
        since: event.since.toISOString(),
        notAfter: event.notAfter?.toISOString(),
        code: event.error.code,
      },
      `stale: still serving generation ${event.generation} since ${event.since.toISOString()}${event.notAfter ? ` (valid until ${event.notAfter.toISOString()})` : ''}`,
    ),
  );
  const onExpiry = (kind: 'expiring' | 'expired') => (event: ExpiringEvent) =>
    emit(
      kind,
      {
        generation: event.generation,
        certificate: certificateJson(event.certificate),
        remainingMs: event.remainingMs,
      },
      `${kind} ${describeCert(event.certificate)}`,
    );
  resolver.on('expiring', onExpiry('expiring'));
  resolver.on('expired', onExpiry('expired'));

  // The resolver's timers and watchers never hold the process open: this does, until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  let wake: (() => void) | undefined;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      err(`tls-secrets: ${signal}, stopping`);
      wake?.();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

  // A cold load that fails is retried here: the resolver schedules refreshes only once it has a bundle.
  let resolved: ResolvedOptions | undefined;
  for (let delay = 1_000; !stopping; delay = Math.min(delay * 2, 30_000)) {
    try {
      resolved = await resolver.resolve();
      break;
    } catch (error) {
      onError(error);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
  if (resolved) {
    ready = true;
    const rows = buildRows(resolver, certificates, resolved);
    if (flags.json) {
      emit('ready', { generation: resolver.generation, fields: rows }, '');
    } else {
      out(table(rows));
      out(
        `${new Date().toISOString()} ready generation ${resolver.generation}: watching ${configPath} (Ctrl-C to stop)`,
      );
    }
  }
  await stopped;
  clearInterval(keepAlive);
  await configured.close();
  return 0;
}

function parse(argv: string[]): { command: string; config: string; flags: Flags } | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      'min-days': { type: 'string' },
      interval: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const [command, config, ...extra] = positionals;
  if (command !== 'check' && command !== 'watch') {
    throw new UsageError(command ? `unknown command "${command}"` : 'missing command');
  }
  if (!config) throw new UsageError(`${command} needs a config file`);
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const number = (name: string, value: string | undefined, min: number) => {
    if (value === undefined) return undefined;
    const parsed = Number(value);
    if (!Number.isFinite(parsed) || parsed < min)
      throw new UsageError(`--${name} must be a number >= ${min}`);
    return parsed;
  };
  const minDays = number('min-days', values['min-days'], 0);
  if (minDays !== undefined && command !== 'check') throw new UsageError('--min-days applies to check');
  return {
    command,
    config,
    flags: { json: values.json, minDays, interval: number('interval', values.interval, 1) },
  };
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    err(`tls-secrets: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  if (parsed === 'help') {
    out(USAGE);
    return 0;
  }
  try {
    return await (parsed.command === 'check' ? check : watch)(parsed.config, parsed.flags);
  } catch (error) {
    // Only loading the config throws here: resolve failures are reported by check and watch themselves.
    const problem = problemOf(error);
    if (parsed.flags.json) outJson({ ok: false, problems: [problem] }, { space: 2 });
    err(`tls-secrets: ${problem.message}`);
    return problem.code === 'CONFIGURATION' ? 2 : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Where it happened (the stack frames), not what it said.
    const frames =
      error instanceof Error ? (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line)) : [];
    err([`tls-secrets: ${unexpected(error)}`, ...frames].join('\n'));
    process.exitCode = 1;
  },
);
