/**
 * Redis (`ioredis`) over TLS with a client certificate from AWS Secrets Manager. ioredis passes `tls` to
 * `tls.connect` on every (re)connection, reading it from `redis.options`: a rotation replaces it there, so
 * reconnections use the new certificate while the live connection carries on.
 *
 * In an application, import from 'tls-secrets' instead of '../../src/index.js'.
 */
import { Redis } from 'ioredis';
import { awsSecretsManager } from '../../providers/aws-secrets-manager.js';
import { createResolver } from '../../src/index.js';
import { liveOptions } from './live-options.js';

export async function createRedis() {
  const aws = awsSecretsManager({ region: 'eu-west-1' });
  // One JSON secret { "key": "...", "cert": "...", "ca": "..." }: one fetch for the three fields.
  const resolver = createResolver({
    key: aws.secret('prod/redis/client-tls', { jsonKey: 'key' }),
    cert: aws.secret('prod/redis/client-tls', { jsonKey: 'cert' }),
    ca: aws.secret('prod/redis/client-tls', { jsonKey: 'ca' }),
    servername: 'redis.internal',
  });
  const redis = new Redis({ host: 'redis.internal', port: 6380, tls: await resolver.resolve() });
  const live = await liveOptions(resolver, (next) => {
    redis.options.tls = next;
  });
  return {
    redis,
    async quit() {
      live.stop();
      await redis.quit();
      await resolver.close();
      await aws.close();
    },
  };
}
