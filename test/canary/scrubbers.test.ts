/** The two text scrubbers the views rely on, on the shapes they must catch and the text they must keep. */
import { describe, expect, it } from 'vitest';
import { scrubWireText, wireErrors } from '../../providers/vault/errors.js';
import { safeCause, withoutUrlCredentials } from '../../src/errors.js';

describe('withoutUrlCredentials', () => {
  it.each([
    ['http://user:pa55@vault:8200/v1', 'http://vault:8200/v1'],
    ['endpoint https://user:p@ss/w0rd@vault:8200 refused', 'endpoint https://vault:8200 refused'],
    ['two: http://a:b@h1 and https://c:d@h2/x', 'two: http://h1 and https://h2/x'],
    ['no credentials: https://vault:8200/v1/secret', 'no credentials: https://vault:8200/v1/secret'],
    ['not a URL: user@example.com', 'not a URL: user@example.com'],
  ])('%s', (input, expected) => {
    expect(withoutUrlCredentials(input)).toBe(expected);
  });
});

describe('scrubWireText (Vault error strings)', () => {
  const own = 'CANARYownsecret0123';
  it.each([
    ['its own credential, plain and URL-encoded', `token ${own} and ${encodeURIComponent(`${own}/+`)}`, own],
    ['service tokens', 'bad token hvs.CAESIJ0abcdefghijklmnopqrstuv in header', 'hvs.CAESIJ0'],
    ['legacy tokens', 'bad token s.abcdefghijklmnopqrstuvwx', 's.abcdefghij'],
    ['batch tokens', 'hvb.AAAAAQJabcdefghijklmnopqrstu', 'hvb.AAAA'],
    ['secret_ids (UUIDs)', 'secret_id 2e7a1c9b-3f4d-4b5e-8a6f-0c1d2e3f4a5b invalid', '2e7a1c9b-3f4d'],
    ['JWTs', 'jwt eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl rejected', 'eyJzdWIiOiJ4In0'],
    [
      'named values',
      '{"secret_id":"whatever-it-is","role_id":"r-1"} x-vault-token: abc123',
      'whatever-it-is',
    ],
  ])('removes %s', (_what, text, secret) => {
    const clean = scrubWireText(text, [own]);
    expect(clean).not.toContain(secret);
    expect(clean).toContain('[redacted]');
  });

  it("keeps Vault's own reasons and bounds the rest", () => {
    expect(scrubWireText('permission denied', [own])).toBe('permission denied');
    expect(scrubWireText('invalid role or secret ID', [own])).toBe('invalid role or secret ID');
    const long = scrubWireText('x'.repeat(1_000), [own]);
    expect(long.length).toBeLessThanOrEqual(201);
    expect(scrubWireText('line\nbreak\u0007', [])).toBe('line break ');
  });
});

describe('wireErrors (Vault error strings as a whole)', () => {
  const token = 'CANARYtoken0123456789abcdef';
  it.each([
    ['a token split over two strings', [`token prefix ${token.slice(0, 14)}`, `${token.slice(14)} suffix`]],
    ['base64', [`auth ${Buffer.from(token).toString('base64')}`]],
    ['hex', [`auth ${Buffer.from(token).toString('hex')}`]],
    ['spaced out', [token.split('').join(' ')]],
    ['a 12-character piece', [`bad ${token.slice(3, 15)}`]],
  ])('drops the whole text for %s', (_what, errors) => {
    expect(wireErrors(errors, [token])).toEqual({ errors: [], withheld: true });
  });

  // Dev tokens are short (the compose root token is `root`): an outside tester's echo of a 7-character one
  // came back upper-cased or spaced out in the cause.
  it.each([
    ['upper-cased', ['client ROOTTOK']],
    ['spaced out', ['r o o t t o k']],
    ['base64', [`auth ${Buffer.from('roottok').toString('base64')}`]],
  ])('drops the whole text for a short dev token echoed %s', (_what, errors) => {
    expect(wireErrors(errors, ['roottok'])).toEqual({ errors: [], withheld: true });
  });

  it('looks for a 4-character token, and keeps text that does not hold it', () => {
    expect(wireErrors(['token ROOT was refused'], ['root']).withheld).toBe(true);
    expect(wireErrors(['permission denied'], ['root'])).toEqual({
      errors: ['permission denied'],
      withheld: false,
    });
  });

  it("keeps Vault's own words, scrubbed and bounded", () => {
    const long = 'storage backend unavailable '.repeat(20).trim();
    expect(wireErrors(['permission denied', long, 'c', 'd'], [token])).toEqual({
      errors: ['permission denied', `${long.slice(0, 200)}…`, 'c'],
      withheld: false,
    });
    for (const words of [
      '1 error occurred:\n\t* permission denied\n\n',
      'no handler for route "secret/data/payments/app/tls-bundle". route entry not found.',
      'request path "secret/data/fleet/ca/0": rate limit quota exceeded',
      "preflight capability check returned 403, please ensure client's policies grant access to the path",
      'lease 8f1c2d3e-4b5a-6c7d-8e9f-0a1b2c3d4e5f not found',
    ]) {
      expect(wireErrors([words], [token]).withheld, words).toBe(false);
    }
  });

  it('finds a credential with separators rotated (ROT13, ROT1) or in fullwidth letters', () => {
    const secret = 'goodTok-Q7x9Lm2P';
    const rot = (shift: number) =>
      secret.replace(/[a-z]/gi, (c) => {
        const base = c <= 'Z' ? 65 : 97;
        return String.fromCharCode(((c.charCodeAt(0) - base + shift) % 26) + base);
      });
    const fullwidth = [...secret].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join('');
    for (const [form, echoed] of Object.entries({
      rot13: rot(13),
      rot1: rot(1),
      rot25: rot(25),
      fullwidth,
    })) {
      expect(wireErrors([`bad ${echoed}`], [secret]).withheld, form).toBe(true);
    }
    expect(wireErrors(['bad request'], [secret]).withheld).toBe(false);
  });

  it('shows only prose: a credential cut into pieces in one string, or in look-alike letters, is withheld', () => {
    const other = ['unrelated-credential'];
    for (const text of [
      'user s.i5QKHP failed 0WpvE2FO at wEFzDtFH node mX',
      'identity goodTok failed for key Q7x9Lm2P',
      'M5XW6ZCU N5VS2UJX G54TSTDN',
      '103+111+111+100+84+111+107+45+81',
      'gооdТоk', // Cyrillic о and Т
      'o147|o157|o157|o144',
    ]) {
      expect(wireErrors([text], other).withheld, text).toBe(true);
    }
    expect(wireErrors(['Vault is sealed'], other).withheld).toBe(false);
  });

  it('withholds text shaped like encoded data, whatever credential it may hide', () => {
    // A credential the checks for known forms would not find in these encodings.
    const secret = 'CANARYhyg1ene4token8899';
    const bytes = Buffer.from(secret);
    const base32 = (input: Buffer) => {
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
      let bits = '';
      for (const byte of input) bits += byte.toString(2).padStart(8, '0');
      return (bits.match(/.{1,5}/g) ?? [])
        .map((b) => alphabet[Number.parseInt(b.padEnd(5, '0'), 2)])
        .join('');
    };
    const rot13 = secret.replace(/[a-z]/gi, (c) => {
      const base = c <= 'Z' ? 65 : 97;
      return String.fromCharCode(((c.charCodeAt(0) - base + 13) % 26) + base);
    });
    const forms: Record<string, string> = {
      base32: base32(bytes),
      'base64 of base64': Buffer.from(bytes.toString('base64')).toString('base64'),
      '0x hex': [...bytes].map((b) => `0x${b.toString(16)}`).join(','),
      '\\x hex': [...bytes].map((b) => `\\x${b.toString(16)}`).join(''),
      'hex pairs with colons': [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':'),
      'UTF-16LE hex': Buffer.from(secret, 'utf16le').toString('hex'),
      'ES6 escapes': [...secret].map((c) => `\\u{${c.charCodeAt(0).toString(16)}}`).join(''),
      'HTML entities': [...secret].map((c) => `&#${c.charCodeAt(0)};`).join(''),
      'double percent-encoding': [...bytes].map((b) => `%25${b.toString(16)}`).join(''),
      'decimal codes': [...bytes].join(','),
      'octal escapes': [...bytes].map((b) => `\\${b.toString(8).padStart(3, '0')}`).join(''),
      ROT13: rot13,
      'every character doubled': [...secret].map((c) => c + c).join(''),
      fullwidth: [...secret].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join(''),
      'Ascii85-like': '6Xb.A@:O(H;e!%Br&_kAS#p7<,j',
      'octal escapes, spaced': [...bytes].map((b) => `\\${b.toString(8)}`).join(' '),
      'UTF-16LE hex in code units': (
        Buffer.from(secret, 'utf16le').toString('hex').match(/.{4}/g) ?? []
      ).join(' '),
      '\\x hex, spaced': [...bytes].map((b) => `\\x${b.toString(16)}`).join(' '),
    };
    for (const [form, encoded] of Object.entries(forms)) {
      expect(wireErrors([`upstream detail ${encoded}`], ['other-credential']).withheld, form).toBe(true);
    }
  });
});

describe('safeCause', () => {
  it('keeps name, code, status and request id of an SDK-shaped error, nothing else', () => {
    const sdk = Object.assign(new Error('echo: x-amz-security-token: CANARYtoken'), {
      name: 'InternalFailure',
      $fault: 'server',
      $metadata: { httpStatusCode: 500, requestId: '7a62c49f-347e-4fc4-9331-6e8eca3f1b2d' },
      $response: { headers: { 'x-amz-security-token': 'CANARYtoken' } },
      cause: new Error('CANARYnested'),
    });
    const clean = safeCause(sdk) as Error & Record<string, unknown>;
    expect(clean).toMatchObject({
      name: 'InternalFailure',
      statusCode: 500,
      requestId: '7a62c49f-347e-4fc4-9331-6e8eca3f1b2d',
    });
    expect(clean.message).toBe('InternalFailure, HTTP 500, request id 7a62c49f-347e-4fc4-9331-6e8eca3f1b2d');
    expect(Object.keys(clean)).not.toContain('$response');
    expect(clean.cause).toBeUndefined();
  });

  it('keeps the message of OpenSSL and system-call errors, not of Node argument errors', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/tls/key.pem'"), {
      code: 'ENOENT',
      errno: -2,
      syscall: 'open',
    });
    expect((safeCause(enoent) as Error).message).toContain('no such file');
    const ossl = Object.assign(new Error('error:1C800064:Provider routines::bad decrypt'), {
      code: 'ERR_OSSL_BAD_DECRYPT',
    });
    expect((safeCause(ossl) as Error).message).toContain('bad decrypt');
    const argument = Object.assign(new TypeError("The argument received 'CANARYvalue'"), {
      code: 'ERR_INVALID_ARG_TYPE',
    });
    expect((safeCause(argument) as Error).message).toBe('TypeError, code ERR_INVALID_ARG_TYPE');
  });

  it('keeps names, codes and request ids only in shapes that cannot carry a credential', () => {
    const token = 'IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ';
    const hostile = Object.assign(new Error('x'), {
      name: `Denied_${token}`,
      code: token,
      $metadata: { httpStatusCode: 400, requestId: `req ${token}` },
    });
    const clean = safeCause(hostile) as Error & Record<string, unknown>;
    expect(clean).toMatchObject({ name: 'Error', statusCode: 400 });
    expect(clean.code).toBeUndefined();
    expect(clean.requestId).toBeUndefined();
    for (const [code, kept] of [
      ['ECONNREFUSED', true],
      ['ERR_OSSL_EVP_BAD_DECRYPT', true],
      ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', true],
      ['ERR_TLS_CERT_ALTNAME_INVALID', true],
      ['ASIAQWERTYUIOPASDFGH', false],
      ['ERR_ASIAQWERTYUIOPASDFGH', false],
      ['Denied_abc', false],
    ] as const) {
      const cause = safeCause(Object.assign(new Error('x'), { code })) as { code?: unknown };
      expect(cause.code, code).toBe(kept ? code : undefined);
    }
  });

  it('narrowed by a provider: a closed set of names, no server code, no own credential', () => {
    const uuidToken = '1ffb6c3b-d424-48e0-9758-3dbd2677efa1';
    const sdk = Object.assign(new Error('x'), {
      name: 'SomethingNew',
      code: 'ERR_FROM_BODY',
      $fault: 'client',
      $metadata: { httpStatusCode: 400, requestId: uuidToken },
    });
    const clean = safeCause(sdk, {
      names: new Set(['InternalFailure']),
      secrets: [uuidToken],
      codeFromServer: true,
    }) as Error & Record<string, unknown>;
    expect(clean).toMatchObject({ name: 'UnrecognisedError', statusCode: 400 });
    expect(clean.code).toBeUndefined();
    expect(clean.requestId).toBeUndefined();
    // A piece of a credential of 12 characters or more is enough to drop the text.
    const system = Object.assign(new Error(`connect ECONNREFUSED ${uuidToken.slice(0, 13)}`), {
      code: 'ECONNREFUSED',
      errno: -111,
      syscall: 'connect',
    });
    expect((safeCause(system, { secrets: [uuidToken] }) as Error).message).toBe('Error, code ECONNREFUSED');
  });
});
