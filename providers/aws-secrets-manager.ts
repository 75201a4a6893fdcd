/**
 * AWS Secrets Manager: SecretString as text, SecretBinary as bytes, batch reads through BatchGetSecretValue and a
 * cheap rotation probe through DescribeSecret. The SDK is an optional peer dependency loaded on first use.
 *
 * Quotas decide how it reads (per account and region, shared by every service in it; AWS publishes them):
 * GetSecretValue 10,000/s, DescribeSecret 40,000/s, BatchGetSecretValue 100/s and not adjustable. One batch
 * call reads up to 20 secrets for 1/100 of a second's batch quota; the same 20 by GetSecretValue take
 * 20/10,000 = 1/500 of its quota. Batching never saves quota, then: it only saves round trips, and a fleet's
 * start spends the batch quota first. So a cycle batches from `minBatchSize` (default 5 × CONCURRENCY + 1 =
 * 41) current secrets, where single reads would take more than five round trips; a throttled batch is not retried
 * (the SDK would spend its attempts on the scarcest quota of the account): its secrets are read one by one
 * at once, and the provider reads one by one for a cooldown of 2 to 4 minutes before it batches again.
 * A throttled GetSecretValue is retried by the provider, not the SDK, and slows its reads (ReadPacer).
 */
import { inspect } from 'node:util';
import type {
  APIErrorType,
  SecretsManagerClient,
  SecretsManagerClientConfig,
  SecretValueEntry,
} from '@aws-sdk/client-secrets-manager';
import {
  ConfigurationError,
  FetchError,
  InvalidMaterialError,
  SecretNotFoundError,
  TlsSecretsError,
} from '../src/errors.js';
import {
  createRef,
  describeRef,
  type FetchResult,
  type Provider,
  type RefOptions,
  type SecretRef,
  type VersionProbe,
} from '../src/provider.js';
import {
  AwsCredentialTrail,
  awsClientConfig,
  awsErrorNames,
  awsErrorParts,
  chunk,
  eachLimit,
  failFastOnThrottling,
  genericAwsError,
  InFlightLimit,
  lazyAwsClient,
  pacedAttempts,
  ReadPacer,
  ThrottledAnswer,
  validateAwsOptions,
} from './_aws.js';

type Sdk = typeof import('@aws-sdk/client-secrets-manager');

interface CommonOptions {
  /** Provider name shown in errors, events and status. Default `aws-secrets-manager`. */
  name?: string;
  /**
   * Read with BatchGetSecretValue only when a cycle reads at least this many current secrets (up to 20 per
   * call); fewer are read with GetSecretValue, 8 at a time. Default 41: single reads cost 5 times less of
   * their quota than a batch does of its own (see the header), and below that take five round trips at most.
   */
  minBatchSize?: number;
}

/** The provider builds and owns its client (destroyed on `close()`). */
export interface AwsSecretsManagerConfigOptions extends CommonOptions {
  /**
   * AWS region, e.g. `eu-west-1`. Default: the SDK's chain (`AWS_REGION`, the shared config file's `region`,
   * EC2 instance metadata).
   */
  region?: string;
  /**
   * Endpoint URL, e.g. a moto or LocalStack server. Default: the SDK's own lookup
   * (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`, shared config), else the regional AWS endpoint.
   */
  endpoint?: string;
  /** Static credentials or a credential provider. Default: the SDK default chain (env, SSO, profile, IMDS, …). */
  credentials?: SecretsManagerClientConfig['credentials'];
  /** Attempts per call, first included; the SDK backs off on throttling, 5xx and timeouts. Default 3. */
  maxAttempts?: number;
  /** Timeout of one HTTP attempt in milliseconds. Default 5000. */
  requestTimeoutMs?: number;
  client?: never;
}

/** The provider uses a client you configured and leaves it open on `close()`. */
export interface AwsSecretsManagerClientOptions extends CommonOptions {
  client: SecretsManagerClient;
  region?: never;
  endpoint?: never;
  credentials?: never;
  maxAttempts?: never;
  requestTimeoutMs?: never;
}

export type AwsSecretsManagerOptions = AwsSecretsManagerConfigOptions | AwsSecretsManagerClientOptions;

export interface AwsSecretOptions extends RefOptions {
  /** Staging label to read. Default `AWSCURRENT`. */
  readonly versionStage?: string;
  /** One version, which never changes; with `versionStage` too, that version must carry the label. */
  readonly versionId?: string;
}

export interface AwsSecretsManagerProvider extends Provider {
  /**
   * A reference to a secret by name or ARN. References to the same secret and version share one fetch whatever
   * their `jsonKey`/`encoding`. Creating it does no I/O.
   */
  secret(secretId: string, options?: AwsSecretOptions): SecretRef;
  /** The same as `secret`, named like the other providers' reference builders. */
  ref(secretId: string, options?: AwsSecretOptions): SecretRef;
  fetchMany(refs: readonly SecretRef[], signal: AbortSignal): Promise<(FetchResult | Error)[]>;
  currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | VersionProbe | undefined>;
  /** Destroys the client the provider built; an injected client stays open. */
  close(): Promise<void>;
}

const DEFAULT_NAME = 'aws-secrets-manager';
const CURRENT = 'AWSCURRENT';
/** The API's limit for SecretIdList. */
const BATCH_LIMIT = 20;
/** Single reads in flight at once when a batch cannot be used. */
const CONCURRENCY = 8;
/** Batch only where single reads would need more than five rounds of CONCURRENCY calls. */
const DEFAULT_MIN_BATCH_SIZE = 5 * CONCURRENCY + 1;
/** After a throttled batch, single reads for this long, stretched by up to as much again (jitter). */
const BATCH_COOLDOWN_MS = 120_000;

interface Target {
  readonly secretId: string;
  readonly versionStage?: string;
  readonly versionId?: string;
}

/**
 * The reference id carries the whole target so that equal targets share an id: `name`, or
 * `name?versionStage=…&versionId=…`. `?` cannot occur in a secret name or ARN, so the split is unambiguous.
 */
function targetId(target: Target): string {
  const query = new URLSearchParams();
  if (target.versionStage !== undefined) query.set('versionStage', target.versionStage);
  if (target.versionId !== undefined) query.set('versionId', target.versionId);
  const suffix = query.toString();
  return suffix ? `${target.secretId}?${suffix}` : target.secretId;
}

function parseTarget(id: string): Target {
  const at = id.indexOf('?');
  if (at < 0) return { secretId: id };
  const query = new URLSearchParams(id.slice(at + 1));
  return {
    secretId: id.slice(0, at),
    versionStage: query.get('versionStage') ?? undefined,
    versionId: query.get('versionId') ?? undefined,
  };
}

function validateTarget(secretId: unknown, options: AwsSecretOptions, provider: string): Target {
  const fail = (reason: string) => new ConfigurationError(reason, { provider });
  if (typeof secretId !== 'string' || secretId.length === 0 || secretId.length > 2048) {
    throw fail('secret id must be a secret name or ARN of 1 to 2048 characters');
  }
  if (/[?#\s]/.test(secretId)) {
    // Not echoed: an id that no secret can have may be a value written where the reference belongs.
    throw fail('secret id contains a character that no secret name or ARN has (?, # or space)');
  }
  const { versionStage, versionId } = options;
  if (versionStage !== undefined && (typeof versionStage !== 'string' || !/^.{1,256}$/.test(versionStage))) {
    throw fail(`versionStage for ${secretId} must be a label of 1 to 256 characters`);
  }
  if (versionId !== undefined && (typeof versionId !== 'string' || !/^[\x21-\x7e]{32,64}$/.test(versionId))) {
    throw fail(`versionId for ${secretId} must be a version id of 32 to 64 characters`);
  }
  // AWSCURRENT is the default: both spellings must share one id, hence one fetch.
  const stage = versionStage === CURRENT && versionId === undefined ? undefined : versionStage;
  return { secretId, versionStage: stage, versionId };
}

/** The names this provider shows (with the common AWS ones): what it maps, and what the API documents. */
const SHOWN_NAMES = awsErrorNames([
  'ResourceNotFoundException',
  'DecryptionFailure',
  'InvalidRequestException',
  'InvalidParameterException',
  'InvalidNextTokenException',
  'InternalServiceError',
]);

/**
 * Turns an SDK error (or a batch `Errors[]` entry made into one) into the library's errors, keeping what is
 * safe of it as the cause; `credentials` are the provider's own, removed from whatever is kept.
 */
function toError(err: unknown, ref: SecretRef, credentials: readonly string[], signal?: AbortSignal): Error {
  if (err instanceof TlsSecretsError) return err;
  const parts = awsErrorParts(err, SHOWN_NAMES, credentials);
  const { name, message } = parts;
  const context = { ref: describeRef(ref), provider: ref.provider.name, cause: parts.cause };
  const fetchError = (reason: string, transient: boolean) =>
    new FetchError(`AWS Secrets Manager: ${reason}`, { ...context, transient });

  if (signal?.aborted) return fetchError('request aborted', true);
  switch (name) {
    case 'ResourceNotFoundException':
      return new SecretNotFoundError(
        parseTarget(ref.id).versionId || parseTarget(ref.id).versionStage
          ? 'AWS Secrets Manager: secret or version not found (ResourceNotFoundException)'
          : 'AWS Secrets Manager: secret not found (ResourceNotFoundException)',
        context,
      );
    case 'DecryptionFailure':
      return fetchError(
        'KMS could not decrypt the secret (DecryptionFailure): check kms:Decrypt on its key',
        false,
      );
    case 'AccessDeniedException':
      return fetchError('access denied (AccessDeniedException): check the IAM policy for this secret', false);
    case 'InvalidRequestException':
      return /delet/i.test(message)
        ? fetchError(
            'secret is scheduled for deletion (InvalidRequestException): restore it with RestoreSecret or point the reference elsewhere',
            false,
          )
        : fetchError(
            'request refused (InvalidRequestException): the secret or the version asked for cannot be read in its current state',
            false,
          );
    case 'InvalidParameterException':
      return fetchError(
        'request refused (InvalidParameterException): check the secret id, versionId and versionStage',
        false,
      );
  }
  return genericAwsError(parts, signal, fetchError);
}

function batchEntryError(entry: APIErrorType): Error {
  const error = new Error(entry.Message ?? entry.ErrorCode ?? 'batch entry failed');
  error.name = entry.ErrorCode ?? 'Error';
  return error;
}

/** Whether a batch entry answers the requested SecretId (a name, a full ARN or an ARN without its suffix). */
function answers(entry: { Name?: string; ARN?: string }, secretId: string): boolean {
  if (entry.Name === secretId || entry.ARN === secretId) return true;
  return secretId.startsWith('arn:') && entry.ARN?.startsWith(`${secretId}-`) === true;
}

export function awsSecretsManager(options: AwsSecretsManagerOptions = {}): AwsSecretsManagerProvider {
  validateAwsOptions(options, {
    provider: DEFAULT_NAME,
    clientName: 'SecretsManagerClient',
    endpointVariable: 'AWS_ENDPOINT_URL_SECRETS_MANAGER',
  });
  const name = options.name ?? DEFAULT_NAME;
  const minBatchSize = options.minBatchSize ?? DEFAULT_MIN_BATCH_SIZE;
  if (!(Number.isInteger(minBatchSize) && minBatchSize >= 2)) {
    throw new ConfigurationError('minBatchSize must be an integer of at least 2', { provider: name });
  }
  const region = options.client === undefined ? options.region : undefined;
  // Learned once per provider: an identity without BatchGetSecretValue keeps being denied.
  let batchDenied = false;
  // Until then, the batch quota was found exhausted: reads go one by one (epoch ms).
  let batchPausedUntil = 0;
  // One per provider, as the client is: the reads of one service instance.
  const pacer = new ReadPacer();
  const readAttempts = pacedAttempts(options);
  // At most CONCURRENCY reads in flight for the provider, whoever asks: the batches a throttled cycle falls
  // back from each read their secrets one by one, and together they sent 17 at once (an outside tester).
  const inFlight = new InFlightLimit(CONCURRENCY);
  const trail = new AwsCredentialTrail(options.client === undefined ? options.credentials : undefined);
  const fail = (err: unknown, ref: SecretRef, signal?: AbortSignal): Error =>
    toError(err, ref, trail.values, signal);

  const { load, close } = lazyAwsClient<Sdk, SecretsManagerClient>({
    name,
    packageName: '@aws-sdk/client-secrets-manager',
    importSdk: () => import('@aws-sdk/client-secrets-manager'),
    injected: options.client,
    build: (sdk) => new sdk.SecretsManagerClient(awsClientConfig(options) as SecretsManagerClientConfig),
  });

  const toResult = (ref: SecretRef, entry: SecretValueEntry): FetchResult => {
    const value = entry.SecretString ?? entry.SecretBinary;
    if (value === undefined) {
      throw new InvalidMaterialError(
        'AWS Secrets Manager: secret version has neither SecretString nor SecretBinary',
        {
          ref: describeRef(ref),
          provider: name,
        },
      );
    }
    return { value, ...(entry.VersionId === undefined ? {} : { version: entry.VersionId }) };
  };

  const fetchOne = async (ref: SecretRef, signal: AbortSignal): Promise<FetchResult> => {
    const target = parseTarget(ref.id);
    try {
      const { sdk, client } = await load(ref);
      // Throttled answers are retried here, paced (see ReadPacer), not by the SDK on its own backoff.
      const out = await inFlight.run(() =>
        pacer.send(readAttempts, signal, () =>
          client.send(
            failFastOnThrottling(
              trail.watch(
                new sdk.GetSecretValueCommand({
                  SecretId: target.secretId,
                  ...(target.versionId === undefined ? {} : { VersionId: target.versionId }),
                  // AWSCURRENT is the service default, but moto moves it without updating its default: name it.
                  ...(target.versionStage === undefined && target.versionId !== undefined
                    ? {}
                    : { VersionStage: target.versionStage ?? CURRENT }),
                }),
              ),
            ),
            { abortSignal: signal },
          ),
        ),
      );
      return toResult(ref, out);
    } catch (err) {
      throw fail(err, ref, signal);
    }
  };

  const settle = async (ref: SecretRef, signal: AbortSignal): Promise<FetchResult | Error> =>
    fetchOne(ref, signal).catch((err: unknown) => fail(err, ref, signal));

  /** One BatchGetSecretValue call for up to 20 secret ids; `refsById` lists the references asking for each. */
  const fetchBatch = async (
    ids: readonly string[],
    refsById: ReadonlyMap<string, SecretRef[]>,
    put: (ref: SecretRef, result: FetchResult | Error) => void,
    signal: AbortSignal,
  ): Promise<void> => {
    const all = ids.flatMap((id) => refsById.get(id) ?? []);
    const first = all[0];
    if (!first) return;
    const entries: SecretValueEntry[] = [];
    const errors: APIErrorType[] = [];
    try {
      const { sdk, client } = await load(first);
      let token: string | undefined;
      // With SecretIdList the service answers at most 20 in one page; the loop is for a service that pages anyway.
      for (let page = 0; page < 5; page++) {
        const out = await client.send(
          failFastOnThrottling(
            trail.watch(
              new sdk.BatchGetSecretValueCommand({
                SecretIdList: [...ids],
                ...(token ? { NextToken: token } : {}),
              }),
            ),
          ),
          { abortSignal: signal },
        );
        entries.push(...(out.SecretValues ?? []));
        errors.push(...(out.Errors ?? []));
        token = out.NextToken || undefined;
        if (!token) break;
      }
    } catch (err) {
      const throttled = err instanceof ThrottledAnswer;
      if (
        (throttled || (err as { name?: unknown } | null)?.name === 'AccessDeniedException') &&
        !signal.aborted
      ) {
        // Throttled: the batch quota (100/s for the whole account) is spent; GetSecretValue has 100 times
        // more. Read this batch's secrets one by one now, and keep doing so for a while.
        if (throttled) batchPausedUntil = Date.now() + BATCH_COOLDOWN_MS * (1 + Math.random());
        else batchDenied = true;
        await eachLimit(all, CONCURRENCY, async (ref) => put(ref, await settle(ref, signal)));
        return;
      }
      for (const ref of all) put(ref, fail(err, ref, signal));
      return;
    }
    const unanswered: SecretRef[] = [];
    for (const id of ids) {
      const refs = refsById.get(id) ?? [];
      const entry = entries.find((candidate) => answers(candidate, id));
      const failure = entry ? undefined : errors.find((candidate) => candidate.SecretId === id);
      for (const ref of refs) {
        if (entry) {
          try {
            put(ref, toResult(ref, entry));
          } catch (err) {
            put(ref, fail(err, ref));
          }
        } else if (failure) put(ref, fail(batchEntryError(failure), ref));
        else unanswered.push(ref);
      }
    }
    // An id the batch neither answered nor refused: ask for it alone rather than guess.
    await eachLimit(unanswered, CONCURRENCY, async (ref) => put(ref, await settle(ref, signal)));
  };

  const provider: AwsSecretsManagerProvider = {
    name,
    secret: (secretId, refOptions = {}) => {
      const target = validateTarget(secretId, refOptions, name);
      const { jsonKey, encoding } = refOptions;
      return createRef(provider, targetId(target), {
        ...(jsonKey === undefined ? {} : { jsonKey }),
        ...(encoding === undefined ? {} : { encoding }),
      });
    },
    ref: (secretId, refOptions) => provider.secret(secretId, refOptions),

    fetch: fetchOne,

    async fetchMany(refs, signal) {
      const results = new Map<SecretRef, FetchResult | Error>();
      const put = (ref: SecretRef, result: FetchResult | Error): void => {
        results.set(ref, result);
      };
      const refsById = new Map<string, SecretRef[]>();
      const singles: SecretRef[] = [];
      const batching = !batchDenied && Date.now() >= batchPausedUntil;
      for (const ref of refs) {
        const target = parseTarget(ref.id);
        if (!batching || target.versionId !== undefined || target.versionStage !== undefined) {
          singles.push(ref);
          continue;
        }
        const list = refsById.get(target.secretId);
        if (list) list.push(ref);
        else refsById.set(target.secretId, [ref]);
      }
      // A few secrets are read one by one: as fast (they go out together), less quota (see the header).
      if (refsById.size < minBatchSize) {
        for (const list of refsById.values()) singles.push(...list);
        refsById.clear();
      }
      const tasks: (() => Promise<void>)[] = [
        ...chunk([...refsById.keys()], BATCH_LIMIT).map(
          (ids) => () => fetchBatch(ids, refsById, put, signal),
        ),
        ...singles.map((ref) => async () => put(ref, await settle(ref, signal))),
      ];
      await eachLimit(tasks, CONCURRENCY, (task) => task());
      return refs.map((ref) => results.get(ref) ?? fail(new Error('no result'), ref, signal));
    },

    async currentVersion(ref, signal) {
      const target = parseTarget(ref.id);
      try {
        const { sdk, client } = await load(ref);
        const out = await client.send(
          trail.watch(new sdk.DescribeSecretCommand({ SecretId: target.secretId })),
          {
            abortSignal: signal,
          },
        );
        if (out.DeletedDate) {
          throw new FetchError(
            'AWS Secrets Manager: secret is scheduled for deletion (DeletedDate set): restore it with RestoreSecret or point the reference elsewhere',
            { ref: describeRef(ref), provider: name, transient: false },
          );
        }
        // The resolver probes again just after a scheduled rotation; pinned versions never change.
        const changesAt = target.versionId === undefined ? out.NextRotationDate : undefined;
        const versions = out.VersionIdsToStages ?? {};
        let version: string | undefined;
        if (target.versionId !== undefined) {
          const stages = versions[target.versionId];
          const stageHeld = target.versionStage === undefined || stages?.includes(target.versionStage);
          version = stages && stageHeld ? target.versionId : undefined;
        } else {
          const stage = target.versionStage ?? CURRENT;
          version = Object.entries(versions).find(([, stages]) => stages.includes(stage))?.[0];
        }
        return changesAt ? { version, changesAt } : version;
      } catch (err) {
        throw fail(err, ref, signal);
      }
    },

    close,
  };

  // Credentials and the client stay out of logs and JSON.
  const shown = region === undefined ? `name: '${name}'` : `name: '${name}', region: '${region}'`;
  Object.defineProperty(provider, inspect.custom, { value: () => `AwsSecretsManagerProvider { ${shown} }` });
  Object.defineProperty(provider, 'toJSON', {
    value: () => (region === undefined ? { provider: name } : { provider: name, region }),
  });
  return provider;
}
