/** Parent side of bench/server.ts: forks it under tsx and talks to it over IPC. */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FromServer, ServerMaterial, ServerStats, ToServer } from '../server.js';

export interface ServerProcess {
  readonly ports: Readonly<Record<string, number>>;
  readonly pid: number | undefined;
  /** Swaps the named server's certificate every `intervalMs`; 0 stops. */
  rotate(name: string, intervalMs: number): void;
  stats(): Promise<ServerStats>;
  /** Errors the server reported (resolver errors, failed refreshes). */
  readonly errors: readonly string[];
  close(): Promise<void>;
}

const SERVER_SCRIPT = fileURLToPath(new URL('../server.ts', import.meta.url));
const START_TIMEOUT_MS = 30_000;

export async function startServerProcess(servers: readonly ServerMaterial[]): Promise<ServerProcess> {
  const child: ChildProcess = fork(SERVER_SCRIPT, [], {
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const errors: string[] = [];
  const waiters: ((message: FromServer) => boolean)[] = [];
  child.on('message', (message: FromServer) => {
    if (message.type === 'error') errors.push(message.message);
    const index = waiters.findIndex((waiter) => waiter(message));
    if (index >= 0) waiters.splice(index, 1);
  });
  const request = <T>(out: ToServer, pick: (message: FromServer) => T | undefined): Promise<T> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`bench server did not answer ${out.type}`)),
        START_TIMEOUT_MS,
      );
      const onExit = (code: number | null) => reject(new Error(`bench server exited with code ${code}`));
      child.once('exit', onExit);
      waiters.push((message) => {
        const value = pick(message);
        if (value === undefined) return false;
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve(value);
        return true;
      });
      child.send(out);
    });

  const ports = await request({ type: 'setup', servers }, (m) => (m.type === 'ready' ? m.ports : undefined));
  return {
    ports,
    pid: child.pid,
    errors,
    rotate(name, intervalMs) {
      child.send({ type: 'rotate', name, intervalMs } satisfies ToServer);
    },
    stats: () => request({ type: 'stats' }, (m) => (m.type === 'stats' ? m.stats : undefined)),
    async close() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.send({ type: 'close' } satisfies ToServer);
      const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
