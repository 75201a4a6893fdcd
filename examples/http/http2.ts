/**
 * HTTP/2 on both ends: a server hot-swapped by `attach`, and a client whose session follows the resolver.
 * In an application, import from 'tls-secrets'.
 */
import http2 from 'node:http2';
import { attach, createHttp2Client, type Resolver } from '../../src/index.js';

export async function serve(resolver: Resolver, port: number): Promise<http2.Http2SecureServer> {
  const options = { requestCert: true, rejectUnauthorized: true, allowHTTP1: true };
  const server = http2.createSecureServer(options, (_req, res) => res.end('ok'));
  // Installs the current generation now and every later one with setSecureContext.
  await attach(server, resolver, options);
  return server.listen(port);
}

export async function get(resolver: Resolver, path: string): Promise<number> {
  const client = createHttp2Client(resolver, 'https://api.internal:8443');
  const session = await client.session();
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path });
    stream.on('response', (headers) => resolve(Number(headers[':status'])));
    stream.on('error', reject);
    stream.resume();
    stream.on('end', () => void client.close());
    stream.end();
  });
}
