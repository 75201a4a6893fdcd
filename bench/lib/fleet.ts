/**
 * Parent side of the fleet bench: forks `processes` copies of bench/fleet-worker.ts, waits until each has
 * loaded, then gives every instance of the fleet a start time within one `spreadMs` window (instance g of
 * N starts at g * spreadMs / N, interleaved across processes), and collects the first bundles. Optionally
 * rotates a secret in the store afterwards and times how fast the fleet follows. The store's calls are
 * counted by the quota proxy the instances talk to.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FleetPlan, FromWorker, ToWorker } from '../fleet-worker.js';
import type { ApiCounts, QuotaProxy } from './quota-proxy.js';
import { percentile } from './stats.js';

const WORKER = fileURLToPath(new URL('../fleet-worker.ts', import.meta.url));
const LOAD_TIMEOUT_MS = 60_000;

export interface FleetRun {
  readonly processes: number;
  readonly instancesPerProcess: number;
  readonly spreadMs: number;
  /** How long after the last planned start instances still have to get their first bundle. */
  readonly coldTimeoutMs: number;
  readonly plan: Omit<FleetPlan, 'startAt'>;
  readonly proxy: QuotaProxy;
  /** Calls per second allowed per API, for the peaks to be compared with. */
  readonly quotas: Readonly<Record<string, number>>;
  /** Writes a new version of the client secret; undefined skips the rotation phase. */
  readonly rotate?: () => Promise<void>;
  readonly rotateTimeoutMs: number;
}

export interface ApiSummary {
  readonly api: string;
  readonly calls: number;
  readonly throttled: number;
  /** Store answers by status code (a server-side quota shows here: Vault's 429). */
  readonly statuses: Record<string, number>;
  readonly peakPerSecond: number;
  readonly quota: number | undefined;
  /** Seconds in which more calls arrived than the quota allows. */
  readonly secondsAboveQuota: number;
  /** Calls that arrived in each second of the phase (throttled ones included). */
  readonly perSecond: readonly number[];
  /** Of those, the calls the quota refused in each second. */
  readonly throttledPerSecond: readonly number[];
  /** The store's answer time (calls that went through), p99 in ms: how loaded the store was. */
  readonly answerP99Ms: number | undefined;
}

export interface FleetResult {
  readonly instances: number;
  readonly ready: number;
  /** Time from each instance's start to its first bundle, ms (ready instances only). */
  readonly firstBundleMs: { p50: number; p99: number; max: number };
  /** resolve() refusals before the first bundle, by error code, summed over the fleet. */
  readonly refusals: Record<string, number>;
  /** Planned start times of the first and last instance, ms apart. */
  readonly startSpreadMs: number;
  readonly cold: readonly ApiSummary[];
  readonly rotation?: {
    readonly instances: number;
    readonly converged: number;
    /** From the write in the store to 99 % / all of the ready instances serving it, ms. */
    readonly p99Ms: number;
    readonly maxMs: number;
    readonly calls: readonly ApiSummary[];
  };
}

export function summarize(
  counts: ReadonlyMap<string, ApiCounts>,
  quotas: Readonly<Record<string, number>>,
  /** Quotas that apply to every API together (OpenBao's is one rate for all paths). */
  totalQuota?: number,
): ApiSummary[] {
  const rows: ApiSummary[] = [...counts].map(([api, entry]) => {
    const quota = quotas[api];
    return {
      api,
      calls: entry.attempted,
      throttled: entry.throttled,
      statuses: { ...entry.statuses },
      peakPerSecond: Math.max(0, ...entry.perSecond),
      quota,
      secondsAboveQuota: quota === undefined ? 0 : entry.perSecond.filter((n) => n > quota).length,
      perSecond: Array.from(entry.perSecond, (n) => n ?? 0),
      throttledPerSecond: Array.from(entry.perSecond, (n, i) => (n ?? 0) - (entry.admittedPerSecond[i] ?? 0)),
      answerP99Ms: entry.answerMs.length ? Math.round(percentile(entry.answerMs, 99)) : undefined,
    };
  });
  if (totalQuota !== undefined) {
    const seconds: number[] = [];
    const refused: number[] = [];
    for (const row of rows) {
      row.perSecond.forEach((n, i) => {
        seconds[i] = (seconds[i] ?? 0) + n;
        refused[i] = (refused[i] ?? 0) + (row.throttledPerSecond[i] ?? 0);
      });
    }
    const filled = Array.from(seconds, (n) => n ?? 0);
    rows.push({
      api: 'all',
      calls: rows.reduce((sum, row) => sum + row.calls, 0),
      throttled: rows.reduce((sum, row) => sum + row.throttled, 0),
      statuses: rows.reduce<Record<string, number>>((all, row) => {
        for (const [status, n] of Object.entries(row.statuses)) all[status] = (all[status] ?? 0) + n;
        return all;
      }, {}),
      peakPerSecond: Math.max(0, ...filled),
      quota: totalQuota,
      secondsAboveQuota: filled.filter((n) => n > totalQuota).length,
      perSecond: filled,
      throttledPerSecond: Array.from(refused, (n) => n ?? 0),
      answerP99Ms: undefined,
    });
  }
  return rows.sort((a, b) => a.api.localeCompare(b.api));
}

function copyCounts(counts: ReadonlyMap<string, ApiCounts>): Map<string, ApiCounts> {
  return new Map(
    [...counts].map(([api, c]) => [
      api,
      {
        ...c,
        statuses: { ...c.statuses },
        perSecond: [...c.perSecond],
        admittedPerSecond: [...c.admittedPerSecond],
        answerMs: [...c.answerMs],
      },
    ]),
  );
}

interface Worker {
  readonly child: ChildProcess;
  readonly index: number;
}

export async function runFleet(run: FleetRun, totalQuota?: number): Promise<FleetResult> {
  const { processes, instancesPerProcess } = run;
  const total = processes * instancesPerProcess;
  const ready = new Map<string, { startedAt: number; readyAt: number }>();
  const refusals: Record<string, number> = {};
  const rotated = new Map<string, number>();
  let rotatedAfter = Number.POSITIVE_INFINITY;
  const listeners = new Set<() => void>();
  const changed = () => {
    for (const listener of listeners) listener();
  };
  const workers: Worker[] = [];
  const loaded: Promise<void>[] = [];
  const stopped: Promise<void>[] = [];
  for (let index = 0; index < processes; index++) {
    const child = fork(WORKER, [], {
      execArgv: ['--import', import.meta.resolve('tsx')],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    workers.push({ child, index });
    stopped.push(new Promise((resolve) => child.once('exit', () => resolve())));
    loaded.push(
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('a fleet process did not load')), LOAD_TIMEOUT_MS);
        child.once('exit', (code) => reject(new Error(`a fleet process exited with code ${code}`)));
        child.on('message', (message: FromWorker) => {
          const key = `${index}/${'instance' in message ? message.instance : ''}`;
          switch (message.type) {
            case 'loaded':
              clearTimeout(timer);
              resolve();
              return;
            case 'ready':
              if (!ready.has(key)) {
                ready.set(key, { startedAt: message.startedAt, readyAt: message.readyAt });
                for (const [code, n] of Object.entries(message.refusals)) {
                  refusals[code] = (refusals[code] ?? 0) + n;
                }
              }
              changed();
              return;
            case 'rotated':
              if (message.at >= rotatedAfter && message.changed.includes('cert') && !rotated.has(key)) {
                rotated.set(key, message.at);
                changed();
              }
              return;
            default:
              return;
          }
        });
      }),
    );
  }
  const until = (done: () => boolean, timeoutMs: number) =>
    new Promise<void>((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        listeners.delete(check);
        resolve();
      };
      const check = () => {
        if (done()) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      listeners.add(check);
      check();
    });

  try {
    await Promise.all(loaded);
    const base = Date.now() + 300;
    // Second 0 of the counts is the second the fleet starts in.
    run.proxy.reset(base);
    for (const { child, index } of workers) {
      const startAt = Array.from(
        { length: instancesPerProcess },
        (_, j) => base + ((j * processes + index) * run.spreadMs) / total,
      );
      child.send({ type: 'start', plan: { ...run.plan, startAt } } satisfies ToWorker);
    }
    const startSpreadMs = ((total - 1) * run.spreadMs) / total;
    await until(() => ready.size >= total, 300 + run.spreadMs + run.coldTimeoutMs);
    const cold = summarize(copyCounts(run.proxy.counts), run.quotas, totalQuota);
    const times = [...ready.values()].map((r) => r.readyAt - r.startedAt);
    // An instance without a bundle counts as the slowest possible in the percentiles.
    const padded = [
      ...times,
      ...Array.from({ length: total - times.length }, () => Number.POSITIVE_INFINITY),
    ];

    let rotation: FleetResult['rotation'];
    if (run.rotate && ready.size > 0) {
      const instances = ready.size;
      run.proxy.reset();
      const writtenAt = Date.now();
      rotatedAfter = writtenAt;
      await run.rotate();
      await until(() => rotated.size >= instances, run.rotateTimeoutMs);
      const delays = [...rotated.values()].map((at) => at - writtenAt);
      const all = [
        ...delays,
        ...Array.from({ length: instances - delays.length }, () => Number.POSITIVE_INFINITY),
      ];
      rotation = {
        instances,
        converged: delays.length,
        p99Ms: percentile(all, 99),
        maxMs: Math.max(...all),
        calls: summarize(copyCounts(run.proxy.counts), run.quotas, totalQuota),
      };
    }
    return {
      instances: total,
      ready: ready.size,
      firstBundleMs: {
        p50: percentile(padded, 50),
        p99: percentile(padded, 99),
        max: Math.max(...padded),
      },
      refusals,
      startSpreadMs,
      cold,
      ...(rotation ? { rotation } : {}),
    };
  } finally {
    for (const { child } of workers) {
      if (child.connected) child.send({ type: 'stop' } satisfies ToWorker);
    }
    const timer = setTimeout(() => {
      for (const { child } of workers) if (child.exitCode === null) child.kill('SIGKILL');
    }, 10_000);
    await Promise.all(stopped);
    clearTimeout(timer);
  }
}
