/**
 * The resolver as a small folder: the class and its states (resolver.ts), the pure schedule (plan.ts), the
 * one clock for every timer (clock.ts), and the steps of a cycle (fetch.ts, build.ts; spec.ts checks the
 * spec once). The package's barrel re-exports only the public part.
 */
export {
  createResolver,
  type GenerationSubscriber,
  type InternalAccess,
  internal,
  type RefreshResult,
  Resolver,
  type ResolverInternals,
} from './resolver.js';
