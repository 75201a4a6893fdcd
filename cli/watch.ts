/**
 * `tls-secrets watch <config>`: keep the resolver running and print rotations, recoveries, errors and expiry
 * warnings as they happen, until SIGINT or SIGTERM.
 */

import { DEFAULTS } from '../src/resolver/spec.js';
import type {
  CertificateInfo,
  ExpiringEvent,
  RecoveredEvent,
  ResolvedOptions,
  RotateEvent,
  StaleEvent,
} from '../src/types.js';
import { load } from './load.js';
import type { Flags } from './parse.js';
import {
  buildRows,
  certificateJson,
  describeCert,
  err,
  out,
  outJson,
  problemOf,
  shorten,
  table,
} from './render.js';

export async function watch(configPath: string, flags: Flags): Promise<number> {
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
  // A failed load reaches both the 'error' listener and resolve()'s rejection: it is printed once.
  const printed = new WeakSet<object>();
  const onError = (error: unknown) => {
    if (typeof error === 'object' && error !== null) {
      if (printed.has(error)) return;
      printed.add(error);
    }
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
  resolver.on('recovered', (event: RecoveredEvent) =>
    emit(
      'recovered',
      { generation: event.generation, since: event.since.toISOString() },
      `recovered: serving generation ${event.generation}${ready ? ' again' : ' (first load)'} (trouble since ${event.since.toISOString()})`,
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

  let stopping = false;
  let wake: (() => void) | undefined;
  let stop: (reason: string) => void = () => {};
  const stopped = new Promise<void>((resolve) => {
    stop = (reason) => {
      if (stopping) return;
      stopping = true;
      err(`tls-secrets: ${reason}, stopping`);
      wake?.();
      resolve();
    };
  });
  // Handlers stay until the end (not once): a second SIGINT (Ctrl-C twice, or a supervisor that repeats
  // the signal) with no handler would kill the process in the middle of closing.
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // Under `npx`/`npm exec` the bin runs in `sh -c`, and npm forwards a signal it receives to that shell
  // only: on SIGTERM (docker stop, Kubernetes) the shell dies and this process would live on, orphaned.
  // The parent changing is that case: stop as if signalled.
  const parent = process.ppid;
  const underNpm = process.env.npm_command === 'exec';
  // The resolver's timers and watchers never hold the process open: this does, until a signal.
  const keepAlive = setInterval(() => {
    if (underNpm && process.ppid !== parent) stop('npm exec (npx) ended');
  }, 1_000);

  // A cold load that fails is retried here: the resolver schedules refreshes only once it has a bundle.
  let resolved: ResolvedOptions | undefined;
  // It keeps the config's backoff (retryInitialDelayMs doubling up to retryMaxDelayMs).
  const { retryInitialDelayMs, retryMaxDelayMs } = { ...DEFAULTS, ...configured.options };
  for (let delay = retryInitialDelayMs; !stopping; delay = Math.min(delay * 2, retryMaxDelayMs)) {
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
  const reportReady = (first: ResolvedOptions) => {
    ready = true;
    const rows = buildRows(resolver, certificates, first);
    if (flags.json) {
      emit('ready', { generation: resolver.generation, fields: rows }, '');
    } else {
      out(table(rows));
      out(
        `${new Date().toISOString()} ready generation ${resolver.generation}: watching ${configPath} (Ctrl-C to stop)`,
      );
    }
  };
  if (resolved) reportReady(resolved);
  // This frame lives until the end: holding the first bundle here kept its key past every rotation.
  resolved = undefined;
  await stopped;
  clearInterval(keepAlive);
  try {
    await configured.close();
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}
