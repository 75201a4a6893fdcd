/**
 * The pattern every database example uses: the resolver's current options, kept in a variable that each
 * rotation replaces, for client libraries that read TLS options synchronously when they open a connection.
 *
 * In an application, import from 'tls-secrets' instead of '../../src/index.js'.
 */
import type { ResolvedOptions, Resolver } from '../../src/index.js';

export interface LiveOptions {
  /** The options of the newest generation. */
  readonly current: ResolvedOptions;
  /** Stops following rotations. */
  stop(): void;
}

/** Resolves once (fetching if needed), then follows every rotation. */
export async function liveOptions(
  resolver: Resolver,
  onRotate?: (next: ResolvedOptions) => void,
): Promise<LiveOptions> {
  let current = await resolver.resolve();
  const listener = () => {
    // resolve() answers from the generation just swapped in, without I/O.
    resolver.resolve().then(
      (next) => {
        current = next;
        onRotate?.(next);
      },
      () => {},
    );
  };
  resolver.on('rotate', listener);
  return {
    get current() {
      return current;
    },
    stop: () => resolver.off('rotate', listener),
  };
}
