/** The command line: commands, flags and their checks. Pure: nothing here reads a file or prints. */
import { parseArgs } from 'node:util';

export const DOCS_URL = 'https://github.com/tls-secrets/tls-secrets/blob/main/docs/cli.md';

export const USAGE = `Usage: tls-secrets <command> <config> [options]

Commands:
  check <config>    resolve and validate every source once, print a table, exit 1 on any problem
  watch <config>    keep running: print rotations, recoveries, errors and expiry warnings as they happen

Options:
  --json              machine-readable output (check: one JSON document; watch: one JSON object per line)
  --min-days <n>      check: also fail when a certificate expires in fewer than n days
  --interval <ms>     override the config's refreshIntervalMs
  --adapter <module>  load a module that registers a provider adapter (repeatable), for third-party types
  -v, --version       print the version
  -h, --help          show this help

Config: JSON, or YAML with the "yaml" package installed. See ${DOCS_URL}
Exit codes: 0 fine, 1 a problem with the material or a store, 2 usage or configuration.
`;

export class UsageError extends Error {}

export interface Flags {
  json: boolean;
  minDays: number | undefined;
  interval: number | undefined;
  adapters: readonly string[];
}

export type Command =
  | { command: 'check' | 'watch'; config: string; flags: Flags }
  | { command: 'help' }
  | { command: 'version' };

/** Throws a UsageError for anything the usage does not allow. */
export function parse(argv: readonly string[]): Command {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (error) {
    // parseArgs names the flag; its message never holds more than the argument itself.
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  if (values.version) return { command: 'version' };
  const [command, config, ...extra] = positionals;
  if (command !== 'check' && command !== 'watch') {
    throw new UsageError(command ? `unknown command "${command}"` : 'missing command');
  }
  if (!config) throw new UsageError(`${command} needs a config file`);
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  const number = (name: string, value: string | undefined, min: number) => {
    if (value === undefined) return undefined;
    const parsedNumber = Number(value);
    if (!Number.isFinite(parsedNumber) || parsedNumber < min) {
      throw new UsageError(`--${name} must be a number >= ${min}`);
    }
    return parsedNumber;
  };
  const minDays = number('min-days', values['min-days'], 0);
  if (minDays !== undefined && command !== 'check') throw new UsageError('--min-days applies to check');
  return {
    command,
    config,
    flags: {
      json: values.json,
      minDays,
      interval: number('interval', values.interval, 1),
      adapters: values.adapter ?? [],
    },
  };
}

function parseFlags(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      'min-days': { type: 'string' },
      interval: { type: 'string' },
      adapter: { type: 'string', multiple: true },
      version: { type: 'boolean', short: 'v', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
}
