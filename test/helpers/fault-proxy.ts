/**
 * A fault-injecting HTTP proxy to put in front of a real store (moto, OpenBao). Healthy, it forwards every
 * request to the target; a fault makes it refuse connections, swallow requests, answer late, or answer with
 * an error in the store's own format, so the real SDK on the client side sees what an outage looks like.
 * Every request it receives is logged (method, path, time), so tests count store calls by kind.
 */

import { randomUUID } from 'node:crypto';
import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { TokenBucket } from '../../bench/lib/quota-proxy.js';

export type ProxyFault =
  /** Forward to the target. */
  | { readonly kind: 'none' }
  /** Nothing listens on the port: ECONNREFUSED. Open connections are destroyed. */
  | { readonly kind: 'refused' }
  /** Accept and read the request, never answer. */
  | { readonly kind: 'hang' }
  /** Forward, but only after `ms`: a slow store. */
  | { readonly kind: 'delay'; readonly ms: number }
  /**
   * AWS quotas: a token bucket per API (the `X-Amz-Target` operation, e.g. `BatchGetSecretValue`) holding
   * `burst` calls and refilled at `perSecond`; a call that finds it empty is answered as AWS throttles
   * (awsThrottled). APIs without a limit are forwarded. `perSecond: 0` allows exactly `burst` calls.
   */
  | {
      readonly kind: 'quota';
      readonly limits: Readonly<Record<string, { readonly perSecond: number; readonly burst: number }>>;
    }
  /** Answer every request with this status and body. */
  | {
      readonly kind: 'respond';
      readonly status: number;
      readonly body: string;
      readonly headers?: Readonly<Record<string, string>>;
      /** Only requests whose path starts with this get the answer; the others are forwarded. */
      readonly pathPrefix?: string;
    }
  /**
   * Answer every request with this status and a body built from the request as text (request line, headers,
   * body): a misbehaving server or proxy that echoes what it was sent, credentials included. `headers` may be
   * built from the request too: a server that echoes into a header (an AWS request id, an error type).
   */
  | {
      readonly kind: 'echo';
      readonly status: number;
      readonly body: (request: string) => string;
      readonly headers?:
        | Readonly<Record<string, string>>
        | ((request: string) => Readonly<Record<string, string>>);
    };

export interface ProxiedRequest {
  readonly method: string;
  /** Path and query, e.g. `/v1/secret/data/app`. */
  readonly path: string;
  /** The AWS operation (`X-Amz-Target` after its dot), e.g. `GetSecretValue`; undefined for other stores. */
  readonly target: string | undefined;
  /** Epoch ms when the proxy received it. */
  readonly at: number;
  /** Answered by a fault instead of the target. */
  readonly faulted: boolean;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`; the port stays the same across `refused`. */
  readonly url: string;
  /** Requests the proxy received (forwarded or faulted); connections refused never reach it. */
  readonly requests: number;
  /** Requests that were answered by a fault instead of the target. */
  readonly faulted: number;
  /** Every request received, in order. */
  readonly log: readonly ProxiedRequest[];
  readonly fault: ProxyFault;
  setFault(fault: ProxyFault): Promise<void>;
  close(): Promise<void>;
}

const AWS_JSON = { 'Content-Type': 'application/x-amz-json-1.1' };

/** AWS JSON-protocol errors as the service sends them (awsJson1_1: `__type` names the exception). */
export const awsFaults = {
  internal: {
    kind: 'respond',
    status: 500,
    body: JSON.stringify({ __type: 'InternalFailure', message: 'internal failure' }),
    headers: AWS_JSON,
  },
  unavailable: {
    kind: 'respond',
    status: 503,
    body: JSON.stringify({ __type: 'ServiceUnavailable', message: 'service unavailable' }),
    headers: AWS_JSON,
  },
  throttling: {
    kind: 'respond',
    status: 400,
    body: JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' }),
    headers: AWS_JSON,
  },
} as const satisfies Record<string, ProxyFault>;

/**
 * A throttled call as AWS answers it in the JSON protocols: HTTP 400, `__type` in the body and the
 * `x-amzn-ErrorType` header (which the SDK reads first), a request id. The SDK names the error after it.
 */
function awsThrottled(res: ServerResponse): void {
  const body = JSON.stringify({ __type: 'ThrottlingException', message: 'Rate exceeded' });
  res.writeHead(400, {
    ...AWS_JSON,
    'Content-Length': Buffer.byteLength(body),
    'x-amzn-ErrorType': 'ThrottlingException',
    'x-amzn-RequestId': randomUUID(),
  });
  res.end(body);
}

const VAULT_JSON = { 'Content-Type': 'application/json' };
type RespondFault = Extract<ProxyFault, { kind: 'respond' }>;

const vaultError = (status: number, message: string): RespondFault => ({
  kind: 'respond',
  status,
  body: JSON.stringify({ errors: [message] }),
  headers: VAULT_JSON,
});

/**
 * Vault/OpenBao errors as the server (or what stands in front of it) sends them: `{"errors": [...]}`. The
 * sealed answer is what a real sealed server says; tests that can seal a server of their own do that instead.
 */
export const vaultFaults = {
  internal: vaultError(500, 'internal error'),
  /** A load balancer in front of Vault with no healthy backend: not Vault's JSON. */
  badGateway: {
    kind: 'respond',
    status: 502,
    body: '<html><body><h1>502 Bad Gateway</h1></body></html>',
    headers: { 'Content-Type': 'text/html' },
  },
  rateLimited: vaultError(429, 'request path "secret/data": rate limit quota exceeded'),
  sealed: vaultError(503, 'Vault is sealed'),
  /** A standby or DR secondary behind a load balancer that routes by status: 503 without "sealed". */
  standby: vaultError(503, 'node is not active'),
  /** Vault Enterprise eventual consistency: the node has not caught up with the index the client asked for. */
  notCaughtUp: vaultError(412, 'required index state not present'),
} as const satisfies Record<string, RespondFault>;

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const sockets = new Set<Socket>();
  const hung = new Set<ServerResponse>();
  let fault: ProxyFault = { kind: 'none' };
  let requests = 0;
  let faulted = 0;
  let closed = false;
  const log: ProxiedRequest[] = [];
  /** The quota fault's buckets, by API. */
  let buckets = new Map<string, TokenBucket>();
  const takeToken = (limits: Extract<ProxyFault, { kind: 'quota' }>['limits'], api: string | undefined) => {
    const limit = api === undefined ? undefined : limits[api];
    if (!limit || api === undefined) return true;
    const now = Date.now();
    let bucket = buckets.get(api);
    if (!bucket) {
      bucket = new TokenBucket(limit.perSecond, limit.burst, now);
      buckets.set(api, bucket);
    }
    return bucket.take(now);
  };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: upstream.host },
        agent,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  };

  const server = createServer((req, res) => {
    requests += 1;
    const current = fault;
    const path = req.url ?? '/';
    const amzTarget = req.headers['x-amz-target'];
    const target = typeof amzTarget === 'string' ? amzTarget.split('.').at(-1) : undefined;
    const faulting =
      current.kind !== 'none' &&
      current.kind !== 'delay' &&
      !(current.kind === 'quota' && takeToken(current.limits, target)) &&
      !(
        current.kind === 'respond' &&
        current.pathPrefix !== undefined &&
        !path.startsWith(current.pathPrefix)
      );
    log.push({ method: req.method ?? 'GET', path, target, at: Date.now(), faulted: faulting });
    if (!faulting && current.kind !== 'delay') {
      forward(req, res);
      return;
    }
    switch (current.kind) {
      case 'quota':
        faulted += 1;
        req.resume();
        req.once('end', () => awsThrottled(res));
        return;
      case 'delay': {
        const timer = setTimeout(() => forward(req, res), current.ms);
        res.once('close', () => clearTimeout(timer));
        return;
      }
      case 'hang':
        faulted += 1;
        hung.add(res);
        req.resume();
        res.once('close', () => hung.delete(res));
        return;
      case 'respond': {
        faulted += 1;
        const { status, body, headers } = current;
        req.resume();
        req.once('end', () => {
          res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
          res.end(body);
        });
        return;
      }
      case 'echo': {
        faulted += 1;
        const { status, body, headers } = current;
        const chunks: Buffer[] = [];
        req.on('data', (chunk: Buffer) => chunks.push(chunk));
        req.once('end', () => {
          const head = Object.entries(req.headers).map(([name, value]) => `${name}: ${String(value)}`);
          const received = [`${req.method} ${req.url}`, ...head, '', Buffer.concat(chunks).toString()].join(
            '\n',
          );
          const text = body(received);
          const extra = typeof headers === 'function' ? headers(received) : headers;
          res.writeHead(status, { 'Content-Length': Buffer.byteLength(text), ...extra });
          res.end(text);
        });
        return;
      }
      case 'refused':
        // A connection accepted just before the listener closed: drop it like a dead host would.
        req.socket.destroy();
        return;
    }
  });
  server.keepAliveTimeout = 1_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve((server.address() as AddressInfo).port);
      });
    });
  const stopListening = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });

  const port = await listen(0);

  return {
    url: `http://127.0.0.1:${port}`,
    get requests() {
      return requests;
    },
    get faulted() {
      return faulted;
    },
    log,
    get fault() {
      return fault;
    },
    async setFault(next) {
      if (closed) throw new Error('fault proxy is closed');
      const previous = fault;
      fault = next;
      buckets = new Map();
      if (next.kind === 'refused') await stopListening();
      else if (previous.kind === 'refused') await listen(port);
      if (previous.kind === 'hang' && next.kind !== 'hang') {
        // The store came back: what it never answered is gone, as after a restart.
        for (const res of hung) res.destroy();
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const res of hung) res.destroy();
      await stopListening();
      agent.destroy();
    },
  };
}
