/**
 * A closed resolver, provider or agent leaves no timer, socket or watcher behind, on every supported Node
 * line (on 22+ an `AbortSignal.timeout()` timer lives until it fires, where 20 collected it with its signal).
 * test/closed-timers.ts runs in a child process, so only its own handles are counted, and against the suite's
 * real OpenBao and moto when they are there.
 */
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, inject, it } from 'vitest';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

interface ClosedReport {
  leaked: { type: string; stack: string }[];
  skipped: string[];
  answers: string[];
}

it('after close() nothing is left: resolvers, file/Vault/AWS providers, connect, agent, dispatcher, HTTP/2', async () => {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.VAULT_ADDR;
  delete env.VAULT_TOKEN;
  delete env.MOTO_ENDPOINT;
  if (inject('vaultAddr'))
    Object.assign(env, { VAULT_ADDR: inject('vaultAddr'), VAULT_TOKEN: inject('vaultToken') });
  if (inject('motoEndpoint')) env.MOTO_ENDPOINT = inject('motoEndpoint');
  const { stdout, stderr } = await run(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', 'test/closed-timers.ts'],
    {
      cwd: root,
      env,
      timeout: 60_000,
    },
  );
  const line = stdout.split('\n').find((l) => l.startsWith('CLOSED '));
  expect(line, `no report\n${stdout}\n${stderr}`).toBeDefined();
  const report = JSON.parse(line?.slice(7) ?? '{}') as ClosedReport;
  if (report.skipped.length > 0) console.warn(`[closed-timers] parts SKIPPED: ${report.skipped.join('; ')}`);
  expect(report.answers).toEqual(['ok', 'ok', 'ok']);
  expect(report.leaked).toEqual([]);
}, 90_000);
