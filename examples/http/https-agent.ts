/**
 * `https.request` / `https.get` (and libraries that take an `agent`, such as axios, got or node-fetch) with
 * a client certificate from the store. In an application, import from 'tls-secrets' and 'tls-secrets/config'.
 */
import https from 'node:https';
import { createResolverFromConfig } from '../../config/index.js';
import { createAgent } from '../../src/index.js';

export async function callService(): Promise<string> {
  const { resolver, close } = await createResolverFromConfig('tls-client.json');
  const agent = createAgent(resolver, { maxSockets: 50 });
  try {
    return await new Promise<string>((resolve, reject) => {
      https
        .get('https://orders.internal/health', { agent }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
  } finally {
    agent.destroy();
    await close();
  }
}
