/**
 * Writes THROWAWAY test certificates for the `tls-secrets check` examples into `examples/check/certs/`
 * (or the directory given): a CA, a server and a client certificate with their keys, and the client key
 * encrypted with a passphrase. Never use them for anything but trying the CLI.
 *
 *   npx tsx examples/check/make-certs.ts && npx tsx src/cli.ts check examples/check/good.json
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createTestCA, encryptKey } from '../../test/fixtures/ca.js';

const DAY = 86_400_000;
/** Not a secret: these certificates exist to be thrown away. */
const PASSPHRASE = 'throwaway-example-passphrase';

export async function makeCerts(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const now = Date.now();
  const ca = await createTestCA({
    commonName: 'tls-secrets example CA (THROWAWAY)',
    notAfter: new Date(now + 10 * 365 * DAY),
  });
  const server = await ca.issue({ commonName: 'localhost', notAfter: new Date(now + 825 * DAY) });
  const client = await ca.issue({ commonName: 'example-client', notAfter: new Date(now + 825 * DAY) });
  const files: Record<string, string> = {
    'ca.pem': ca.certPem,
    'server.key': server.keyPem,
    'server.crt': server.certPem,
    'client.key': client.keyPem,
    'client.crt': client.certPem,
    'client-encrypted.key': encryptKey(client.keyPem, PASSPHRASE),
    'client.pass': PASSPHRASE,
  };
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), content, { mode: name.endsWith('.key') ? 0o600 : 0o644 });
  }
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === pathToFileURL(self).href) {
  const dir = resolve(process.argv[2] ?? join(dirname(self), 'certs'));
  await makeCerts(dir);
  console.log(`throwaway example certificates written to ${dir}`);
}
