/** The two text scrubbers the views rely on, on the shapes they must catch and the text they must keep. */
import { describe, expect, it } from 'vitest';
import { scrubWireText } from '../../providers/vault/errors.js';
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

describe('safeCause', () => {
  it('keeps name, code, status and request id of an SDK-shaped error, nothing else', () => {
    const sdk = Object.assign(new Error('echo: x-amz-security-token: CANARYtoken'), {
      name: 'InternalFailure',
      $fault: 'server',
      $metadata: { httpStatusCode: 500, requestId: 'a1b2-c3' },
      $response: { headers: { 'x-amz-security-token': 'CANARYtoken' } },
      cause: new Error('CANARYnested'),
    });
    const clean = safeCause(sdk) as Error & Record<string, unknown>;
    expect(clean).toMatchObject({ name: 'InternalFailure', statusCode: 500, requestId: 'a1b2-c3' });
    expect(clean.message).toBe('InternalFailure, HTTP 500, request id a1b2-c3');
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
});
