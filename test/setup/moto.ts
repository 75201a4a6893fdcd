/**
 * Vitest globalSetup: starts one moto server (the AWS mock) on a free loopback port for the AWS Secrets Manager
 * tests and provides its URL as `motoEndpoint`. Without Python/moto it provides `''` and a reason, and those
 * tests skip visibly; with REQUIRE_MOTO=1 (CI) a missing moto fails the run instead.
 * MOTO_ENDPOINT points the tests at a moto that is already running (e.g. the motoserver/moto container).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of a running moto server, or `''` when none could be started. */
    motoEndpoint: string;
    /** Why `motoEndpoint` is empty. */
    motoUnavailable: string;
  }
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const venvServer = join(root, '.venv-moto', 'bin', 'moto_server');
const START_TIMEOUT_MS = 20_000;

function onPath(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function findMoto(): string | undefined {
  if (existsSync(venvServer)) return venvServer;
  return onPath('moto_server');
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

async function waitUntilUp(url: string, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw new Error(`moto_server exited with code ${child.exitCode}`);
    if (await answers(url)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`moto did not answer at ${url} within ${START_TIMEOUT_MS} ms`);
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const unavailable = (reason: string) => {
    if (process.env.REQUIRE_MOTO === '1') throw new Error(`moto is required (REQUIRE_MOTO=1) but ${reason}`);
    console.warn(`[moto] ${reason}: the AWS Secrets Manager tests will be skipped`);
    project.provide('motoEndpoint', '');
    project.provide('motoUnavailable', reason);
    return async () => {};
  };

  const external = process.env.MOTO_ENDPOINT;
  if (external) {
    const url = external.replace(/\/+$/, '');
    if (!(await answers(url))) return unavailable(`MOTO_ENDPOINT ${url} does not answer`);
    project.provide('motoEndpoint', url);
    project.provide('motoUnavailable', '');
    return async () => {};
  }

  let server = findMoto();
  if (!server) {
    try {
      execFileSync('bash', [join(root, 'scripts', 'setup-moto.sh')], {
        stdio: ['ignore', 'inherit', 'inherit'],
      });
    } catch {
      return unavailable('scripts/setup-moto.sh failed');
    }
    server = findMoto();
  }
  if (!server) return unavailable('moto_server is not installed (python3 missing?)');

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(server, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  // moto logs every request on stderr: drain it (a full pipe would stall the server), keep the tail for errors.
  let log = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4_000);
  });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  try {
    await spawned;
    await waitUntilUp(url, child);
  } catch (err) {
    child.kill('SIGKILL');
    return unavailable(`${(err as Error).message}\n${log}`);
  }
  project.provide('motoEndpoint', url);
  project.provide('motoUnavailable', '');

  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    await exited;
    clearTimeout(timer);
  };
}
