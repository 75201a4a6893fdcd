/**
 * Kafka (`kafkajs`) with mutual TLS. kafkajs opens broker connections through `socketFactory`, called
 * synchronously for every new connection: it reads the newest generation from `liveOptions`, so connections
 * opened after a rotation present the new certificate.
 *
 * In an application, import from 'tls-secrets/config' instead of '../../config/index.js'.
 */
import { connect } from 'node:tls';
import { type ISocketFactory, Kafka } from 'kafkajs';
import { createResolverFromConfig } from '../../config/index.js';
import { liveOptions } from './live-options.js';

export async function createKafka(configPath: string) {
  const { resolver, close } = await createResolverFromConfig(configPath);
  const live = await liveOptions(resolver);
  // What kafkajs' default factory does, with the SecureContext of the current generation.
  const socketFactory: ISocketFactory = ({ host, port, onConnect }) =>
    connect({ ...live.current, host, port, servername: host }, onConnect);
  const kafka = new Kafka({
    clientId: 'app',
    brokers: ['kafka-0.internal:9093', 'kafka-1.internal:9093'],
    ssl: true,
    socketFactory,
  });
  return {
    kafka,
    async close() {
      live.stop();
      await close();
    },
  };
}
