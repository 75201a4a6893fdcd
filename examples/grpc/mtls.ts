/**
 * gRPC with mutual TLS from the resolver: a server whose certificate, CA and CRL rotate without rebinding, and
 * a client whose certificate rotates without being recreated. In an application, import from 'tls-secrets/grpc'.
 */
import * as grpc from '@grpc/grpc-js';
import { grpcChannelCredentials, grpcServerCredentials } from '../../src/grpc.js';
import type { Resolver } from '../../src/index.js';

/** Bounds how long an established connection keeps the certificates of its handshake: 60 s × 1.1 + 10 s. */
export const serverOptions: grpc.ServerOptions = {
  'grpc.max_connection_age_ms': 60_000,
  'grpc.max_connection_age_grace_ms': 10_000,
};

export async function serve(
  tls: Resolver,
  service: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server(serverOptions);
  server.addService(service, implementation);
  // Resolves the first bundle before binding: a bad store or bundle fails here.
  const credentials = await grpcServerCredentials(tls, { requireClientCert: true });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('0.0.0.0:50051', credentials, (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return { server, port };
}

export async function connect(tls: Resolver, service: grpc.ServiceDefinition): Promise<grpc.Client> {
  const Client = grpc.makeGenericClientConstructor(service, 'Service');
  // An IP target: the server's certificate names orders.internal, so check that name instead.
  const credentials = await grpcChannelCredentials(tls, { servername: 'orders.internal' });
  return new Client('10.0.0.12:50051', credentials, { 'grpc.default_authority': 'orders.internal' });
}
