/** PEM parsing that refuses what OpenSSL would silently skip (garbage between blocks drops every CA after it). */

export interface PemBlock {
  readonly label: string;
  readonly text: string;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

export function looksLikePem(value: string | Buffer): boolean {
  const head = typeof value === 'string' ? value : value.subarray(0, 4096).toString('latin1');
  return head.includes('-----BEGIN ');
}

/**
 * Splits a PEM bundle into blocks. Returns `undefined` when anything but whitespace stands outside the
 * blocks, or when a BEGIN has no matching END.
 */
export function splitPem(text: string): PemBlock[] | undefined {
  const blocks: PemBlock[] = [];
  let rest = '';
  let last = 0;
  for (const match of text.matchAll(BLOCK)) {
    rest += text.slice(last, match.index);
    blocks.push({ label: match[1] ?? '', text: match[0] });
    last = (match.index ?? 0) + match[0].length;
  }
  rest += text.slice(last);
  if (rest.trim() !== '' || blocks.length === 0) return undefined;
  return blocks;
}
