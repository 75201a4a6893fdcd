/** Heap measurement helpers: a callable `gc` without restarting Node, and bytes allocated by a function. */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/**
 * `global.gc` without `--expose-gc` on the command line (the bench runs as plain `tsx bench/run.ts`): the flag
 * set at run time takes effect for contexts created afterwards.
 */
export function gc(): void {
  if (!collect) {
    v8.setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}

export const heapUsed = () => v8.getHeapStatistics().used_heap_size;

/**
 * Bytes allocated while `run` executes: the growth of the used heap plus what every GC in between freed
 * (from v8's GCProfiler), so collections during the run do not hide allocations.
 */
export async function allocatedBytes(run: () => Promise<void>): Promise<number> {
  gc();
  const profiler = new v8.GCProfiler();
  const before = heapUsed();
  profiler.start();
  await run();
  const after = heapUsed();
  const stats = profiler.stop() as {
    statistics: {
      beforeGC: { heapStatistics: { usedHeapSize: number } };
      afterGC: { heapStatistics: { usedHeapSize: number } };
    }[];
  };
  const freed = stats.statistics.reduce(
    (sum, gcRun) =>
      sum + gcRun.beforeGC.heapStatistics.usedHeapSize - gcRun.afterGC.heapStatistics.usedHeapSize,
    0,
  );
  return after - before + freed;
}

/** Heap retained by what `build` returns, measured after full collections on both sides. */
export async function retainedBytes<T>(
  build: () => Promise<T>,
): Promise<{ value: T; bytes: number; rss: number }> {
  gc();
  gc();
  const before = heapUsed();
  const rssBefore = process.memoryUsage().rss;
  const value = await build();
  gc();
  gc();
  return { value, bytes: heapUsed() - before, rss: process.memoryUsage().rss - rssBefore };
}
