/**
 * The short soak in `npm test`: test/soak.ts for 5 seconds in a child process (concurrency 32, rotations
 * every 50 ms). It must report 0 failed handshakes, heap within 10 %, no leaked timers or sockets, and then
 * exit by itself with code 0. The 60-second run is `npm run soak`.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SECONDS = 5;
/** Start-up, CA and warm-up, the run, close: anything past this means the process did not end by itself. */
const EXIT_DEADLINE_MS = 30_000;

interface SoakReport {
  handshakesOk: number;
  handshakesFailed: number;
  rotations: number;
  heapGrowthPercent: number;
  leakedHandles: string[];
}

it(
  `soak: ${SECONDS} s at concurrency 32 with rotations every 50 ms, then a clean exit`,
  async () => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--import', 'tsx', 'test/soak.ts', '--seconds', String(SECONDS)],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, EXIT_DEADLINE_MS);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    clearTimeout(timer);

    expect(killed, `soak did not exit by itself within ${EXIT_DEADLINE_MS} ms\n${stdout}\n${stderr}`).toBe(
      false,
    );
    const line = stdout.split('\n').find((l) => l.startsWith('SOAK '));
    expect(line, `no report\n${stdout}\n${stderr}`).toBeDefined();
    const report = JSON.parse(line?.slice(5) ?? '{}') as SoakReport;
    console.info(`[soak] ${line}`);
    expect(report.handshakesFailed).toBe(0);
    expect(report.handshakesOk).toBeGreaterThan(200);
    expect(report.rotations).toBeGreaterThanOrEqual(SECONDS * 10);
    expect(report.heapGrowthPercent).toBeLessThanOrEqual(10);
    expect(report.leakedHandles).toEqual([]);
    expect(code, stderr).toBe(0);
  },
  EXIT_DEADLINE_MS + 5_000,
);
