/**
 * One process of the fleet bench (bench/lib/fleet.ts forks several): many instances, each as a separate
 * service would be, with its own provider, its own SDK client (or Vault session) and its own resolver. Each
 * instance starts at the time the parent gave it, calls `resolve()` as a service does at start-up, and calls
 * it again every `retryEveryMs` while it has no bundle (what the next incoming request would do; the
 * resolver's backoff decides whether the store is asked). Every first bundle and every later rotation is
 * reported to the parent over IPC with its time.
 *
 * Messages in: `start` (the plan), `stop`. Messages out: `loaded`, `ready`, `rotated`, `stopped`.
 */
import { awsSecretsManager } from '../providers/aws-secrets-manager.js';
import { ssmParameterStore } from '../providers/aws-ssm.js';
import { vault } from '../providers/vault/index.js';
import { createResolver, type Provider, type Resolver, type TlsSecretsSpec } from '../src/index.js';

export interface FleetPlan {
  readonly store: 'aws' | 'ssm' | 'vault';
  /** The quota proxy in front of the store. */
  readonly endpoint: string;
  /** Epoch ms at which each of this process's instances starts. */
  readonly startAt: readonly number[];
  /** The secret holding key and certificate, and the CA secrets: `secrets - 1` of them. */
  readonly clientSecret: string;
  readonly caSecrets: readonly string[];
  readonly refreshIntervalMs: number;
  readonly retryEveryMs: number;
  readonly aws?: { region: string; accessKeyId: string; secretAccessKey: string };
  readonly vaultToken?: string;
}

export type ToWorker = { type: 'start'; plan: FleetPlan } | { type: 'stop' };

export type FromWorker =
  | { type: 'loaded' }
  | {
      type: 'ready';
      instance: number;
      /** Epoch ms of the start and of the first bundle. */
      startedAt: number;
      readyAt: number;
      /** resolve() calls that were refused before the first bundle, by error code. */
      refusals: Record<string, number>;
    }
  | { type: 'rotated'; instance: number; at: number; generation: number; changed: readonly string[] }
  | { type: 'stopped' };

const instances: { resolver: Resolver; provider: Provider; close(): void }[] = [];
let stopping = false;

function send(message: FromWorker): void {
  process.send?.(message);
}

function build(plan: FleetPlan): { spec: TlsSecretsSpec; provider: Provider; close(): void } {
  if (plan.store === 'aws' || plan.store === 'ssm') {
    const aws = plan.aws;
    if (!aws) throw new Error(`${plan.store} plan without credentials`);
    // The provider builds its own client, with the library's defaults, as a service would.
    const options = {
      endpoint: plan.endpoint,
      region: aws.region,
      credentials: { accessKeyId: aws.accessKeyId, secretAccessKey: aws.secretAccessKey },
    };
    const store = plan.store === 'aws' ? awsSecretsManager(options) : ssmParameterStore(options);
    return {
      provider: store,
      spec: {
        key: store.ref(plan.clientSecret, { jsonKey: 'key' }),
        cert: store.ref(plan.clientSecret, { jsonKey: 'cert' }),
        ca: plan.caSecrets.map((id) => store.ref(id)),
      },
      close: () => undefined,
    };
  }
  const provider = vault({ endpoint: plan.endpoint, auth: { token: plan.vaultToken ?? '' } });
  const kv = { kvVersion: 2 as const, mount: 'secret' };
  return {
    provider,
    spec: {
      key: provider.kv(plan.clientSecret, { field: 'key', ...kv }),
      cert: provider.kv(plan.clientSecret, { field: 'cert', ...kv }),
      ca: plan.caSecrets.map((path) => provider.kv(path, { field: 'ca', ...kv })),
    },
    close: () => undefined,
  };
}

function startInstance(plan: FleetPlan, index: number): void {
  const { spec, provider, close } = build(plan);
  const resolver = createResolver(spec, { refreshIntervalMs: plan.refreshIntervalMs });
  // Errors are expected under a quota; the bench counts refusals of resolve() instead.
  resolver.on('error', () => undefined);
  resolver.on('rotate', (event) => {
    if (event.generation > 1) {
      send({
        type: 'rotated',
        instance: index,
        at: Date.now(),
        generation: event.generation,
        changed: event.changed,
      });
    }
  });
  instances.push({ resolver, provider, close });
  const startedAt = Date.now();
  const refusals: Record<string, number> = {};
  const attempt = () => {
    if (stopping) return;
    resolver.resolve().then(
      () => send({ type: 'ready', instance: index, startedAt, readyAt: Date.now(), refusals }),
      (error: unknown) => {
        const code = (error as { code?: string }).code ?? 'unknown';
        refusals[code] = (refusals[code] ?? 0) + 1;
        setTimeout(attempt, plan.retryEveryMs);
      },
    );
  };
  attempt();
}

process.on('message', (message: ToWorker) => {
  if (message.type === 'start') {
    const { plan } = message;
    plan.startAt.forEach((at, index) => {
      setTimeout(() => startInstance(plan, index), Math.max(0, at - Date.now()));
    });
    return;
  }
  stopping = true;
  Promise.all(
    instances.map(async ({ resolver, provider, close }) => {
      await resolver.close();
      await provider.close?.();
      close();
    }),
  ).finally(() => {
    send({ type: 'stopped' });
    process.disconnect?.();
  });
});

// Loading the SDK and the library takes a while under tsx: the parent starts the clock only once every
// process has loaded, so that all instances really start within the planned second.
send({ type: 'loaded' });
process.on('disconnect', () => process.exit(0));
