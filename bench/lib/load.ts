/** Client-side load: connections opened in a loop by N workers for a time window, counted and timed. */
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';

/** Opens one connection and resolves on 'secureConnect'. */
export type Opener = () => Promise<TLSSocket>;

export interface WindowResult {
  readonly completed: number;
  readonly failed: number;
  readonly elapsedMs: number;
  /** Client CPU (user + system) over the window. */
  readonly cpuMs: number;
  /** Connections that resumed a TLS session. */
  readonly resumed: number;
  /** Server certificate serial numbers seen, with counts. */
  readonly serials: ReadonlyMap<string, number>;
  readonly errorCodes: ReadonlyMap<string, number>;
}

/** `tls.connect` resolving on 'secureConnect', rejecting on an error before it. */
export function rawOpener(options: ConnectionOptions): Opener {
  return () =>
    new Promise((resolve, reject) => {
      const socket = tlsConnect(options);
      const onError = (error: Error) => {
        socket.destroy();
        reject(error);
      };
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        socket.off('error', onError);
        resolve(socket);
      });
    });
}

/**
 * Reads the server's line until it ends the connection. A connection that is rejected after the handshake
 * (a TLS 1.3 client learns of a refused certificate only then) ends without the line and counts as failed.
 */
export function finish(socket: TLSSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      data += chunk;
    });
    socket.once('error', (error) => {
      socket.destroy();
      reject(error);
    });
    socket.once('end', () => {
      socket.destroy();
      if (data === 'ok\n') resolve();
      else reject(Object.assign(new Error('connection ended without the server line'), { code: 'NO_DATA' }));
    });
  });
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string'
    ? code
    : error instanceof Error
      ? error.message.slice(0, 60)
      : String(error);
}

export interface WindowOptions {
  readonly concurrency: number;
  readonly windowMs: number;
  /** Record the server certificate's serial of every connection. */
  readonly serials?: boolean;
}

/** `concurrency` workers open connections back to back until `windowMs` has passed. */
export async function runWindow(open: Opener, options: WindowOptions): Promise<WindowResult> {
  const serials = new Map<string, number>();
  const errorCodes = new Map<string, number>();
  let completed = 0;
  let failed = 0;
  let resumed = 0;
  const cpuBefore = process.cpuUsage();
  const start = performance.now();
  const deadline = start + options.windowMs;
  const worker = async () => {
    while (performance.now() < deadline) {
      try {
        const socket = await open();
        if (socket.isSessionReused()) resumed += 1;
        if (options.serials) {
          const serial = socket.getPeerCertificate().serialNumber;
          serials.set(serial, (serials.get(serial) ?? 0) + 1);
        }
        await finish(socket);
        completed += 1;
      } catch (error) {
        failed += 1;
        const code = errorCode(error);
        errorCodes.set(code, (errorCodes.get(code) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const elapsedMs = performance.now() - start;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    completed,
    failed,
    elapsedMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    resumed,
    serials,
    errorCodes,
  };
}

export const perSecond = (result: WindowResult) => (result.completed * 1000) / result.elapsedMs;
