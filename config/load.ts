/**
 * Reading a config file: JSON (syntax errors by line and column) or YAML through the optional `yaml`
 * package. Neither parser's text reaches a message: both quote the source, and the source holds secrets.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { ConfigurationError } from '../src/errors.js';
import { importOptional } from '../src/optional.js';
import { isObject } from './schema.js';
import type { TlsSecretsConfig } from './types.js';

/**
 * YAML through `parseDocument`, never `parse`: `parse` hands every warning to `process.emitWarning`, which
 * prints it on stderr with a code frame of the source line (`pass: !env …`, `secretId: !secret …`), and its
 * errors quote the line too. Here nothing is printed: problems are reported by line and kind, never by text.
 * A tag the library does not resolve (`!secret`, `!env`) is an error, not a warning: the value would silently
 * become the text after the tag. Other warnings are pushed to `warnings`.
 */
function parseYaml(yaml: typeof import('yaml'), text: string, path: string, warnings?: string[]): unknown {
  const where = (problem: { code: string; linePos?: readonly { line: number }[] }) => {
    const line = problem.linePos?.[0]?.line;
    return `${line ? ` line ${line}` : ''} (${problem.code})`;
  };
  let doc: ReturnType<typeof yaml.parseDocument>;
  try {
    // logLevel 'error': toJS() would otherwise warn through process.emitWarning, quoting keys.
    doc = yaml.parseDocument(text, { logLevel: 'error', prettyErrors: true });
  } catch {
    throw new ConfigurationError(`config ${path} is not valid YAML`);
  }
  const [error] = doc.errors;
  if (error) throw new ConfigurationError(`config ${path} is not valid YAML:${where(error)}`);
  for (const warning of doc.warnings) {
    if (warning.code === 'TAG_RESOLVE_FAILED') {
      throw new ConfigurationError(
        `config ${path}:${where(warning)} uses a YAML tag tls-secrets does not resolve; write a reference such as "<provider>:<id>"`,
      );
    }
    warnings?.push(`config ${path}:${where(warning)} YAML warning`);
  }
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw new ConfigurationError(`config ${path} is not valid YAML (its aliases cannot be resolved)`);
  }
}

export interface ConfigFileOptions {
  /** Receives what the YAML parser warned about, by line and kind (never the source text). */
  warnings?: string[];
}

/** Reads a config file: JSON, or YAML (`.yaml`/`.yml`) when the `yaml` package is installed. */
export async function loadConfigFile(
  path: string,
  options: ConfigFileOptions = {},
): Promise<TlsSecretsConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new ConfigurationError(
      `cannot read config ${path}${typeof code === 'string' ? ` (${code})` : ''}`,
      {
        cause: err,
      },
    );
  }
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  let parsed: unknown;
  if (yaml) {
    const yamlModule = await importOptional('yaml', `config ${path} (YAML)`, () => import('yaml'));
    parsed = parseYaml(yamlModule, text, path, options.warnings);
  } else {
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      // JSON.parse quotes the text it failed on: only the position is taken from its message.
      throw new ConfigurationError(`config ${path} is not valid JSON (${jsonErrorPlace(err, text)})`);
    }
  }
  if (!isObject(parsed)) throw new ConfigurationError(`config ${path} must hold an object`);
  return parsed as unknown as TlsSecretsConfig;
}

/** `line L, column C` of a JSON.parse failure, from the position in its message (the end when it has none). */
function jsonErrorPlace(err: unknown, text: string): string {
  const position = /\bposition (\d+)/.exec(err instanceof Error ? err.message : '');
  const offset = Math.min(position ? Number(position[1]) : text.length, text.length);
  const before = text.slice(0, offset).split('\n');
  const line = before.length;
  const column = (before[line - 1]?.length ?? 0) + 1;
  return position ? `line ${line}, column ${column}` : `unexpected end at line ${line}, column ${column}`;
}
