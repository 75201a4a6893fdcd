/**
 * The import graph: core (src/) never reaches an adapter (providers/), by a static import, an export-from,
 * a type import, `import()` or `require()`. The config layer (config/) is where providers meet core.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));

function filesUnder(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && /\.(ts|mts|cts|js)$/.test(entry.name))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

/** Every module specifier a file names, read from its syntax tree (comments and strings do not count). */
function specifiers(file: string): string[] {
  const source = ts.createSourceFile(
    file,
    readFileSync(join(root, file), 'utf8'),
    ts.ScriptTarget.Latest,
    true,
  );
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) found.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expression = node.moduleReference.expression;
      if (ts.isStringLiteral(expression)) found.push(expression.text);
    } else if (ts.isCallExpression(node)) {
      const isImport = node.expression.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(node.expression) && node.expression.text === 'require';
      const [first] = node.arguments;
      if (isImport || isRequire) {
        // A computed specifier cannot be checked: it is refused outright in core.
        found.push(first && ts.isStringLiteralLike(first) ? first.text : '<computed>');
      }
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const literal = node.argument.literal;
      if (ts.isStringLiteral(literal)) found.push(literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The edges from `file` into providers/ (resolved paths), and computed specifiers. */
function providerEdges(file: string): string[] {
  return specifiers(file)
    .filter((specifier) => specifier === '<computed>' || specifier.startsWith('.'))
    .map((specifier) =>
      specifier === '<computed>' ? specifier : relative(root, resolve(root, dirname(file), specifier)),
    )
    .filter((target) => target === '<computed>' || target === 'providers' || target.startsWith('providers/'));
}

describe('import graph', () => {
  const core = filesUnder('src');

  it('reads static, type, dynamic and require edges (checked on the config layer, which has them)', () => {
    expect(providerEdges('config/registry.ts')).toContain('providers/vault/config.js');
    expect(providerEdges('config/types.ts')).toContain('providers/memory.config.js');
  });

  it.each(core)('%s imports nothing from providers/', (file) => {
    expect(providerEdges(file)).toEqual([]);
  });

  it('covers every file under src/', () => {
    expect(core.length).toBeGreaterThan(20);
    expect(core).toContain('src/resolver/resolver.ts');
  });
});
