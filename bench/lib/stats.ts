/** Small statistics and table helpers shared by the bench sections. */

/** The middle value; the mean of the two middle values for an even count. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 ? upper : ((sorted[middle - 1] ?? upper) + upper) / 2;
}

/**
 * Median of per-round ratios: A and B of one round ran back to back, so load that drifts between rounds
 * (other processes on the machine) cancels out of each pair.
 */
export function pairedRatio(numerators: readonly number[], denominators: readonly number[]): number {
  return median(numerators.map((value, index) => ratio(value, denominators[index] ?? Number.NaN)));
}

/** Nearest-rank percentile; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A number for a table cell: thousands grouped, a few significant digits. */
export function fmt(value: number | undefined, digits = 1): string {
  if (value === undefined || Number.isNaN(value)) return '-';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  const decimals = abs >= 1000 ? 0 : abs >= 100 ? Math.min(digits, 1) : abs >= 1 ? digits : digits + 1;
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function ratio(numerator: number, denominator: number): number {
  return denominator > 0 ? numerator / denominator : Number.NaN;
}

const NUMERIC = /^[-+\d.,%! x]*$/;

/** A plain-text table: columns of figures right-aligned, text left-aligned. */
export function table(
  title: string,
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const right = headers.map(
    (_, column) => column > 0 && rows.every((row) => NUMERIC.test(row[column] ?? '')),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) =>
        right[column] ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0),
      )
      .join('  ')
      .trimEnd();
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [`\n${title}`, line(headers), rule, ...rows.map(line)].join('\n');
}
