/**
 * `fetch` with mutual TLS: the dispatcher goes per request, or globally with `setGlobalDispatcher`.
 * In an application, import createResolver from 'tls-secrets' and createDispatcher from 'tls-secrets/undici'.
 */
import { fetch, setGlobalDispatcher } from 'undici';
import { memory } from '../../providers/memory.js';
import { createResolver } from '../../src/index.js';
import { createDispatcher } from '../../src/undici.js';

export async function fetchWithClientCertificate(keyPem: string, certPem: string, caPem: string) {
  const store = memory({ key: keyPem, cert: certPem, ca: caPem });
  const resolver = createResolver({ key: store.ref('key'), cert: store.ref('cert'), ca: store.ref('ca') });
  const dispatcher = await createDispatcher(resolver, { connections: 16, connect: { timeout: 5_000 } });

  const response = await fetch('https://payments.internal/v1/ping', { dispatcher });
  // Or for every request of the process:
  setGlobalDispatcher(dispatcher);

  return {
    status: response.status,
    async close() {
      await dispatcher.close();
      await resolver.close();
    },
  };
}
