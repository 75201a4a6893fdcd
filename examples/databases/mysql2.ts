/**
 * MySQL (`mysql2`) with a client certificate from the store. mysql2 builds its own SecureContext from PEM
 * fields (it takes no `secureContext`), so the resolved key, certificate and CA are passed as text. A
 * rotation swaps the pool; the old one ends gracefully.
 *
 * In an application, import from 'tls-secrets' instead of '../../src/index.js'.
 */
import mysql, { type SslOptions } from 'mysql2/promise';
import { file } from '../../providers/file.js';
import { createResolver, type ResolvedOptions } from '../../src/index.js';
import { liveOptions } from './live-options.js';

/** PEM text for mysql2's SslOptions (the resolver gives keys as `{ pem, passphrase }` entries). */
function pem(value: unknown): string[] {
  const items = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return items.map((item) =>
    typeof item === 'object' && item !== null && 'pem' in item ? String(item.pem) : String(item),
  );
}

export function mysqlSsl(resolved: ResolvedOptions): SslOptions {
  const [passphrase] = (Array.isArray(resolved.key) ? resolved.key : [])
    .map((key) =>
      typeof key === 'object' && key !== null && 'passphrase' in key ? key.passphrase : undefined,
    )
    .filter((value): value is string => typeof value === 'string');
  return {
    key: pem(resolved.key),
    cert: pem(resolved.cert),
    ca: pem(resolved.ca),
    ...(passphrase === undefined ? {} : { passphrase }),
    rejectUnauthorized: true,
    verifyIdentity: true,
  };
}

export async function createMysqlPool() {
  // cert-manager or Vault Agent writes these files; the file provider watches them.
  const certs = file({ baseDir: '/etc/mysql-client-tls' });
  const resolver = createResolver({
    key: certs.ref('tls.key'),
    cert: certs.ref('tls.crt'),
    ca: certs.ref('ca.crt'),
  });
  const poolFor = (resolved: ResolvedOptions) =>
    mysql.createPool({ host: 'mysql.internal', user: 'app', database: 'app', ssl: mysqlSsl(resolved) });

  let pool = poolFor(await resolver.resolve());
  const live = await liveOptions(resolver, (next) => {
    const old = pool;
    pool = poolFor(next);
    old.end().catch(() => {});
  });
  return {
    query: (sql: string, values?: unknown[]) => pool.query(sql, values),
    async end() {
      live.stop();
      await pool.end();
      await resolver.close();
      await certs.close();
    },
  };
}
