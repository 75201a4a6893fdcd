/** The resolver: one class, its states, and the planning and fetching steps it is built from. */
export { createResolver, type RefreshResult, Resolver } from './resolver.js';
