/**
 * A moto server (the AWS mock) on a free loopback port, for the test run (test/setup/moto.ts) and the
 * benchmarks. MOTO_ENDPOINT points at one that is already running (e.g. the motoserver/moto container).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Moto {
  readonly url: string;
  close(): Promise<void>;
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const START_TIMEOUT_MS = 20_000;

function findMoto(): string | undefined {
  const venv = join(root, '.venv-moto', 'bin', 'moto_server');
  if (existsSync(venv)) return venv;
  try {
    return execFileSync('sh', ['-c', 'command -v moto_server'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(1_000) });
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/**
 * A running moto, or the reason there is none. With `install`, a missing moto is installed into
 * .venv-moto first (scripts/setup-moto.sh).
 */
export async function startMoto(options: { install?: boolean } = {}): Promise<Moto | string> {
  const external = process.env.MOTO_ENDPOINT?.replace(/\/+$/, '');
  if (external) {
    return (await answers(external))
      ? { url: external, close: async () => {} }
      : `MOTO_ENDPOINT ${external} does not answer`;
  }
  let server = findMoto();
  if (!server && options.install) {
    try {
      execFileSync('bash', [join(root, 'scripts', 'setup-moto.sh')], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    } catch {
      return 'scripts/setup-moto.sh failed';
    }
    server = findMoto();
  }
  if (!server) return 'moto_server is not installed (python3 missing? run scripts/setup-moto.sh)';
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(server, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // moto logs every request on stderr: drain it, or a full pipe stalls the server.
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-2_000);
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return `moto_server exited with code ${child.exitCode}: ${log}`;
    if (await answers(url)) return { url, close: stop };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await stop();
  return `moto did not answer at ${url} within ${START_TIMEOUT_MS} ms`;
}
