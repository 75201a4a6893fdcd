/**
 * PostgreSQL (`pg`) with a client certificate from the store. node-postgres hands `ssl` to `tls.connect`,
 * so the resolved options (with their cached `secureContext`) go in as they are. A pool keeps its options,
 * so a rotation swaps the pool: new queries go to the new one, the old one ends once its clients are idle.
 *
 * In an application, import from 'tls-secrets/config' instead of '../../config/index.js'.
 */
import pg from 'pg';
import { createResolverFromConfig } from '../../config/index.js';
import { liveOptions } from './live-options.js';

export async function createPgPool(configPath: string) {
  // e.g. { "providers": { "vault": { "type": "vault" } },
  //        "tls": { "key": "vault:secret/db/client#key", "cert": "vault:secret/db/client#cert",
  //                 "ca": "vault:secret/db/client#ca", "servername": "db.internal" } }
  const { resolver, close } = await createResolverFromConfig(configPath);
  const poolFor = (ssl: pg.PoolConfig['ssl']) =>
    new pg.Pool({ host: 'db.internal', database: 'app', user: 'app', max: 10, ssl });

  let pool = poolFor((await resolver.resolve()) as pg.PoolConfig['ssl']);
  const live = await liveOptions(resolver, (next) => {
    const old = pool;
    pool = poolFor(next);
    old.end().catch(() => {});
  });

  return {
    query: (text: string, values?: unknown[]) => pool.query(text, values),
    async end() {
      live.stop();
      await pool.end();
      await close();
    },
  };
}
