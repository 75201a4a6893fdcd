/**
 * A missing optional peer is a ConfigurationError naming the package, on every path that loads one. Each case
 * runs in a child process whose module resolution really fails for that package: a resolve hook renames the
 * specifier to one that does not exist, so Node's own resolver throws ERR_MODULE_NOT_FOUND, as it does for
 * an application that never installed the SDK.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;

/** Registers a resolve hook that makes `packageName` (and its subpaths) unresolvable. */
function hidden(packageName: string): string {
  const hook = `export async function resolve(specifier, context, next) {
    if (specifier === ${JSON.stringify(packageName)} || specifier.startsWith(${JSON.stringify(`${packageName}/`)}))
      return next(specifier.replace(${JSON.stringify(packageName)}, ${JSON.stringify(`${packageName}-not-installed`)}), context);
    return next(specifier, context);
  }`;
  const register = `import { register } from 'node:module';
    register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)});`;
  return `data:text/javascript,${encodeURIComponent(register)}`;
}

/** Runs `body` (a module that sets `globalThis.attempt` to a promise) and reports how the promise rejected. */
async function failureWithout(packageName: string, body: string) {
  const script = `${body}
    const error = await attempt.then(() => undefined, (e) => e);
    console.log(JSON.stringify(error && { name: error.name, code: error.code, message: error.message, cause: error.cause?.code }));`;
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', '--import', hidden(packageName), '--input-type=module', '-e', script],
    { cwd: root, encoding: 'utf8', timeout: 60_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as {
    name: string;
    code: string;
    message: string;
  } | null;
}

describe('a missing optional package', () => {
  it.each([
    [
      '@aws-sdk/client-secrets-manager',
      `import { awsSecretsManager } from './providers/aws-secrets-manager.ts';
       const sm = awsSecretsManager({ region: 'eu-west-1' });
       const attempt = sm.fetch(sm.secret('app/tls'), new AbortController().signal);`,
    ],
    [
      '@aws-sdk/client-ssm',
      `import { ssmParameterStore } from './providers/aws-ssm.ts';
       const ssm = ssmParameterStore({ region: 'eu-west-1' });
       const attempt = ssm.fetch(ssm.ref('/app/tls'), new AbortController().signal);`,
    ],
    [
      'node-vault',
      `import { vault } from './providers/vault/index.ts';
       const v = vault({ endpoint: 'http://127.0.0.1:1', auth: { token: 't' } });
       const attempt = v.fetch(v.kv('secret/app', { field: 'cert' }), new AbortController().signal);`,
    ],
  ])('%s: the fetch is a ConfigurationError naming it', async (packageName, body) => {
    const error = await failureWithout(packageName, body);
    expect(error).toMatchObject({ name: 'ConfigurationError', code: 'CONFIGURATION' });
    expect(error?.message).toContain(`"${packageName}"`);
    expect(error?.message).toContain(`npm install ${packageName}`);
  });

  it('the hook really hides the package: importing it fails to resolve', async () => {
    const error = await failureWithout('node-vault', `const attempt = import('node-vault');`);
    expect(error?.code).toBe('ERR_MODULE_NOT_FOUND');
  });

  it('the provider kit loads with no optional package installed', async () => {
    const packages = [
      '@aws-sdk/client-secrets-manager',
      '@aws-sdk/client-ssm',
      'node-vault',
      'undici',
      'yaml',
    ];
    const hooks = packages.flatMap((name) => ['--import', hidden(name)]);
    const script = `const kit = await import('./src/provider-kit.ts');
      const suite = await import('./src/testing/index.ts');
      console.log(JSON.stringify([typeof kit.contentVersion, typeof suite.providerConformance]));`;
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', ...hooks, '--input-type=module', '-e', script],
      { cwd: root, encoding: 'utf8', timeout: 60_000 },
    );
    expect(JSON.parse(stdout.trim())).toEqual(['function', 'function']);
  });
});
