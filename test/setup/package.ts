/**
 * Vitest globalSetup: a directory for this run's build of the package (`packDir`). Nothing is built here, so
 * a run that needs no package pays nothing; the first test file that needs one builds and packs it into this
 * directory (test/helpers/packed.ts) and the others reuse it. Removed at the end of the run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where this run's `npm pack` of the built package goes, shared by every test file. */
    packDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'tls-secrets-pack-'));
  project.provide('packDir', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
