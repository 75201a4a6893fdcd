/**
 * Property-based tests (fast-check) for every parser and transform between a store's answer and Node's TLS
 * options: PEM splitting, `transformValue` (utf8 / base64 / binary, JSON field picking, size limit) and the
 * validation gate behind the resolver. Whatever the input: no crash, only typed errors, no echo of the input;
 * and the round trips hold where there is one.
 */
import { inspect } from 'node:util';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { memory } from '../providers/memory.js';
import { safeCause } from '../src/errors.js';
import {
  createResolver,
  InvalidMaterialError,
  type Provider,
  type RawSecret,
  type RefOptions,
  TlsSecretsError,
} from '../src/index.js';
import { looksLikePem, splitPem } from '../src/pem.js';
import { createRef } from '../src/provider-kit.js';
import { MAX_SECRET_BYTES, transformValue } from '../src/transform.js';
import { createTestCA, type Issued, type TestCA } from './fixtures/ca.js';

const provider: Provider = {
  name: 'prop',
  fetch: () => Promise.reject(new Error('not used')),
};
const refWith = (options: RefOptions) => createRef(provider, 'secret/id', options);

/** What the transform may do: return text or bytes, or throw the typed error naming ref and field. */
function transformOutcome(value: RawSecret, options: RefOptions): string | Buffer | InvalidMaterialError {
  try {
    const out = transformValue(refWith(options), value, 'cert');
    if (typeof out !== 'string' && !Buffer.isBuffer(out)) throw new Error('neither text nor bytes');
    return out;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidMaterialError);
    const error = err as InvalidMaterialError;
    expect(error.field).toBe('cert');
    expect(error.ref).toBe(`prop:secret/id${options.jsonKey ? `#${options.jsonKey}` : ''}`);
    return error;
  }
}

/** Every text a user could see of an error: message, stack, cause chain, inspect and JSON. */
function shownOf(error: unknown): string {
  const parts = [inspect(error, { depth: 8, showHidden: true }), JSON.stringify(error)];
  for (let current = error, i = 0; current instanceof Error && i < 8; current = current.cause, i++) {
    parts.push(current.message, String(current.stack));
  }
  return parts.join('\n');
}

const MARK = 'Zq7MARKER';
const encodings = fc.constantFrom(undefined, 'utf8' as const, 'base64' as const, 'binary' as const);
/** Keys that an object has by inheritance are the ones a naive picker would return. */
const jsonKeys = fc.oneof(
  fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !k.includes(MARK)),
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'key', 'cert'),
);
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc.base64String({ maxLength: 200 }),
  fc.json(),
);
const rawSecrets: fc.Arbitrary<RawSecret> = fc.oneof(
  anyText,
  fc.uint8Array({ maxLength: 300 }),
  anyText.map((text) => new TextEncoder().encode(text)),
  fc.dictionary(jsonKeys, fc.jsonValue(), { maxKeys: 5 }),
  fc.jsonValue() as fc.Arbitrary<RawSecret>,
);

describe('splitPem', () => {
  const label = fc.stringMatching(/^[A-Z0-9][A-Z0-9 ]{0,18}[A-Z0-9]$/);
  const body = fc
    .array(fc.base64String({ minLength: 4, maxLength: 64 }), { minLength: 1, maxLength: 6 })
    .map((lines) => lines.join('\n'));
  const block = fc.tuple(label, body).map(([l, b]) => ({
    label: l,
    text: `-----BEGIN ${l}-----\n${b}\n-----END ${l}-----`,
  }));
  const whitespace = fc.stringMatching(/^[ \t\r\n]{0,4}$/);

  it('never throws; only blank lines lie outside the blocks, and the canonical blocks split back to themselves', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary', maxLength: 400 }),
          fc
            .array(
              fc.oneof(
                block.map((b) => b.text),
                fc.string({ maxLength: 20 }),
              ),
            )
            .map((parts) => parts.join('')),
        ),
        (text) => {
          const blocks = splitPem(text);
          if (blocks === undefined) return;
          expect(blocks.length).toBeGreaterThan(0);
          for (const b of blocks) {
            expect(b.text.startsWith(`-----BEGIN ${b.label}-----\n`)).toBe(true);
            expect(b.text.endsWith(`\n-----END ${b.label}-----`)).toBe(true);
          }
          expect(splitPem(blocks.map((b) => b.text).join('\n'))).toEqual(blocks);
          // Every BEGIN line of the input starts its line: none hides behind other characters.
          for (const line of text.split('\n').slice(1)) {
            if (line.includes('-----BEGIN ')) expect(line.startsWith('-----BEGIN ')).toBe(true);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('round trip: blocks separated by blank lines split back into the same blocks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(whitespace, block), { minLength: 1, maxLength: 5 }),
        whitespace,
        (parts, tail) => {
          const text = parts.map(([ws, b]) => `${ws}\n${b.text}\n`).join('') + tail;
          expect(splitPem(text)).toEqual(parts.map(([, b]) => b));
        },
      ),
    );
  });

  it('a BEGIN line that does not start its line is refused (OpenSSL skips it, and the block with it)', () => {
    const prefix = fc.constantFrom(' ', '  ', '\t', '\u00a0', '\ufeff', 'x');
    fc.assert(
      fc.property(fc.array(block, { minLength: 2, maxLength: 4 }), prefix, fc.nat(), (blocks, before, at) => {
        const i = 1 + (at % (blocks.length - 1));
        const texts = blocks.map((b, index) => (index === i ? before + b.text : b.text));
        expect(splitPem(texts.join('\n'))).toBeUndefined();
        expect(splitPem(Buffer.from(texts.join('\n'), 'utf8').toString('latin1'))).toBeUndefined();
      }),
    );
  });

  it('anything but whitespace between blocks, or a BEGIN without its END, is refused', () => {
    const junk = fc.stringMatching(/^[a-z!#.*]{1,8}$/);
    fc.assert(
      fc.property(fc.array(block, { minLength: 1, maxLength: 4 }), junk, fc.nat(), (blocks, garbage, at) => {
        const i = at % (blocks.length + 1);
        const texts = blocks.map((b) => b.text);
        texts.splice(i, 0, garbage);
        expect(splitPem(texts.join('\n'))).toBeUndefined();
        const [first] = blocks;
        if (!first) return;
        expect(splitPem(`${first.text}\n-----BEGIN ${first.label}-----\nAAAA\n`)).toBeUndefined();
      }),
    );
  });

  it('looksLikePem never throws on text or bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.uint8Array().map((u) => Buffer.from(u)),
        ),
        (v) => {
          expect(typeof looksLikePem(v)).toBe('boolean');
        },
      ),
    );
  });
});

describe('transformValue', () => {
  it('whatever the store returns and whatever the options: text, bytes or an InvalidMaterialError', () => {
    fc.assert(
      fc.property(
        rawSecrets,
        encodings,
        fc.option(jsonKeys, { nil: undefined }),
        (raw, encoding, jsonKey) => {
          transformOutcome(raw, { ...(encoding ? { encoding } : {}), ...(jsonKey ? { jsonKey } : {}) });
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('an error never shows the value, in message, stack, causes, inspect or JSON', () => {
    const marked = fc
      .tuple(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 }))
      .map(([a, b]) => `${a}${MARK}${b}`);
    const values: fc.Arbitrary<RawSecret> = fc.oneof(
      marked,
      marked.map((m) => `{"broken": "${m}`),
      marked.map((m) => `-----BEGIN CERTIFICATE-----\n${m}\n-----END CERTIFICATE-----`),
      marked.map((m) => new Uint8Array([0xff, 0xfe, ...new TextEncoder().encode(m)])),
      marked.map((m) => JSON.stringify({ other: m })),
      marked.map((m) => ({ key: { nested: m } })),
      marked.map((m) => `${m}!!!`),
    );
    let errors = 0;
    fc.assert(
      fc.property(values, encodings, fc.option(jsonKeys, { nil: undefined }), (raw, encoding, jsonKey) => {
        const out = transformOutcome(raw, {
          ...(encoding ? { encoding } : {}),
          ...(jsonKey ? { jsonKey } : {}),
        });
        if (!(out instanceof InvalidMaterialError)) return;
        errors += 1;
        expect(shownOf(out)).not.toContain(MARK);
      }),
      { numRuns: 600 },
    );
    expect(errors).toBeGreaterThan(100);
  });

  it('utf8 round trip: text comes back unchanged, and UTF-8 bytes decode to it', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }), (text) => {
        expect(transformValue(refWith({}), text)).toBe(text);
        expect(transformValue(refWith({ encoding: 'utf8' }), new TextEncoder().encode(text))).toBe(text);
      }),
    );
  });

  it('binary round trip: bytes come back unchanged', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (bytes) => {
        expect(transformValue(refWith({ encoding: 'binary' }), bytes)).toEqual(Buffer.from(bytes));
      }),
    );
  });

  it('base64 round trip: standard, wrapped (LF or CRLF, trailing newline) and URL-safe forms decode to the bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.constantFrom('\n', '\r\n'),
        // Widths in whole quads, as base64(1) (76), openssl (64) and PEM write: padding split over two lines
        // (`AAAA=` / `=` at width 5) is refused, which no common tool produces.
        fc.integer({ min: 1, max: 19 }).map((quads) => quads * 4),
        (bytes, eol, width) => {
          const buf = Buffer.from(bytes);
          const standard = buf.toString('base64');
          const wrapped = `${(standard.match(new RegExp(`.{1,${width}}`, 'g')) ?? []).join(eol)}${eol}`;
          const ref = refWith({ encoding: 'base64' });
          for (const text of [standard, wrapped, buf.toString('base64url')]) {
            expect(transformValue(ref, text)).toEqual(buf);
            expect(transformValue(ref, new TextEncoder().encode(text))).toEqual(buf);
          }
        },
      ),
    );
  });

  it('base64 with a character outside the alphabet is refused, never decoded leniently', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 3, maxLength: 60 }),
        fc.constantFrom('!', '*', '.', ' ', '\t', '%', '~', '"', 'é'),
        fc.nat(),
        (bytes, bad, at) => {
          const text = Buffer.from(bytes).toString('base64');
          const i = 1 + (at % (text.length - 1));
          const broken = `${text.slice(0, i)}${bad}${text.slice(i)}`;
          const out = transformOutcome(broken, { encoding: 'base64' });
          expect(out).toBeInstanceOf(InvalidMaterialError);
          expect((out as Error).message).toMatch(/not valid base64/);
        },
      ),
    );
  });

  it('jsonKey picks exactly the own field, from JSON text, JSON bytes or an object; never an inherited one', () => {
    fc.assert(
      fc.property(
        fc.dictionary(jsonKeys, fc.string({ minLength: 1, maxLength: 40 }), { minKeys: 1, maxKeys: 6 }),
        jsonKeys,
        (object, probe) => {
          const text = JSON.stringify(object);
          const parsed = JSON.parse(text) as Record<string, string>;
          for (const key of [...Object.keys(parsed), probe]) {
            const ref = refWith({ jsonKey: key });
            for (const raw of [text, new TextEncoder().encode(text), parsed]) {
              const out = transformOutcome(raw, { jsonKey: key });
              if (Object.hasOwn(parsed, key)) expect(out).toBe(parsed[key]);
              else {
                expect(out).toBeInstanceOf(InvalidMaterialError);
                expect((out as Error).message).toMatch(/has no key/);
              }
              if (typeof out === 'string') expect(transformValue(ref, raw)).toBe(out);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('jsonKey with base64: a JSON field holding base64 decodes to its bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 100 }), jsonKeys, (bytes, key) => {
        const text = JSON.stringify({ [key]: Buffer.from(bytes).toString('base64') });
        expect(transformValue(refWith({ jsonKey: key, encoding: 'base64' }), text)).toEqual(
          Buffer.from(bytes),
        );
      }),
    );
  });

  it('the size limit holds at its edge, in characters and in bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: -3, max: 3 }), fc.constantFrom('A', 'é'), (delta, char) => {
        const bytesPerChar = Buffer.byteLength(char);
        const size = MAX_SECRET_BYTES + delta * bytesPerChar;
        const text = char.repeat(Math.floor(size / bytesPerChar));
        const out = transformOutcome(text, {});
        if (Buffer.byteLength(text) > MAX_SECRET_BYTES) {
          expect(out).toBeInstanceOf(InvalidMaterialError);
          expect((out as Error).message).toMatch(/byte limit/);
        } else expect(out).toBe(text);
      }),
      { numRuns: 14 },
    );
  });
});

describe('safeCause', () => {
  it('keeps no text of the input a JSON parser failed on', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (prefix) => {
        let failure: unknown;
        try {
          JSON.parse(`${prefix}{"${MARK}": ${MARK}`);
        } catch (err) {
          failure = err;
        }
        expect(failure).toBeInstanceOf(SyntaxError);
        expect(shownOf(safeCause(failure))).not.toContain(MARK);
      }),
    );
  });
});

describe('the validation gate, fuzzed through the resolver', () => {
  let ca: TestCA;
  let leaf: Issued;
  beforeAll(async () => {
    ca = await createTestCA();
    leaf = await ca.issue();
  });

  /** A PEM with one random edit: a flipped, dropped or inserted character, a cut, or a repeated line. */
  const mutated = (pem: string) =>
    fc
      .tuple(
        fc.constantFrom('flip', 'drop', 'insert', 'cut', 'repeat'),
        fc.nat(),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 3 }),
      )
      .map(([kind, at, chars]) => {
        const i = at % pem.length;
        switch (kind) {
          case 'flip':
            return `${pem.slice(0, i)}${String.fromCharCode(pem.charCodeAt(i) ^ 0x01)}${pem.slice(i + 1)}`;
          case 'drop':
            return pem.slice(0, i) + pem.slice(i + 1);
          case 'insert':
            return pem.slice(0, i) + chars + pem.slice(i);
          case 'cut':
            return pem.slice(0, i);
          default: {
            const lines = pem.split('\n');
            const j = at % lines.length;
            lines.splice(j, 0, lines[j] ?? '');
            return lines.join('\n');
          }
        }
      });

  it('a mutated key, certificate, CA or random bytes: either a valid swap or an InvalidMaterialError, the old bundle kept', async () => {
    const field = fc.constantFrom('key', 'cert', 'ca', 'ticketKeys', 'pfx');
    let rejected = 0;
    await fc.assert(
      fc.asyncProperty(
        field,
        fc.oneof(mutated(leaf.keyPem), mutated(leaf.certPem), mutated(ca.certPem)),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.boolean(),
        async (name, text, bytes, useBytes) => {
          const store = memory({
            key: leaf.keyPem,
            cert: leaf.certPem,
            ca: ca.certPem,
            ticketKeys: Buffer.alloc(48, 7),
          });
          const resolver = createResolver({
            key: store.ref('key'),
            cert: store.ref('cert'),
            ca: store.ref('ca'),
            ticketKeys: store.ref('ticketKeys'),
            ...(name === 'pfx' ? { pfx: store.ref('pfx') } : {}),
          });
          try {
            if (name === 'pfx') store.set('pfx', Buffer.from(bytes));
            const served = name === 'pfx' ? undefined : await resolver.resolve();
            store.set(name, useBytes ? Buffer.from(bytes) : text);
            const result = name === 'pfx' ? undefined : await resolver.refresh();
            const errors = result
              ? result.errors
              : await resolver.resolve().then(
                  () => [],
                  (e: unknown) => [e],
                );
            rejected += errors.length;
            for (const error of errors) {
              expect(error).toBeInstanceOf(TlsSecretsError);
              expect(error).toBeInstanceOf(InvalidMaterialError);
              const shown = shownOf(error);
              expect(shown).not.toContain('PRIVATE KEY-----\n');
            }
            if (served && errors.length > 0) {
              expect(resolver.generation).toBe(1);
              expect(await resolver.resolve()).toBe(served);
            }
          } finally {
            await resolver.close();
          }
        },
      ),
      { numRuns: 150 },
    );
    console.info(
      `[properties] validation fuzz: 150 mutated bundles, ${rejected} rejected with InvalidMaterialError`,
    );
    expect(rejected).toBeGreaterThan(75);
  });
});
