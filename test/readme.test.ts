/**
 * The README's quick start runs as written: its shell block's openssl command, then its `quickstart.mts`
 * block, in an empty directory that `npm init -y` would make (a CommonJS package.json). Only what an
 * install provides is substituted: the `npm install` line, and the package specifiers, which point at the
 * sources here instead of a build in node_modules.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
// tsx as `npm install tsx` would provide it (the temp directory has no node_modules).
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;

function quickStart(readme: string): { shell: string; code: string } {
  const section = readme.slice(
    readme.indexOf('## Quick start'),
    readme.indexOf('\n## ', readme.indexOf('## Quick start') + 1),
  );
  const block = (lang: string) => {
    const start = section.indexOf(`\`\`\`${lang}\n`);
    expect(start, `a ${lang} block in the quick start`).toBeGreaterThan(-1);
    return section.slice(start + lang.length + 4, section.indexOf('```', start + lang.length + 4));
  };
  return { shell: block('sh'), code: block('ts') };
}

describe('README quick start', () => {
  it('runs as written and prints what the README says', async () => {
    const { shell, code } = quickStart(await readFile(join(root, 'README.md'), 'utf8'));
    const dir = await mkdtemp(join(tmpdir(), 'tls-secrets-readme-'));
    try {
      await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'quickstart', type: 'commonjs' }));
      const commands = shell
        .replace(/\\\n\s*/g, ' ')
        .split('\n')
        .filter((line) => line.trim() !== '' && !line.startsWith('npm '));
      expect(commands).toHaveLength(1);
      execFileSync('sh', ['-c', commands[0] as string], { cwd: dir, stdio: 'pipe', timeout: 30_000 });
      const source = code
        .replace(
          "from 'tls-secrets/providers/memory'",
          `from ${JSON.stringify(join(root, 'providers', 'memory.ts'))}`,
        )
        .replace("from 'tls-secrets'", `from ${JSON.stringify(join(root, 'src', 'index.ts'))}`);
      expect(source).not.toContain("'tls-secrets");
      await writeFile(join(dir, 'quickstart.mts'), source);
      const output = execFileSync(process.execPath, ['--import', tsx, 'quickstart.mts'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, NODE_OPTIONS: '' },
      });
      expect(output).toBe("generation 1 changed [ 'key', 'cert' ]\nhello over TLS\nserving\n");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
