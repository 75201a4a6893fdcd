/**
 * Leak class 4: YAML warnings. The `yaml` package's `parse()` hands each warning to `process.emitWarning`,
 * which prints a code frame of the source line on stderr: `pass: !env <value>` or `secretId: !secret <value>`
 * showed the value, from the CLI and from createResolverFromConfig(). The library must print nothing, and
 * report problems by line and kind.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createResolverFromConfig } from '../../config/index.js';
import { ConfigurationError } from '../../src/index.js';
import { Canaries, canaryValue, Views } from './canaries.js';
import { runCli } from './cli-run.js';

describe('YAML configs: nothing printed, nothing quoted', () => {
  const canaries = new Canaries();
  const pass = canaries.plant('passphrase', canaryValue('yamlpass'));
  const secretId = canaries.plant('approle secret_id', canaryValue('yamlsecretid'));
  let dir: string;
  const files: Record<string, string> = {};
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tls-secrets-yaml-'));
    const write = async (name: string, text: string) => {
      files[name] = join(dir, name);
      await writeFile(files[name], text);
    };
    await write(
      'tags.yaml',
      [
        'providers:',
        '  v:',
        '    type: vault',
        '    endpoint: http://127.0.0.1:1',
        `    auth: { appRole: { roleId: role, secretId: !secret ${secretId} } }`,
        '  m: { type: memory }',
        'tls:',
        `  passphrase: !env ${pass}`,
        '  cert: m:cert',
        '',
      ].join('\n'),
    );
    // An unknown directive is a warning the parser would print with its line.
    await write(
      'directive.yaml',
      [`%CANARY ${pass}`, '---', 'providers: { m: { type: memory } }', 'tls: { cert: m:cert }', ''].join(
        '\n',
      ),
    );
    await write(
      'broken.yaml',
      ['providers: { m: { type: memory } }', `tls: { passphrase: "${pass}`, ''].join('\n'),
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('createResolverFromConfig prints nothing and its errors quote nothing', async () => {
    const views = new Views();
    const printed: string[] = [];
    const warned: unknown[] = [];
    const onWarning = (warning: unknown) => warned.push(warning);
    const writes = { out: process.stdout.write, err: process.stderr.write };
    const capture = (chunk: unknown) => {
      printed.push(String(chunk));
      return true;
    };
    process.on('warning', onWarning);
    process.stdout.write = capture as typeof process.stdout.write;
    process.stderr.write = capture as typeof process.stderr.write;
    let warnings: readonly string[] = [];
    try {
      for (const name of ['tags.yaml', 'broken.yaml']) {
        const error = await views.attempt(name, () => createResolverFromConfig(files[name] ?? ''));
        expect(error, name).toBeInstanceOf(ConfigurationError);
      }
      const configured = await createResolverFromConfig(files['directive.yaml'] ?? '');
      warnings = configured.warnings;
      views.value('directive.yaml warnings', warnings);
      await configured.close();
    } finally {
      process.stdout.write = writes.out;
      process.stderr.write = writes.err;
      process.off('warning', onWarning);
    }
    views.text('process stdout+stderr', printed.join(''));
    views.value('process warnings', warned);
    const hits = views.scan(canaries);
    console.info(
      `[canary yaml] ${views.views.length} views x ${canaries.needles.length} needles: ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
    expect(warned).toEqual([]);
    expect(printed).toEqual([]);
    expect(warnings).toEqual([expect.stringMatching(/line 1 \(BAD_DIRECTIVE\) YAML warning/)]);
  });

  it('the CLI prints warnings and errors by line and kind, never the source', async () => {
    const runs = await Promise.all([
      runCli(['check', files['tags.yaml'] ?? '']),
      runCli(['check', files['tags.yaml'] ?? '', '--json']),
      runCli(['check', files['directive.yaml'] ?? '']),
    ]);
    const views = new Views();
    for (const [i, run] of runs.entries()) {
      views.text(`cli run ${i} stdout`, run.stdout);
      views.text(`cli run ${i} stderr`, run.stderr);
    }
    const hits = views.scan(canaries);
    console.info(
      `[canary yaml cli] ${views.views.length} views x ${canaries.needles.length} needles: ${hits.length} hits`,
    );
    expect(hits).toEqual([]);
    expect(runs[0]?.stderr).toMatch(/line 5 \(TAG_RESOLVE_FAILED\)/);
    expect(runs[2]?.stderr).toMatch(/warning: config .* line 1 \(BAD_DIRECTIVE\)/);
    expect(runs.map((run) => run.code)).toEqual([2, 2, 1]);
  });
});
