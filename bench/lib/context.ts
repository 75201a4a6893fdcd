/** What every section receives and returns. */
import type { Material } from './material.js';
import type { ServerProcess } from './server-process.js';

export interface Target {
  readonly section: string;
  readonly name: string;
  readonly value: number;
  readonly comparison: '>=' | '<=' | '==';
  readonly threshold: number;
  readonly met: boolean;
  readonly note?: string;
}

export interface BenchContext {
  readonly smoke: boolean;
  /** Length of one measured window (one variant in one round). */
  readonly windowMs: number;
  readonly rounds: number;
  readonly material: Material;
  /** The forked TLS servers, named `ec` and `rsa`. */
  readonly servers: ServerProcess;
  /** Every command-line flag, for sections with settings of their own (`--fleet-*`). */
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  log(text: string): void;
}

export interface SectionResult {
  readonly title: string;
  /** Printed tables, already formatted. */
  readonly tables: readonly string[];
  readonly targets: readonly Target[];
  /** Raw figures for results.json. */
  readonly data: unknown;
}

export function target(
  section: string,
  name: string,
  value: number,
  comparison: Target['comparison'],
  threshold: number,
  note?: string,
): Target {
  const met =
    Number.isFinite(value) &&
    (comparison === '>='
      ? value >= threshold
      : comparison === '<='
        ? value <= threshold
        : value === threshold);
  return { section, name, value, comparison, threshold, met, ...(note ? { note } : {}) };
}
