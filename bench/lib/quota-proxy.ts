/**
 * A counting HTTP proxy in front of a real store, optionally enforcing a quota per API the way AWS does:
 * one token bucket per API (refilled at `rate` per second, holding at most one second of it), and a call
 * that finds its bucket empty is answered `400 ThrottlingException` without reaching the store. Every call
 * is counted per API and per second since the proxy started (attempted, throttled, and the store's status
 * codes), so a bench can report peak rates against each quota and a pass-through proxy in front of OpenBao
 * can count the 429s the server's own rate-limit quota sends.
 *
 * Importable by tests too: nothing here depends on the bench.
 */
import { Agent, createServer, type IncomingMessage, request } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** Names the API a request calls, e.g. `GetSecretValue` or `KV read`. */
export type Classifier = (request: IncomingMessage) => string;

/** AWS JSON protocol: `X-Amz-Target: secretsmanager.GetSecretValue` names the operation. */
export const awsTarget: Classifier = (req) => {
  const header = req.headers['x-amz-target'];
  const value = Array.isArray(header) ? header[0] : header;
  return value?.split('.').pop() ?? 'unknown';
};

/** The throttling answer of an AWS JSON-protocol service (what the SDK turns into ThrottlingException). */
export const AWS_THROTTLING = {
  status: 400,
  headers: {
    'Content-Type': 'application/x-amz-json-1.1',
    'x-amzn-ErrorType': 'ThrottlingException',
  },
  body: JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }),
} as const;

export interface QuotaProxyOptions {
  /** `http://host:port` of the store. */
  readonly target: string;
  readonly classify: Classifier;
  /** Calls per second allowed per API; APIs not listed are not limited. */
  readonly quotas?: Readonly<Record<string, number>>;
  /** What a throttled call gets. Default: AWS's ThrottlingException. */
  readonly throttled?: { status: number; headers: Record<string, string>; body: string };
  /** Connections to the store at once; requests beyond wait in the proxy. Default 64. */
  readonly maxSockets?: number;
  /** The buckets' clock in ms (a test freezes it to make refills exact). Default `performance.now`. */
  readonly now?: () => number;
}

export interface ApiCounts {
  /** Calls received, throttled ones included. */
  attempted: number;
  /** Calls answered by the proxy's quota. */
  throttled: number;
  /** Status codes the store answered forwarded calls with. */
  statuses: Record<string, number>;
  /** Calls received in each second since the proxy started (index = second). */
  perSecond: number[];
  /** Calls in each second that went through (not throttled by the proxy, whatever the store said). */
  admittedPerSecond: number[];
  /** For each call that went through, ms from the proxy sending it to the store's answer: the store's load. */
  answerMs: number[];
}

export interface QuotaProxy {
  readonly url: string;
  /** Epoch ms of second 0 of the per-second counts. */
  readonly startedAt: number;
  readonly counts: ReadonlyMap<string, ApiCounts>;
  /** Clears every count and restarts the seconds at `at` (epoch ms, default now; buckets stay as they are). */
  reset(at?: number): void;
  close(): Promise<void>;
}

/**
 * A quota as AWS enforces one: `perSecond` tokens a second, at most `burst` held (full at first); a call
 * takes one, and finds none when the quota is spent. `now` is in ms. `perSecond: 0` allows `burst` calls.
 */
export class TokenBucket {
  #tokens: number;
  #at: number;

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    now: number,
  ) {
    this.#tokens = burst;
    this.#at = now;
  }

  take(now: number): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

export async function startQuotaProxy(options: QuotaProxyOptions): Promise<QuotaProxy> {
  const target = new URL(options.target);
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 64 });
  const throttled = options.throttled ?? AWS_THROTTLING;
  const now = options.now ?? (() => performance.now());
  const buckets = new Map<string, TokenBucket>();
  for (const [api, rate] of Object.entries(options.quotas ?? {})) {
    buckets.set(api, new TokenBucket(rate, rate, now()));
  }
  let startedAt = Date.now();
  const counts = new Map<string, ApiCounts>();
  const countsOf = (api: string): ApiCounts => {
    let entry = counts.get(api);
    if (!entry) {
      entry = {
        attempted: 0,
        throttled: 0,
        statuses: {},
        perSecond: [],
        admittedPerSecond: [],
        answerMs: [],
      };
      counts.set(api, entry);
    }
    return entry;
  };
  const bump = (list: number[], index: number) => {
    while (list.length <= index) list.push(0);
    list[index] = (list[index] ?? 0) + 1;
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const api = options.classify(req);
    const entry = countsOf(api);
    const second = Math.max(0, Math.floor((Date.now() - startedAt) / 1000));
    entry.attempted += 1;
    bump(entry.perSecond, second);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const bucket = buckets.get(api);
      if (bucket && !bucket.take(now())) {
        entry.throttled += 1;
        res.writeHead(throttled.status, throttled.headers);
        res.end(throttled.body);
        return;
      }
      bump(entry.admittedPerSecond, second);
      const body = Buffer.concat(chunks);
      const sentAt = performance.now();
      const upstream = request(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: target.host },
          agent,
        },
        (answer) => {
          entry.answerMs.push(performance.now() - sentAt);
          const status = String(answer.statusCode ?? 0);
          entry.statuses[status] = (entry.statuses[status] ?? 0) + 1;
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', (error) => {
        entry.statuses.error = (entry.statuses.error ?? 0) + 1;
        if (!res.headersSent) res.writeHead(502);
        res.end(String(error.message));
      });
      upstream.end(body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', 4096, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get startedAt() {
      return startedAt;
    },
    counts,
    reset(at = Date.now()) {
      counts.clear();
      startedAt = at;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
