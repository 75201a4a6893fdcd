/**
 * Vitest globalSetup: the Vault-API server the Vault suites run against, provided as `vaultAddr` and
 * `vaultToken`. A real HashiCorp Vault when VAULT_ADDR and VAULT_TOKEN are set; otherwise a real OpenBao dev
 * server started here (test/helpers/bao.ts, installed by scripts/setup-bao.sh). Without either, `vaultAddr` is
 * `''` with a reason and the Vault tests skip visibly; with REQUIRE_BAO=1 (CI) that fails the run instead.
 * Prints once which server the suite runs against.
 */
import type { TestProject } from 'vitest/node';
import { describeServer, startBao } from '../helpers/bao.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of the Vault-API server, or `''` when there is none. */
    vaultAddr: string;
    /** Its root token. */
    vaultToken: string;
    /** e.g. `OpenBao 2.7.2 (real) at http://127.0.0.1:PORT`, or why there is no server. */
    vaultServer: string;
    /** True when the server is an operator's (VAULT_ADDR): tests must not seal or restart it. */
    vaultExternal: boolean;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.VAULT_ADDR?.replace(/\/+$/, '');
  if (external && process.env.VAULT_TOKEN) {
    const line = `${await describeServer(external)} (real) at ${external}`;
    console.log(`vault: ${line}`);
    project.provide('vaultAddr', external);
    project.provide('vaultToken', process.env.VAULT_TOKEN);
    project.provide('vaultServer', line);
    project.provide('vaultExternal', true);
    return async () => {};
  }
  const bao = await startBao({ install: true });
  if (typeof bao === 'string') {
    if (process.env.REQUIRE_BAO === '1') throw new Error(`OpenBao is required (REQUIRE_BAO=1) but ${bao}`);
    console.warn(`vault: none (${bao}): the Vault tests will be skipped`);
    project.provide('vaultAddr', '');
    project.provide('vaultToken', '');
    project.provide('vaultServer', `none: ${bao}`);
    project.provide('vaultExternal', false);
    return async () => {};
  }
  const line = `${bao.description} (real) at ${bao.url}`;
  console.log(`vault: ${line}`);
  project.provide('vaultAddr', bao.url);
  project.provide('vaultToken', bao.rootToken);
  project.provide('vaultServer', line);
  project.provide('vaultExternal', false);
  return () => bao.close();
}
