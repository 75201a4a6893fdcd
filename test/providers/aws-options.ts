/**
 * The option checks every AWS provider shares (providers/_aws.ts), run by each AWS provider's test file: bad
 * options refused at creation, the service's endpoint variable checked without being echoed, credentials and
 * client never shown.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigurationError } from '../../src/errors.js';
import type { Provider } from '../../src/provider.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';

export const REGION = 'us-east-1';
export const CREDENTIALS = { accessKeyId: 'AKIDTEST', secretAccessKey: 'test-secret-access-key' };

export interface AwsOptionsSubject {
  /** e.g. `awsSecretsManager`. */
  readonly label: string;
  /** The provider factory, given options as a user would (possibly wrong). */
  create(options: Record<string, unknown>): Provider;
  /** A real SDK client of the service, for the `client` combinations; destroyed after the test. */
  client(): { destroy(): void };
  /** The service's own endpoint variable, e.g. `AWS_ENDPOINT_URL_SSM`. */
  readonly endpointVariable: string;
  /** Bad options only this service has, e.g. `{ withDecryption: 'yes' }`. */
  readonly extraBad?: readonly Record<string, unknown>[];
}

export function awsOptionsSuite(subject: AwsOptionsSubject): void {
  describe(`${subject.label}: options (no I/O)`, () => {
    afterEach(() => {
      vi.unstubAllEnvs();
    });

    it('refuses bad options at creation with a ConfigurationError', () => {
      const client = subject.client();
      const bad: Record<string, unknown>[] = [
        { region: 'Europe West' },
        { endpoint: 'localhost:4566' },
        { endpoint: 'ftp://example.test' },
        { endpoint: 'https://user:password@example.test' },
        { maxAttempts: 0 },
        { maxAttempts: 2.5 },
        { requestTimeoutMs: -1 },
        { name: '' },
        { client, region: REGION },
        { client, credentials: CREDENTIALS },
        { client: {} },
        ...(subject.extraBad ?? []),
      ];
      try {
        for (const options of bad)
          expect(() => subject.create(options), Object.keys(options).join(', ')).toThrow(ConfigurationError);
      } finally {
        client.destroy();
      }
    });

    it(`validates ${subject.endpointVariable} at creation, without echoing it`, () => {
      vi.stubEnv(subject.endpointVariable, 'not a url with-password');
      let error: unknown;
      try {
        subject.create({ region: REGION });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigurationError);
      expect((error as Error).message).toContain(subject.endpointVariable);
      expect((error as Error).message).not.toContain('with-password');
    });

    it('shows neither credentials nor client in inspect or JSON', () => {
      const provider = subject.create({ region: 'eu-west-1', credentials: CREDENTIALS });
      const shown = `${inspect(provider, { depth: 5, showHidden: true })} ${JSON.stringify(provider)}`;
      expect(shown).toContain('eu-west-1');
      expect(shown).not.toContain(CREDENTIALS.secretAccessKey);
      expect(shown).not.toContain(CREDENTIALS.accessKeyId);
    });
  });
}

/**
 * moto has no IAM: a fault proxy in front of it answers every call as AWS answers an identity without the
 * permission (400, awsJson1_1 `AccessDeniedException`), so the real SDK on the provider's side sees a denial.
 */
export async function deniedByIam(moto: string): Promise<FaultProxy> {
  const proxy = await startFaultProxy(moto);
  await proxy.setFault({
    kind: 'respond',
    status: 400,
    body: JSON.stringify({
      __type: 'AccessDeniedException',
      message: 'not authorized to perform this action',
    }),
    headers: { 'Content-Type': 'application/x-amz-json-1.1' },
  });
  return proxy;
}

/** A URL where nothing listens: a port that was just free. */
export async function nobodyListening(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
