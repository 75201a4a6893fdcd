#!/usr/bin/env node
/**
 * The `tls-secrets` bin: the only module of the CLI that runs anything when imported.
 * Exit codes: 0 fine, 1 a problem with the material or a store, 2 usage or configuration.
 */
import { readFileSync } from 'node:fs';
import { check } from './check.js';
import { parse, USAGE, UsageError } from './parse.js';
import { err, out, outJson, problemOf, unexpected } from './render.js';
import { watch } from './watch.js';

/**
 * The package's version, from the package.json one directory up: from dist/cli.js (and dist's chunks) as
 * from cli/main.ts run through tsx.
 */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    err(`tls-secrets: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.command === 'help') {
    out(USAGE);
    return 0;
  }
  if (parsed.command === 'version') {
    out(version());
    return 0;
  }
  try {
    return await (parsed.command === 'check' ? check : watch)(parsed.config, parsed.flags);
  } catch (error) {
    // Only loading the config throws here: resolve failures are reported by check and watch themselves.
    const problem = problemOf(error);
    if (parsed.flags.json) outJson({ ok: false, problems: [problem] }, { space: 2 });
    err(`tls-secrets: ${problem.message}`);
    return problem.code === 'CONFIGURATION' ? 2 : 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Where it happened (the stack frames), not what it said.
    const frames =
      error instanceof Error ? (error.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line)) : [];
    err([`tls-secrets: ${unexpected(error)}`, ...frames].join('\n'));
    process.exitCode = 1;
  },
);
