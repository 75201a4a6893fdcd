/**
 * Canary secrets and the views they must never show in. A canary is planted where a real secret would be (a
 * private key, a passphrase, a Vault token, an AppRole secret_id, a Kubernetes JWT, AWS credentials); every
 * view the library offers is recorded as text; a scan then looks in every view for every canary in every form
 * a leak could take: the value itself, its hex and base64, and its SHA-256 in the forms the library once used
 * as versions (a 16-hex-digit prefix, the whole digest).
 */
import { createHash, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import type { Resolver } from '../../src/index.js';
import { attachLogger } from '../../src/index.js';
import { instrument } from '../../src/otel.js';

export type CanaryKind =
  | 'private key'
  | 'passphrase'
  | 'vault token'
  | 'approle secret_id'
  | 'kubernetes jwt'
  | 'aws access key id'
  | 'aws secret key'
  | 'aws session token'
  | 'ticket keys';

/** What the scan looks for: one needle per canary and form. */
export interface Needle {
  readonly kind: CanaryKind;
  readonly form: string;
  readonly text: string;
}

export interface View {
  readonly label: string;
  readonly text: string;
}

const sha256 = (content: string | Uint8Array) => createHash('sha256').update(content).digest('hex');

/** A recognisable random value: `CANARY<kind><hex>` with no separators a message could split on. */
export function canaryValue(tag: string): string {
  return `CANARY${tag.replace(/[^A-Za-z0-9]/g, '')}${randomBytes(12).toString('hex')}`;
}

export class Canaries {
  readonly needles: Needle[] = [];
  readonly kinds = new Set<CanaryKind>();

  /** A secret value, with its hex, base64 and SHA-256 forms. */
  plant(kind: CanaryKind, value: string): string {
    this.kinds.add(kind);
    this.add(kind, 'raw', value);
    this.add(kind, 'hex', Buffer.from(value).toString('hex'));
    this.add(kind, 'base64', Buffer.from(value).toString('base64').replace(/=+$/, ''));
    this.add(kind, 'base64url', Buffer.from(value).toString('base64url'));
    this.digest(kind, value);
    return value;
  }

  /** Secret bytes (session ticket keys): their hex, base64 and digests. */
  plantBytes(kind: CanaryKind, bytes: Uint8Array): void {
    this.kinds.add(kind);
    const buffer = Buffer.from(bytes);
    this.add(kind, 'hex', buffer.toString('hex'));
    this.add(kind, 'hex (inspect)', inspectedBytes(buffer.subarray(0, 16)));
    this.add(kind, 'base64', buffer.toString('base64').replace(/=+$/, ''));
    this.add(kind, 'base64url', buffer.toString('base64url'));
    this.digest(kind, buffer);
  }

  /**
   * A PEM private key: two lines of its base64 body (what a printed key shows), the hex of its DER bytes
   * (what a Buffer shows in inspect), and the digests of the PEM.
   */
  plantKey(pem: string): void {
    this.kinds.add('private key');
    const body = pem
      .split(/\r?\n/)
      .filter((line) => line && !line.startsWith('-----') && !line.includes(':'));
    for (const line of body.slice(0, 2)) this.add('private key', 'pem line', line);
    const der = Buffer.from(body.join(''), 'base64');
    this.add('private key', 'der hex', der.subarray(8, 40).toString('hex'));
    this.add('private key', 'der hex (inspect)', inspectedBytes(der.subarray(8, 24)));
    this.digest('private key', pem);
  }

  /**
   * The unkeyed version forms of content that holds a canary (a JSON bundle, a KV map): what an offline
   * dictionary attack on a version would start from.
   */
  digest(kind: CanaryKind, content: string | Uint8Array): void {
    const hash = sha256(content);
    this.add(kind, 'sha256 prefix', hash.slice(0, 16));
    this.add(kind, 'sha256', hash);
  }

  /** The old KV v1 version form: SHA-256 of the map as canonical JSON. */
  digestKv(kind: CanaryKind, map: Record<string, string>): void {
    const canonical = `{${Object.keys(map)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${JSON.stringify(map[k])}`)
      .join(',')}}`;
    this.digest(kind, canonical);
  }

  private add(kind: CanaryKind, form: string, text: string): void {
    if (text.length >= 12) this.needles.push({ kind, form, text });
  }

  get forms(): number {
    return new Set(this.needles.map((needle) => needle.form)).size;
  }
}

/** `<Buffer 3a 4f …>`: how inspect prints bytes. */
function inspectedBytes(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** Everything the library showed during a flow, as text. */
export class Views {
  readonly views: View[] = [];
  errors = 0;
  events = 0;
  logLines = 0;
  metricRecords = 0;

  text(label: string, text: string): void {
    this.views.push({ label, text });
  }

  /**
   * A value as a user would print it: inspect with hidden properties at any depth, JSON.stringify, String(),
   * and for errors every link of the cause chain on its own (message, stack, and each own property).
   */
  value(label: string, value: unknown): void {
    this.text(`${label} inspect`, inspect(value, { showHidden: true, depth: Number.POSITIVE_INFINITY }));
    try {
      this.text(`${label} JSON`, JSON.stringify(value) ?? '');
    } catch (err) {
      this.text(`${label} JSON (threw)`, String(err));
    }
    this.text(`${label} String`, safeString(value));
    const seen = new Set<unknown>();
    let current: unknown = value;
    for (let depth = 0; current instanceof Error && !seen.has(current); depth++) {
      seen.add(current);
      if (depth === 0) this.errors += 1;
      const props = Object.getOwnPropertyNames(current).map((name) => {
        try {
          return `${name}=${inspect((current as unknown as Record<string, unknown>)[name], { showHidden: true, depth: Number.POSITIVE_INFINITY })}`;
        } catch (err) {
          return `${name} threw ${String(err)}`;
        }
      });
      this.text(
        `${label} cause#${depth}`,
        [String(current), current.message, current.stack ?? '', ...props].join('\n'),
      );
      current = (current as { cause?: unknown }).cause;
    }
  }

  /** Runs `run`, recording its result or what it threw. */
  async attempt<T>(label: string, run: () => Promise<T>): Promise<T | unknown> {
    try {
      const result = await run();
      this.value(`${label} result`, result);
      return result;
    } catch (err) {
      this.value(`${label} threw`, err);
      return err;
    }
  }

  /** Every event of `resolver`, the lines attachLogger writes, and the attributes instrument() records. */
  async observe(resolver: Resolver, label: string): Promise<void> {
    for (const name of ['rotate', 'error', 'stale', 'expiring', 'expired', 'storeCall'] as const) {
      resolver.on(name, (payload: unknown) => {
        this.events += 1;
        this.value(`${label} ${name} event`, payload);
      });
    }
    const line = (level: string) => (obj: object, msg?: string) => {
      this.logLines += 1;
      this.value(`${label} logger.${level}`, { obj, msg });
    };
    attachLogger(resolver, {
      debug: line('debug'),
      info: line('info'),
      warn: line('warn'),
      error: line('error'),
    });
    const record = (kind: string) => (value: number, attributes?: unknown) => {
      this.metricRecords += 1;
      this.value(`${label} metric ${kind}`, { value, attributes });
    };
    const observable = (kind: string) => ({
      addCallback: (cb: (result: { observe: (v: number, a?: unknown) => void }) => void) => {
        // Observable gauges are read when the test snapshots the resolver.
        this.gauges.push(() => cb({ observe: record(kind) }));
      },
      removeCallback: () => {},
    });
    const meter = {
      createObservableGauge: (name: string) => observable(name),
      createCounter: (name: string) => ({ add: record(name) }),
      createHistogram: (name: string) => ({ record: record(name) }),
    };
    await instrument(resolver, { meter: meter as never, attributes: { 'tls_secrets.resolver': label } });
  }

  private readonly gauges: (() => void)[] = [];

  /** The resolver and everything it exposes, as a user would log them. */
  async snapshot(resolver: Resolver, label: string): Promise<void> {
    for (const gauge of this.gauges) await gauge();
    this.value(`${label} resolver`, resolver);
    this.value(`${label} status()`, resolver.status());
    const resolved = await resolver.resolve().catch((err: unknown) => err);
    this.value(`${label} resolve()`, resolved);
  }

  /** Every needle found in every view: `<kind> <form> in <view>`. */
  scan(canaries: Canaries): string[] {
    const hits: string[] = [];
    for (const view of this.views) {
      for (const needle of canaries.needles) {
        if (view.text.includes(needle.text)) hits.push(`${needle.kind} (${needle.form}) in ${view.label}`);
      }
    }
    return hits;
  }
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch (err) {
    return `String() threw ${inspect(err)}`;
  }
}
