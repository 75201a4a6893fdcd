/** `tls-secrets check <config>`: resolve every source once, validate, print what is served, exit 1 on a problem. */
import type { CertificateInfo, ResolvedOptions } from '../src/types.js';
import { load } from './load.js';
import type { Flags } from './parse.js';
import { buildRows, err, out, outJson, type Problem, problemOf, shorten, table } from './render.js';

export async function check(configPath: string, flags: Flags): Promise<number> {
  const configured = await load(configPath, flags);
  const { resolver } = configured;
  let certificates: readonly CertificateInfo[] = [];
  resolver.on('rotate', (event) => {
    certificates = event.certificates;
  });
  let resolved: ResolvedOptions | undefined;
  let thrown: unknown;
  try {
    resolved = await resolver.resolve();
  } catch (error) {
    thrown = error;
  }
  const rows = buildRows(resolver, certificates, resolved);
  const problems: Problem[] = [];
  for (const field of resolver.status().fields) {
    if (!field.lastError) continue;
    // Fields read by one store call (key and cert of one secret) share its error: one problem, every field.
    const shared = problems.find((known) => known.message === field.lastError?.message);
    if (shared) {
      shared.fields = [...(shared.fields ?? [shared.field ?? '']), field.field];
      continue;
    }
    problems.push({
      code: field.lastError.code,
      field: field.field,
      ref: field.source,
      message: field.lastError.message,
    });
  }
  if (thrown !== undefined) {
    const problem = problemOf(thrown);
    if (!problems.some((known) => known.message === problem.message)) problems.unshift(problem);
  }
  if (flags.minDays !== undefined) {
    for (const row of rows) {
      if (row.daysLeft !== undefined && row.daysLeft < flags.minDays) {
        problems.push({
          code: 'EXPIRES_SOON',
          field: row.field,
          ref: row.source,
          message: `certificate ${row.subject} expires in ${row.daysLeft} days (${row.notAfter}), under --min-days ${flags.minDays} (field ${row.field}, ref ${row.source})`,
        });
      }
    }
  }
  await configured.close();

  const ok = problems.length === 0;
  if (flags.json) {
    const status = resolver.status();
    outJson(
      {
        ok,
        config: configured.path,
        generation: status.generation,
        notAfter: status.notAfter?.toISOString(),
        fields: rows,
        problems,
      },
      { space: 2, nulls: true },
    );
  } else {
    out(table(rows));
    if (ok) {
      const soonest = rows.reduce<number | undefined>(
        (min, row) => (row.daysLeft === undefined ? min : Math.min(min ?? row.daysLeft, row.daysLeft)),
        undefined,
      );
      out(
        `\nOK: ${configPath} resolves and validates${soonest === undefined ? '' : `; the first certificate expires in ${soonest} days`}`,
      );
    } else {
      for (const problem of problems) {
        const also = problem.fields ? ` [fields ${problem.fields.join(', ')}: one store call]` : '';
        err(`✗ ${problem.code}: ${shorten(problem.message)}${also}`);
      }
      err(`\nFAILED: ${problems.length} problem${problems.length > 1 ? 's' : ''} in ${configPath}`);
    }
  }
  return ok ? 0 : 1;
}
