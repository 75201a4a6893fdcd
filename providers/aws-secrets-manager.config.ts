/** AWS Secrets Manager in a config file. Credentials always come from the SDK's chain, never the file. */
import type { ProviderAdapter } from '../config/adapter.js';
import { AWS_OPTION_FIELDS, defined, ID_REF_FIELDS, refOptions } from './_config.js';
import { type AwsSecretsManagerProvider, awsSecretsManager } from './aws-secrets-manager.js';

export interface AwsSecretsManagerProviderConfig {
  type: 'aws-secrets-manager';
  /** Default: the SDK's chain (`AWS_REGION`, shared config). */
  region?: string;
  endpoint?: string;
  maxAttempts?: number;
  requestTimeoutMs?: number;
  /** Fewest secrets worth one BatchGetSecretValue call (default 9; see the provider's docs). */
  minBatchSize?: number;
}

export const awsSecretsManagerAdapter: ProviderAdapter<
  Omit<AwsSecretsManagerProviderConfig, 'type'>,
  AwsSecretsManagerProvider
> = {
  type: 'aws-secrets-manager',
  optionFields: { ...AWS_OPTION_FIELDS, minBatchSize: 'integer' },
  refFields: { ...ID_REF_FIELDS, versionStage: 'string', versionId: 'string' },
  refRequired: ['id'],
  create: (options, { name }) => awsSecretsManager(defined({ ...options, name })),
  ref: (provider, entry) =>
    provider.secret(
      entry.id as string,
      defined({
        ...refOptions(entry),
        versionStage: entry.versionStage as string | undefined,
        versionId: entry.versionId as string | undefined,
      }),
    ),
};
