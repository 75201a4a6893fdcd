/**
 * PEM read by OpenSSL's own rules, strictly. OpenSSL (`PEM_read_bio`) looks for a line that STARTS with
 * `-----BEGIN ` and ends with `-----` (trailing bytes up to space stripped), and silently skips every line
 * that does not: an indented BEGIN, or one after a no-break space or a byte-order mark, is not a block to
 * OpenSSL, and the certificate in it is dropped from a chain without an error. A lenient splitter that finds
 * such a block anyway validates what OpenSSL never sees. So the rules here are OpenSSL's, and whatever
 * OpenSSL would skip (other than blank lines) is refused instead. The gate then hands OpenSSL the blocks it
 * validated, in canonical form, never the original text.
 */

export interface PemBlock {
  readonly label: string;
  /** The block in canonical form: BEGIN line, body lines without trailing whitespace, END line. */
  readonly text: string;
}

/** Why a text is not clean PEM: a reason naming a line, never its content (it may be key material). */
export class PemSyntaxError extends Error {}

/** Lines OpenSSL skips that are harmless to skip: nothing but ASCII whitespace. */
const BLANK = /^[\t\n\v\f\r ]*$/;
const BEGIN = /^-----BEGIN ([\x21-\x2c\x2e-\x7e][\x20-\x7e]*?)-----$/;

/** OpenSSL strips trailing bytes <= 0x20 from each line (PEM_FLAG_EAY_COMPATIBLE). */
function trimEnd(line: string): string {
  let end = line.length;
  while (end > 0 && line.charCodeAt(end - 1) <= 0x20) end--;
  return line.slice(0, end);
}
const BOM = '\u00ef\u00bb\u00bf';

/** Bytes as a latin1 string: one character per byte, as OpenSSL reads them. */
export function pemBytes(value: string | Buffer): string {
  return (typeof value === 'string' ? Buffer.from(value, 'utf8') : value).toString('latin1');
}

export function looksLikePem(value: string | Buffer): boolean {
  const head = typeof value === 'string' ? value : value.subarray(0, 4096).toString('latin1');
  return head.includes('-----BEGIN ');
}

/**
 * Splits PEM text (a latin1 byte string, see `pemBytes`) into blocks. Throws PemSyntaxError when a line
 * outside the blocks is anything but whitespace (text OpenSSL would skip, an indented or prefixed BEGIN),
 * when a BEGIN has no matching END, or when no block is found.
 */
export function parsePem(bytes: string): PemBlock[] {
  const lines = bytes.split('\n');
  const blocks: PemBlock[] = [];
  let open: { label: string; line: number; body: string[] } | undefined;
  for (const [index, raw] of lines.entries()) {
    // OpenSSL drops a UTF-8 byte-order mark on the first line it reads, nowhere else.
    const line = trimEnd(index === 0 && raw.startsWith(BOM) ? raw.slice(BOM.length) : raw);
    const number = index + 1;
    if (open) {
      if (line === `-----END ${open.label}-----`) {
        blocks.push({
          label: open.label,
          text: `-----BEGIN ${open.label}-----\n${open.body.map((l) => `${l}\n`).join('')}${line}`,
        });
        open = undefined;
      } else if (line.includes('-----')) {
        throw new PemSyntaxError(
          `line ${number}: a PEM boundary that is not the END of the "${open.label}" block opened at line ${open.line}`,
        );
      } else {
        open.body.push(line);
      }
      continue;
    }
    const begin = BEGIN.exec(line);
    if (begin) {
      open = { label: begin[1] ?? '', line: number, body: [] };
      continue;
    }
    if (BLANK.test(raw)) continue;
    throw new PemSyntaxError(
      line.includes('-----BEGIN ')
        ? `line ${number}: a BEGIN line that does not start the line (OpenSSL skips it and the block in it)`
        : `line ${number}: text outside PEM blocks (OpenSSL skips it silently)`,
    );
  }
  if (open) throw new PemSyntaxError(`line ${open.line}: "${open.label}" block has no END line`);
  if (blocks.length === 0) throw new PemSyntaxError('no PEM block');
  return blocks;
}

/** `parsePem`, or undefined instead of throwing. */
export function splitPem(text: string): PemBlock[] | undefined {
  try {
    return parsePem(text);
  } catch (err) {
    if (err instanceof PemSyntaxError) return undefined;
    throw err;
  }
}
