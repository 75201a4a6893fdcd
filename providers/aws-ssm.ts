/**
 * AWS Systems Manager Parameter Store: SecureString (decrypted through KMS by default), String and StringList
 * parameters, with version and label selectors written as AWS writes them (`/svc/tls/cert:3`,
 * `/svc/tls/cert:blue`). Many parameters are read with GetParameters (10 names per call); a version check is
 * a GetParameter without decryption, which costs no KMS request. The SDK is an optional peer loaded on first use.
 * Every call spends the account's one throughput quota (40/s standard): a throttled one is retried by the
 * provider, paced (ReadPacer, as Secrets Manager's reads), not by the SDK on its own backoff.
 */
import { inspect } from 'node:util';
import type { Parameter, SSMClient, SSMClientConfig } from '@aws-sdk/client-ssm';
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
} from '../src/provider.js';
import {
  AwsCredentialTrail,
  awsClientConfig,
  awsErrorNames,
  awsErrorParts,
  eachLimit,
  failFastOnThrottling,
  genericAwsError,
  InFlightLimit,
  lazyAwsClient,
  pacedAttempts,
  ReadPacer,
  validateAwsOptions,
} from './_aws.js';

type Sdk = typeof import('@aws-sdk/client-ssm');

interface CommonOptions {
  /** Provider name shown in errors, events and status. Default `aws-ssm`. */
  name?: string;
  /**
   * Ask for SecureString values decrypted (`WithDecryption`). Default true; with false a SecureString reads
   * as its ciphertext, which no TLS field can use: only for String parameters under a policy without KMS.
   */
  withDecryption?: boolean;
}

/** The provider builds and owns its client (destroyed on `close()`). */
export interface SsmParameterStoreConfigOptions extends CommonOptions {
  /** AWS region, e.g. `eu-west-1`. Default: the SDK's chain (`AWS_REGION`, shared config, EC2 metadata). */
  region?: string;
  /**
   * Endpoint URL, e.g. a moto or LocalStack server. Default: the SDK's own lookup (`AWS_ENDPOINT_URL_SSM`,
   * `AWS_ENDPOINT_URL`, shared config), else the regional AWS endpoint.
   */
  endpoint?: string;
  /** Static credentials or a credential provider. Default: the SDK default chain (env, SSO, profile, IMDS, …). */
  credentials?: SSMClientConfig['credentials'];
  /** Attempts per call, first included; the SDK backs off on throttling, 5xx and timeouts. Default 3. */
  maxAttempts?: number;
  /** Timeout of one HTTP attempt in milliseconds. Default 5000. */
  requestTimeoutMs?: number;
  client?: never;
}

/** The provider uses a client you configured and leaves it open on `close()`. */
export interface SsmParameterStoreClientOptions extends CommonOptions {
  client: SSMClient;
  region?: never;
  endpoint?: never;
  credentials?: never;
  maxAttempts?: never;
  requestTimeoutMs?: never;
}

export type SsmParameterStoreOptions = SsmParameterStoreConfigOptions | SsmParameterStoreClientOptions;

export interface SsmParameterStoreProvider extends Provider {
  /**
   * A reference to a parameter by name or ARN, optionally with a selector: `name:3` (version 3) or
   * `name:label` (the version carrying the label). References to the same name and selector share
   * one read whatever their `jsonKey`/`encoding`. Creating it does no I/O.
   */
  ref(name: string, options?: RefOptions): SecretRef;
  fetchMany(refs: readonly SecretRef[], signal: AbortSignal): Promise<(FetchResult | Error)[]>;
  currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | undefined>;
  /** Destroys the client the provider built; an injected client stays open. */
  close(): Promise<void>;
}

const DEFAULT_NAME = 'aws-ssm';
/** The API's limit for GetParameters `Names`. */
const BATCH_LIMIT = 10;
/** Single reads in flight at once when a batch cannot be used. */
const CONCURRENCY = 8;

interface Target {
  /** Parameter name or ARN, without selector. */
  readonly name: string;
  readonly version?: number;
  readonly label?: string;
}

/**
 * Splits `name[:selector]`. An ARN has colons of its own, all before `parameter/`; a selector's colon is the
 * last one and comes after the last `/` (parameter names cannot contain `:`).
 */
function parseTarget(id: string): Target {
  const colon = id.lastIndexOf(':');
  if (colon < 0 || colon < id.lastIndexOf('/')) return { name: id };
  const selector = id.slice(colon + 1);
  const name = id.slice(0, colon);
  return /^\d+$/.test(selector) ? { name, version: Number(selector) } : { name, label: selector };
}

function validateName(id: unknown, provider: string): Target {
  const fail = (reason: string) => new ConfigurationError(reason, { provider });
  if (typeof id !== 'string' || id.length === 0 || id.length > 2048) {
    throw fail('parameter name must be a name or ARN of 1 to 2048 characters');
  }
  const target = parseTarget(id);
  const arn = /^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter\/./.test(target.name);
  // Parameter names: letters, digits and . - _ /, levels separated by "/" (AWS's own rule). The name is not
  // echoed: a value typed where a reference was meant may be a secret.
  if (!arn && !/^[A-Za-z0-9_./-]+$/.test(target.name)) {
    throw fail(
      `parameter name may hold only letters, digits and . - _ / (and one :version or :label selector)`,
    );
  }
  if (target.version !== undefined && !(target.version >= 1 && Number.isSafeInteger(target.version))) {
    throw fail(`version selector must be a version number from 1`);
  }
  if (
    target.label !== undefined &&
    (!/^[A-Za-z0-9_.-]{1,100}$/.test(target.label) || /^(aws|ssm|\d)/i.test(target.label))
  ) {
    throw fail(
      `label selector must be 1 to 100 letters, digits, . - or _, not starting with a digit, aws or ssm`,
    );
  }
  return target;
}

/** KMS failures as SSM reports them: the parameter exists, its key is the problem. */
const KMS_ERRORS = new Set([
  'KMSAccessDeniedException',
  'KMSAccessDenied',
  'KMSDisabledException',
  'KMSInvalidStateException',
  'KMSNotFoundException',
  'KMSKeyNotAccessibleException',
  'KMSOptInRequired',
  'InvalidCiphertextException',
  'IncorrectKeyException',
]);

/** The names this provider shows (with the common AWS ones): what it maps, and what the API documents. */
const SHOWN_NAMES = awsErrorNames([
  'ParameterNotFound',
  'ParameterVersionNotFound',
  'InvalidKeyId',
  'InvalidParameters',
  'InternalServerError',
  ...KMS_ERRORS,
]);

/**
 * Turns an SDK error into the library's errors, keeping what is safe of it as the cause; `credentials` are the
 * provider's own, removed from whatever is kept.
 */
function toError(err: unknown, ref: SecretRef, credentials: readonly string[], signal?: AbortSignal): Error {
  if (err instanceof TlsSecretsError) return err;
  const parts = awsErrorParts(err, SHOWN_NAMES, credentials);
  const { name, message } = parts;
  const context = { ref: describeRef(ref), provider: ref.provider.name, cause: parts.cause };
  const fetchError = (reason: string, transient: boolean) =>
    new FetchError(`AWS SSM Parameter Store: ${reason}`, { ...context, transient });

  if (signal?.aborted) return fetchError('request aborted', true);
  switch (name) {
    case 'ParameterNotFound':
      return new SecretNotFoundError(
        parseTarget(ref.id).label === undefined
          ? 'AWS SSM Parameter Store: parameter not found (ParameterNotFound)'
          : 'AWS SSM Parameter Store: parameter or label not found (ParameterNotFound)',
        context,
      );
    case 'ParameterVersionNotFound':
      return new SecretNotFoundError(
        'AWS SSM Parameter Store: parameter version not found (ParameterVersionNotFound)',
        context,
      );
    case 'InvalidKeyId':
      return fetchError(
        'the KMS key of this SecureString is not usable (InvalidKeyId): check that the key exists, is enabled, and that kms:Decrypt on it is allowed',
        false,
      );
    case 'AccessDeniedException':
      // SSM reports a denied kms:Decrypt as AccessDeniedException too; its message names KMS.
      return /\bkms\b|ciphertext|customer master key/i.test(message)
        ? fetchError(
            'KMS refused to decrypt the SecureString (AccessDeniedException): allow kms:Decrypt on its key',
            false,
          )
        : fetchError(
            'access denied (AccessDeniedException): check the IAM policy for this parameter (ssm:GetParameter, ssm:GetParameters)',
            false,
          );
    case 'ValidationException':
    case 'InvalidParameters':
      return fetchError(`request refused (${name}): check the parameter name and its selector`, false);
  }
  if (KMS_ERRORS.has(name)) {
    return fetchError(
      `KMS could not decrypt the SecureString (${name}): check that its key is enabled and that kms:Decrypt on it is allowed`,
      false,
    );
  }
  return genericAwsError(parts, signal, fetchError);
}

/** Whether a GetParameters entry answers the requested name (a name or an ARN) and selector. */
function answers(entry: Parameter, target: Target): boolean {
  if (entry.Name !== target.name && entry.ARN !== target.name) return false;
  if (target.version !== undefined && entry.Version !== target.version) return false;
  // AWS echoes the selector asked for (`:3`, `:blue`); moto does not, hence one selector per name per call.
  const selector = target.version ?? target.label;
  return entry.Selector === undefined || selector === undefined || entry.Selector === `:${selector}`;
}

/** The parameter a name or ARN points at, the same for both spellings: `/svc/tls/cert`, `/top`. */
function parameterKey(name: string): string {
  const at = name.startsWith('arn:') ? name.indexOf(':parameter') : -1;
  const bare = at < 0 ? name : name.slice(at + ':parameter'.length);
  return bare.startsWith('/') ? bare : `/${bare}`;
}

/**
 * Splits targets into GetParameters calls of at most 10 names, never two selectors of one parameter in the
 * same call: answers carry the plain name (moto omits `Selector`), so one name per call keeps them apart.
 */
function planBatches(ids: readonly string[]): string[][] {
  const batches: { ids: string[]; names: Set<string> }[] = [];
  for (const id of ids) {
    const name = parameterKey(parseTarget(id).name);
    let batch = batches.find((b) => b.ids.length < BATCH_LIMIT && !b.names.has(name));
    if (!batch) {
      batch = { ids: [], names: new Set() };
      batches.push(batch);
    }
    batch.ids.push(id);
    batch.names.add(name);
  }
  return batches.map((b) => b.ids);
}

/**
 * The version of a parameter as the resolver compares it: its number and when it was written. A parameter
 * deleted and created again starts at version 1 again: the number alone made the new value look unchanged,
 * and the old one kept serving (a dropped CA kept trusting) without an error.
 */
function versionOf(parameter: Parameter): string | undefined {
  if (parameter.Version === undefined) return undefined;
  const written = parameter.LastModifiedDate?.getTime();
  return written === undefined || Number.isNaN(written)
    ? String(parameter.Version)
    : `${parameter.Version}@${written}`;
}

export function ssmParameterStore(options: SsmParameterStoreOptions = {}): SsmParameterStoreProvider {
  validateAwsOptions(options, {
    provider: DEFAULT_NAME,
    clientName: 'SSMClient',
    endpointVariable: 'AWS_ENDPOINT_URL_SSM',
  });
  if (options.withDecryption !== undefined && typeof options.withDecryption !== 'boolean') {
    throw new ConfigurationError('withDecryption must be true or false', {
      provider: options.name ?? DEFAULT_NAME,
    });
  }
  const name = options.name ?? DEFAULT_NAME;
  const region = options.client === undefined ? options.region : undefined;
  const withDecryption = options.withDecryption ?? true;
  // Learned once per provider: an identity allowed ssm:GetParameter but not ssm:GetParameters stays denied.
  let batchDenied = false;
  // One per provider, as the client is: every call of one service instance, reads and version checks alike,
  // for they spend one throughput quota of the account.
  const pacer = new ReadPacer();
  const attempts = pacedAttempts(options);
  // And at most CONCURRENCY of them in flight: a refresh checks each parameter's version with its own call.
  const inFlight = new InFlightLimit(CONCURRENCY);
  const send = <T>(signal: AbortSignal, call: () => Promise<T>): Promise<T> =>
    inFlight.run(() => pacer.send(attempts, signal, call));
  const trail = new AwsCredentialTrail(options.client === undefined ? options.credentials : undefined);
  const fail = (err: unknown, ref: SecretRef, signal?: AbortSignal): Error =>
    toError(err, ref, trail.values, signal);
  const { load, close } = lazyAwsClient<Sdk, SSMClient>({
    name,
    packageName: '@aws-sdk/client-ssm',
    importSdk: () => import('@aws-sdk/client-ssm'),
    injected: options.client,
    build: (sdk) => new sdk.SSMClient(awsClientConfig(options) as SSMClientConfig),
  });

  const toResult = (ref: SecretRef, parameter: Parameter | undefined): FetchResult => {
    if (parameter?.Value === undefined) {
      throw new InvalidMaterialError('AWS SSM Parameter Store: the answer holds no parameter value', {
        ref: describeRef(ref),
        provider: name,
      });
    }
    // A StringList of PEM blocks becomes a PEM bundle: items one per line, not comma-joined.
    const value = parameter.Type === 'StringList' ? parameter.Value.split(',').join('\n') : parameter.Value;
    const version = versionOf(parameter);
    return { value, ...(version === undefined ? {} : { version }) };
  };

  const getOne = async (ref: SecretRef, signal: AbortSignal, decrypt: boolean): Promise<Parameter> => {
    const { sdk, client } = await load(ref);
    // Throttled answers are retried here, paced (see ReadPacer), not by the SDK on its own backoff.
    const out = await send(signal, () =>
      client.send(
        failFastOnThrottling(
          trail.watch(new sdk.GetParameterCommand({ Name: ref.id, WithDecryption: decrypt })),
        ),
        { abortSignal: signal },
      ),
    );
    return out.Parameter ?? {};
  };

  const fetchOne = async (ref: SecretRef, signal: AbortSignal): Promise<FetchResult> => {
    try {
      return toResult(ref, await getOne(ref, signal, withDecryption));
    } catch (err) {
      throw fail(err, ref, signal);
    }
  };

  const settle = (ref: SecretRef, signal: AbortSignal): Promise<FetchResult | Error> =>
    fetchOne(ref, signal).catch((err: unknown) => fail(err, ref, signal));

  /** One GetParameters call; `refsById` lists the references asking for each id. */
  const fetchBatch = async (
    ids: readonly string[],
    refsById: ReadonlyMap<string, SecretRef[]>,
    put: (ref: SecretRef, result: FetchResult | Error) => void,
    signal: AbortSignal,
  ): Promise<void> => {
    const all = ids.flatMap((id) => refsById.get(id) ?? []);
    const first = all[0];
    if (!first) return;
    let found: Parameter[];
    let invalid: string[];
    try {
      const { sdk, client } = await load(first);
      const out = await send(signal, () =>
        client.send(
          failFastOnThrottling(
            trail.watch(new sdk.GetParametersCommand({ Names: [...ids], WithDecryption: withDecryption })),
          ),
          { abortSignal: signal },
        ),
      );
      found = out.Parameters ?? [];
      invalid = out.InvalidParameters ?? [];
    } catch (err) {
      const error = fail(err, first, signal);
      const denied = (err as { name?: unknown } | null)?.name === 'AccessDeniedException';
      const kms = error instanceof FetchError && /KMS/.test(error.message);
      if (denied && !kms && !signal.aborted) batchDenied = true;
      // A key problem fails the whole call: single reads tell which parameter it belongs to.
      if ((denied || kms) && !signal.aborted) {
        await eachLimit(all, CONCURRENCY, async (ref) => put(ref, await settle(ref, signal)));
        return;
      }
      for (const ref of all) put(ref, fail(err, ref, signal));
      return;
    }
    const unanswered: SecretRef[] = [];
    for (const id of ids) {
      const target = parseTarget(id);
      const entry = found.find((candidate) => answers(candidate, target));
      for (const ref of refsById.get(id) ?? []) {
        if (entry) {
          try {
            put(ref, toResult(ref, entry));
          } catch (err) {
            put(ref, fail(err, ref));
          }
        } else if (invalid.includes(id)) {
          const missing = new Error(`${id} is in InvalidParameters`);
          missing.name = target.version === undefined ? 'ParameterNotFound' : 'ParameterVersionNotFound';
          put(ref, fail(missing, ref));
        } else unanswered.push(ref);
      }
    }
    // An id the batch neither answered nor listed as invalid: ask for it alone rather than guess.
    await eachLimit(unanswered, CONCURRENCY, async (ref) => put(ref, await settle(ref, signal)));
  };

  const provider: SsmParameterStoreProvider = {
    name,
    ref: (parameterName, refOptions = {}) => {
      validateName(parameterName, name);
      const { jsonKey, encoding } = refOptions;
      return createRef(provider, parameterName, {
        ...(jsonKey === undefined ? {} : { jsonKey }),
        ...(encoding === undefined ? {} : { encoding }),
      });
    },

    fetch: fetchOne,

    async fetchMany(refs, signal) {
      const results = new Map<SecretRef, FetchResult | Error>();
      const put = (ref: SecretRef, result: FetchResult | Error): void => {
        results.set(ref, result);
      };
      const refsById = new Map<string, SecretRef[]>();
      for (const ref of refs) {
        const list = refsById.get(ref.id);
        if (list) list.push(ref);
        else refsById.set(ref.id, [ref]);
      }
      const batches = batchDenied
        ? [...refsById.keys()].map((id) => [id])
        : planBatches([...refsById.keys()]);
      // A batch of one costs the same call count as GetParameter, which is the narrower IAM action.
      const tasks = batches.map((ids) =>
        ids.length === 1
          ? async () => {
              for (const ref of refsById.get(ids[0] as string) ?? []) put(ref, await settle(ref, signal));
            }
          : () => fetchBatch(ids, refsById, put, signal),
      );
      await eachLimit(tasks, CONCURRENCY, (task) => task());
      return refs.map((ref) => results.get(ref) ?? fail(new Error('no result'), ref, signal));
    },

    async currentVersion(ref, signal) {
      // A pinned number is checked too: a parameter deleted and created again gives its numbers to other
      // values, and a deleted one has none (the probe's not-found is reported; the served value stays).
      try {
        // Without decryption: SSM asks KMS nothing, and the (encrypted) value is dropped here.
        return versionOf(await getOne(ref, signal, false));
      } catch (err) {
        throw fail(err, ref, signal);
      }
    },

    close,
  };

  // Credentials and the client stay out of logs and JSON.
  const shown = region === undefined ? `name: '${name}'` : `name: '${name}', region: '${region}'`;
  Object.defineProperty(provider, inspect.custom, { value: () => `SsmParameterStoreProvider { ${shown} }` });
  Object.defineProperty(provider, 'toJSON', {
    value: () => (region === undefined ? { provider: name } : { provider: name, region }),
  });
  return provider;
}
