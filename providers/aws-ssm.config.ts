/** SSM Parameter Store in a config file. Credentials always come from the SDK's chain, never the file. */
import type { ProviderAdapter } from '../config/adapter.js';
import { AWS_OPTION_FIELDS, defined, ID_REF_FIELDS, refOptions } from './_config.js';
import { type SsmParameterStoreProvider, ssmParameterStore } from './aws-ssm.js';

export interface AwsSsmProviderConfig {
  type: 'aws-ssm';
  /** Default: the SDK's chain (`AWS_REGION`, shared config). */
  region?: string;
  endpoint?: string;
  maxAttempts?: number;
  requestTimeoutMs?: number;
  /** Default true: SecureString values are decrypted. */
  withDecryption?: boolean;
}

export const awsSsmAdapter: ProviderAdapter<Omit<AwsSsmProviderConfig, 'type'>, SsmParameterStoreProvider> = {
  type: 'aws-ssm',
  optionFields: { ...AWS_OPTION_FIELDS, withDecryption: 'boolean' },
  refFields: ID_REF_FIELDS,
  refRequired: ['id'],
  create: (options, { name }) => ssmParameterStore(defined({ ...options, name })),
  ref: (provider, entry) => provider.ref(entry.id as string, refOptions(entry)),
};
