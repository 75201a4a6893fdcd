/**
 * Field paths: where a value sits in the ConnectionOptions (`cert`, `key[1].passphrase`, `pfx[0].buf`), and,
 * for a field holding several PEM blocks, which block (`ca#2`). Built and taken apart only here, so that the
 * `#<n>` suffix means one thing everywhere (validation errors, status(), the plan's deadlines).
 */

/** The path of block `index` of a field holding `count` blocks; a single block keeps the field's path. */
export function blockPath(field: string, index: number, count: number): string {
  return count > 1 ? `${field}#${index}` : field;
}

/** The field a path names, without its block suffix: `ca#2` → `ca`. */
export function fieldOf(path: string): string {
  const hash = path.lastIndexOf('#');
  return hash !== -1 && /^\d+$/.test(path.slice(hash + 1)) ? path.slice(0, hash) : path;
}
