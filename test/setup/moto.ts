/**
 * Vitest globalSetup: starts one moto server (the AWS mock) on a free loopback port for the AWS Secrets Manager
 * tests and provides its URL as `motoEndpoint`. Without Python/moto it provides `''` and a reason, and those
 * tests skip visibly; with REQUIRE_MOTO=1 (CI) a missing moto fails the run instead.
 * MOTO_ENDPOINT points the tests at a moto that is already running (e.g. the motoserver/moto container).
 */
import type { TestProject } from 'vitest/node';
import { startMoto } from '../helpers/moto.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Base URL of a running moto server, or `''` when none could be started. */
    motoEndpoint: string;
    /** Why `motoEndpoint` is empty. */
    motoUnavailable: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const moto = await startMoto({ install: true });
  if (typeof moto === 'string') {
    if (process.env.REQUIRE_MOTO === '1') throw new Error(`moto is required (REQUIRE_MOTO=1) but ${moto}`);
    console.warn(`[moto] ${moto}: the AWS Secrets Manager tests will be skipped`);
    project.provide('motoEndpoint', '');
    project.provide('motoUnavailable', moto);
    return async () => {};
  }
  project.provide('motoEndpoint', moto.url);
  project.provide('motoUnavailable', '');
  return () => moto.close();
}
