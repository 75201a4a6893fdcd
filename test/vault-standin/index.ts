/**
 * An in-process stand-in for a `vault server -dev`, for tests on machines where no Vault binary runs.
 * It speaks Vault's HTTP API (stores-api.md section A, and the Vault sources where that is silent) so a
 * client cannot tell it from a dev-mode Vault: seed it over HTTP exactly as you would seed the real one.
 *
 * Dev-mode state at start: unsealed, the root token (no TTL), `secret/` mounted as KV v2. Mount `pki`,
 * `approle` and `kubernetes` yourself through `sys/mounts` and `sys/auth`.
 *
 * Served (methods as in Vault; PUT = POST, LIST = GET ?list=true):
 * - sys: health (GET/HEAD, all codes and overrides), seal-status, mounts[/<p>[/tune]], auth[/<p>],
 *   internal/ui/mounts[/<p>], leases/renew[/<id>], leases/lookup, capabilities-self, namespaces/<ns>
 * - KV v1 (`{type:'kv', options:{version:'1'}}` or no version) and KV v2 (`{type:'kv', options:{version:'2'}}`
 *   or `kv-v2`): data, metadata, delete, undelete, destroy, config; PATCH with merge-patch+json
 * - PKI: root/generate/{internal,exported}, DELETE root, root/replace, config/issuers, config/urls, roles,
 *   issue, revoke, certs, issuers, ca[/pem], ca_chain, cert/{ca,ca_chain,crl,<serial>}, crl[/pem],
 *   issuer/<ref>/{pem,der,json,crl[/pem|/der]}
 * - auth/token: lookup-self, lookup, renew-self, create, create-orphan, revoke-self, revoke
 * - AppRole: role/<r>, role/<r>/role-id, role/<r>/secret-id, login
 * - Kubernetes: config, role/<r>, login
 *
 * Known simplifications: policies are not evaluated, except that the root token may do anything and a
 * token carrying the `deny-all` policy may reach only what Vault's `default` policy grants; Kubernetes
 * logins read the JWT payload without checking its signature or calling TokenReview; KV v2
 * `delete_version_after` is accepted but not applied; a second root becomes the default issuer only through
 * `root/replace` or `config/issuers`, as in Vault 1.11+.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, STATUS_CODES } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Core } from './core.js';
import type { HealthState } from './types.js';
import { type Body, errorReply, isObject, type Reply } from './util.js';

export type { HealthState } from './types.js';

export interface VaultStandinOptions {
  /** The dev root token, as `-dev-root-token-id` sets it. Default `'root'`. */
  rootToken?: string;
}

export interface VaultFaults {
  /** Added before every response. Default 0. */
  latencyMs: number;
  /** Accept requests but never answer them, until cleared or `close()`. */
  hang: boolean;
  /** Every request but `sys/health` and `sys/seal-status` gets 503 `{"errors":["Vault is sealed"]}`. */
  sealed: boolean;
  /**
   * Answer matching `/v1/` requests with this status and `{"errors": errors}`; `pathPrefix` is matched
   * against the path after `/v1/`. After `times` matching responses the fault clears itself.
   */
  status?: { code: number; pathPrefix?: string; times?: number; errors?: string[] };
  /** The node role `sys/health` reports (standby, DR secondary, removed, ...). Default `'active'`. */
  healthState?: HealthState;
}

export interface VaultStandin {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  rootToken: string;
  /** Mutable switches, read on every request. */
  faults: VaultFaults;
  /** Every request received, path without the query. */
  requests: { method: string; path: string; at: number }[];
  requestCount(filter?: (r: { method: string; path: string }) => boolean): number;
  resetFaults(): void;
  /** Stops the server and destroys every connection, hung ones included. */
  close(): Promise<void>;
}

const DEFAULT_STATUS_ERRORS: Record<number, string[]> = {
  400: ['invalid request'],
  403: ['permission denied'],
  404: [],
  405: ['1 error occurred:\n\t* unsupported operation\n\n'],
  412: ['required index state not present'],
  429: ['rate limit quota exceeded'],
  500: ['1 error occurred:\n\t* internal error\n\n'],
  502: ['upstream error'],
  503: ['Vault is sealed'],
};

function defaultFaults(): VaultFaults {
  return { latencyMs: 0, hang: false, sealed: false };
}

/** A timer that never holds the process open on its own. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function stripV1(pathname: string): string {
  return pathname.replace(/^\/v1\//, '').replace(/^\/+/, '');
}

/** Request line, headers and body of a request Node's parser refused. */
function parseRawRequest(
  packet: Buffer,
): { method: string; url: string; headers: IncomingHttpHeaders; body: Buffer } | null {
  const split = packet.indexOf('\r\n\r\n');
  if (split === -1) return null;
  const [requestLine = '', ...headerLines] = packet.subarray(0, split).toString('latin1').split('\r\n');
  const match = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine);
  if (!match) return null;
  const headers: IncomingHttpHeaders = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { method: match[1] ?? 'LIST', url: match[2] ?? '/', headers, body: packet.subarray(split + 4) };
}

export async function startVaultStandin(options: VaultStandinOptions = {}): Promise<VaultStandin> {
  const rootToken = options.rootToken ?? 'root';
  const core = new Core(rootToken);
  const faults: VaultFaults = defaultFaults();
  const requests: VaultStandin['requests'] = [];
  let closed = false;
  /** Sockets answered by hand (LIST); the HTTP server no longer tracks them for closeAllConnections. */
  const rawSockets = new Set<Duplex>();

  /** Runs one request through the fault switches and the core; null when the server closed meanwhile. */
  async function handleRequest(
    method: string,
    rawUrl: string,
    headers: IncomingHttpHeaders,
    rawBody: Buffer,
  ) {
    const url = new URL(rawUrl, 'http://127.0.0.1');
    requests.push({ method, path: url.pathname, at: Date.now() });

    while (faults.hang && !closed) await sleep(10);
    if (closed) return null;
    if (faults.latencyMs > 0) await sleep(faults.latencyMs);
    if (closed) return null;

    if (!url.pathname.startsWith('/v1/')) return errorReply(404, []);
    const logical = stripV1(url.pathname);
    const status = faults.status;
    if (status && logical.startsWith(stripV1(status.pathPrefix ?? ''))) {
      if (status.times !== undefined) {
        status.times -= 1;
        if (status.times <= 0) faults.status = undefined;
      }
      return errorReply(status.code, status.errors ?? DEFAULT_STATUS_ERRORS[status.code] ?? []);
    }
    core.sealed = faults.sealed;
    core.healthState = faults.healthState ?? 'active';
    if (faults.sealed && logical !== 'sys/health' && logical !== 'sys/seal-status') {
      return errorReply(503, ['Vault is sealed']);
    }

    let body: Body = {};
    const text = rawBody.toString('utf8').trim();
    if (text !== '' && method !== 'GET' && method !== 'HEAD') {
      try {
        const parsed: unknown = JSON.parse(text);
        if (!isObject(parsed)) throw new Error('expected a JSON object');
        body = parsed;
      } catch (err) {
        return errorReply(400, [`failed to parse JSON input: ${(err as Error).message}`]);
      }
    }
    return core.dispatch({
      method,
      path: decodeURIComponent(logical),
      query: url.searchParams,
      headers,
      body,
    });
  }

  function serialise(
    reply: Reply,
    head: boolean,
  ): { status: number; headers: Record<string, string>; body: Buffer } {
    if (reply.kind === 'empty') {
      return { status: reply.status, headers: { 'Cache-Control': 'no-store' }, body: Buffer.alloc(0) };
    }
    if (reply.kind === 'raw') {
      const body = head ? Buffer.alloc(0) : Buffer.from(reply.body);
      return { status: reply.status, headers: { 'Content-Type': reply.contentType }, body };
    }
    // Go's json.Encoder ends every document with a newline.
    const body = head ? Buffer.alloc(0) : Buffer.from(`${JSON.stringify(reply.body)}\n`);
    return {
      status: reply.status,
      headers: { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' },
      body,
    };
  }

  const server = createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    readBody(req)
      .then((rawBody) => handleRequest(method, req.url ?? '/', req.headers, rawBody))
      .catch((err: unknown) => errorReply(500, [err instanceof Error ? err.message : String(err)]))
      .then((reply) => {
        if (reply === null || closed) {
          res.destroy();
          return;
        }
        const out = serialise(reply, method === 'HEAD');
        res.writeHead(out.status, out.headers);
        res.end(out.body);
      });
  });

  // Node's HTTP parser rejects the LIST method that Vault clients send, so those requests arrive here as
  // parse errors carrying the raw bytes; they are answered by hand and the connection is closed.
  server.on('clientError', (err: Error & { code?: string; rawPacket?: Buffer }, socket: Duplex) => {
    const request =
      err.code === 'HPE_INVALID_METHOD' && err.rawPacket ? parseRawRequest(err.rawPacket) : null;
    if (!request) {
      if (!socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    rawSockets.add(socket);
    socket.once('close', () => rawSockets.delete(socket));
    handleRequest(request.method, request.url, request.headers, request.body)
      .catch((e: unknown) => errorReply(500, [e instanceof Error ? e.message : String(e)]))
      .then((reply) => {
        if (reply === null || closed || socket.destroyed) {
          socket.destroy();
          return;
        }
        const out = serialise(reply, false);
        const lines = [`HTTP/1.1 ${out.status} ${STATUS_CODES[out.status] ?? ''}`];
        for (const [k, v] of Object.entries(out.headers)) lines.push(`${k}: ${v}`);
        lines.push(
          `Date: ${new Date().toUTCString()}`,
          `Content-Length: ${out.body.length}`,
          'Connection: close',
        );
        socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), out.body]));
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    rootToken,
    faults,
    requests,
    requestCount(filter) {
      return filter ? requests.filter(filter).length : requests.length;
    },
    resetFaults() {
      faults.status = undefined;
      faults.healthState = undefined;
      Object.assign(faults, defaultFaults());
    },
    async close() {
      if (closed) return;
      closed = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of rawSockets) socket.destroy();
      await done;
    },
  };
}
