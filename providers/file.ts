/**
 * Files on disk: Kubernetes secret volumes, cert-manager and Vault Agent output, Docker secrets, plain PEM
 * files. Changes are watched on the containing directories, because these files are replaced rather than
 * rewritten: editors rename over them and Kubernetes swaps a `..data` symlink, so a watch on the file itself
 * keeps observing the old inode.
 */
import fs, { type BigIntStats } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { contentVersion } from '../src/content-version.js';
import { ConfigurationError, FetchError, InvalidMaterialError, SecretNotFoundError } from '../src/errors.js';
import { createRef, describeRef, type Provider, type RefOptions, type SecretRef } from '../src/provider.js';
import { redactProvider } from '../src/redact.js';
import { checkDurationMs } from '../src/timers.js';
import { MAX_SECRET_BYTES } from '../src/transform.js';

export interface FileOptions {
  /** Directory relative paths are resolved against, when the reference is created. Default: the cwd then. */
  baseDir?: string;
  /** Quiet time (ms) after the last file-system event before checking: a burst notifies once. Default 50. */
  debounceMs?: number;
  /**
   * A changed file is reported only once it has not been modified for this long (ms): a writer that
   * writes in place (`cat leaf inter > cert.pem`, a slow copy) is not caught halfway, with a leaf and no
   * chain. Only writes in place wait (same inode): a file replaced atomically (rename, a Kubernetes `..data`
   * swap) is complete and reported at once. Default 200.
   */
  settleMs?: number;
  /** How often (ms) files are checked with `stat` when polling. Default 1000. */
  pollIntervalMs?: number;
  /**
   * Push notifications. `true` watches the containing directories with `fs.watch` and polls where that throws
   * (inotify limit, unsupported file system); `'poll'` only polls (network and FUSE mounts that deliver no
   * events); `false` offers no push and the resolver's refresh checks versions. Default true.
   */
  watch?: boolean | 'poll';
  /** Provider name in errors and status. Default `file`. */
  name?: string;
}

export interface FileProvider extends Provider {
  /** A reference to the file at `path` (relative to `baseDir`); the file need not exist yet. */
  ref(path: string, options?: RefOptions): SecretRef;
  currentVersion(ref: SecretRef, signal: AbortSignal): Promise<string | undefined>;
  /** Stops every subscription's watchers and timers; later `watch` calls do nothing, fetching still works. */
  close(): Promise<void>;
}

/** Coarse kernel timestamps: a file changed this recently may change again with an identical `stat`. */
const RACY_MS = 2_000;
/** Symlink hops followed when looking for directories to watch, as Linux's own limit. */
const MAX_HOPS = 40;
const ENCODINGS: ReadonlySet<string> = new Set(['utf8', 'base64', 'binary']);
// O_NONBLOCK so a FIFO at the path cannot park a thread-pool thread in open(); it is then refused by fstat.
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

const NOT_FOUND: ReadonlySet<string> = new Set(['ENOENT', 'ENOTDIR']);
/** Errors that retrying will not fix; anything else (EAGAIN, EMFILE, EIO, ESTALE, …) is transient. */
const PERMANENT: ReadonlyMap<string, string> = new Map([
  ['EACCES', 'permission denied'],
  ['EPERM', 'operation not permitted'],
  ['EISDIR', 'path is a directory'],
  ['ENOTREG', 'not a regular file'],
  ['ELOOP', 'too many symbolic links'],
  ['ENAMETOOLONG', 'path too long'],
]);

interface Snapshot {
  /** dev, inode, size, mtime and ctime of the file read: equal keys mean the content was not replaced. */
  readonly key: string;
  readonly hash: string;
  /** Changed within timestamp granularity of when it was read: the key alone cannot vouch for it. */
  readonly racy: boolean;
}

/** A file the provider refuses to read, carrying a code like the fs errors it is mapped with. */
class Refused extends Error {
  constructor(
    readonly code: 'EISDIR' | 'ENOTREG' | 'EFBIG',
    readonly size = 0,
  ) {
    super(code);
  }
}

function statKey(st: BigIntStats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

function isRacy(st: BigIntStats): boolean {
  const changed = Math.max(Number(st.mtimeMs), Number(st.ctimeMs));
  return Math.abs(Date.now() - changed) < RACY_MS;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function file(options: FileOptions = {}): FileProvider {
  const name = options.name ?? 'file';
  if (typeof name !== 'string' || name === '') {
    throw new ConfigurationError('file option name must be a non-empty string');
  }
  if (options.baseDir !== undefined && (typeof options.baseDir !== 'string' || options.baseDir === '')) {
    throw new ConfigurationError('file option baseDir must be a non-empty path', { provider: name });
  }
  const baseDir = options.baseDir === undefined ? undefined : resolve(options.baseDir);
  // Timers above MAX_TIMER fire at once in Node (with a warning), so larger intervals are refused.
  const debounceMs = checkDurationMs('file option debounceMs', options.debounceMs, 50);
  const settleMs = checkDurationMs('file option settleMs', options.settleMs, 200);
  const pollIntervalMs = checkDurationMs('file option pollIntervalMs', options.pollIntervalMs, 1000, {
    min: 1,
  });
  const mode = options.watch ?? true;
  if (mode !== true && mode !== false && mode !== 'poll') {
    throw new ConfigurationError(`file option watch must be true, false or 'poll', got ${String(mode)}`, {
      provider: name,
    });
  }

  /** Per path, what was read last: lets `currentVersion` answer from one `stat`. */
  const snapshots = new Map<string, Snapshot>();
  const subscriptions = new Set<Subscription>();
  let closed = false;

  const toError = (err: unknown, ref: SecretRef): Error => {
    const context = { ref: describeRef(ref), provider: name, cause: err };
    if (err instanceof Refused && err.code === 'EFBIG') {
      return new InvalidMaterialError(
        `file is ${err.size} bytes, over the ${MAX_SECRET_BYTES}-byte limit`,
        context,
      );
    }
    const code = errorCode(err);
    if (code !== undefined && NOT_FOUND.has(code)) return new SecretNotFoundError('file not found', context);
    const reason = code === undefined ? undefined : PERMANENT.get(code);
    if (reason !== undefined) {
      return new FetchError(`cannot read file: ${reason} (${code})`, { ...context, transient: false });
    }
    return new FetchError(`cannot read file${code === undefined ? '' : ` (${code})`}`, {
      ...context,
      transient: true,
    });
  };

  // Every call goes through the `fs.promises` object (not a named import) so tests can count store calls.
  const load = async (path: string, signal?: AbortSignal): Promise<{ bytes: Buffer; snapshot: Snapshot }> => {
    signal?.throwIfAborted();
    const handle = await fs.promises.open(path, OPEN_FLAGS);
    try {
      // fstat before reading: a write that races the read changes mtime after this, so it is seen next time.
      const st = await handle.stat({ bigint: true });
      if (st.isDirectory()) throw new Refused('EISDIR');
      if (!st.isFile()) throw new Refused('ENOTREG');
      if (st.size > MAX_SECRET_BYTES) throw new Refused('EFBIG', Number(st.size));
      const bytes = await handle.readFile(signal ? { signal } : {});
      if (bytes.byteLength > MAX_SECRET_BYTES) throw new Refused('EFBIG', bytes.byteLength);
      const snapshot = { key: statKey(st), hash: contentVersion(bytes), racy: isRacy(st) };
      snapshots.set(path, snapshot);
      return { bytes, snapshot };
    } finally {
      await handle.close();
    }
  };

  /**
   * The inode of the file as last read or stat'ed, and how long (ms) until it has been left alone for
   * `settleMs` (0 when it has). From the snapshot `currentHash` just refreshed: no extra I/O, so a check
   * takes no longer than before (a slower check would widen the window in which a directory that appears
   * is watched too late).
   */
  const settleState = (path: string): { inode: bigint; wait: number } | undefined => {
    const snapshot = snapshots.get(path);
    if (!snapshot) return undefined;
    const [, inode = '0', , mtimeNs = '0', ctimeNs = '0'] = snapshot.key.split(':');
    const changed = Number(
      (BigInt(mtimeNs) > BigInt(ctimeNs) ? BigInt(mtimeNs) : BigInt(ctimeNs)) / 1_000_000n,
    );
    return { inode: BigInt(inode), wait: Math.max(0, Math.min(settleMs, changed + settleMs - Date.now())) };
  };

  /** The content hash, read only when `stat` says the file may differ from the last read. */
  const currentHash = async (path: string, signal?: AbortSignal): Promise<string> => {
    const st = await fs.promises.stat(path, { bigint: true });
    const known = snapshots.get(path);
    if (known && !known.racy && known.key === statKey(st)) return known.hash;
    return (await load(path, signal)).snapshot.hash;
  };

  const provider: FileProvider = {
    name,
    ref(path, refOptions = {}) {
      if (typeof path !== 'string' || path === '' || path.includes('\0')) {
        throw new ConfigurationError('file path must be a non-empty string without NUL bytes', {
          provider: name,
        });
      }
      if (refOptions.encoding !== undefined && !ENCODINGS.has(refOptions.encoding)) {
        throw new ConfigurationError(`unknown encoding ${String(refOptions.encoding)}`, { provider: name });
      }
      if (refOptions.jsonKey !== undefined && typeof refOptions.jsonKey !== 'string') {
        throw new ConfigurationError('jsonKey must be a string', { provider: name });
      }
      return createRef(provider, resolve(baseDir ?? process.cwd(), path), refOptions);
    },
    async fetch(ref, signal) {
      try {
        const { bytes, snapshot } = await load(ref.id, signal);
        return { value: bytes, version: snapshot.hash };
      } catch (err) {
        if (signal.aborted) {
          throw new FetchError('file read aborted', {
            ref: describeRef(ref),
            provider: name,
            cause: signal.reason,
          });
        }
        throw toError(err, ref);
      }
    },
    async currentVersion(ref, signal) {
      try {
        return await currentHash(ref.id, signal);
      } catch (err) {
        // Absent: no version. The fetch that follows reports the not-found error.
        if (NOT_FOUND.has(errorCode(err) ?? '')) return undefined;
        throw toError(err, ref);
      }
    },
    async close() {
      closed = true;
      await Promise.all([...subscriptions].map((subscription) => subscription.stop()));
      snapshots.clear();
    },
  };

  if (mode !== false) {
    provider.watch = (refs, onChange) => {
      if (closed) return () => {};
      const subscription = new Subscription(refs, onChange, {
        poll: mode === 'poll',
        debounceMs,
        settleMs,
        pollIntervalMs,
        snapshots,
        currentHash,
        settleState,
        onStop: () => subscriptions.delete(subscription),
      });
      subscriptions.add(subscription);
      subscription.start();
      return () => void subscription.stop();
    };
  }

  // Holds no secrets (only hashes of them), but shows the same shape as the other providers.
  return redactProvider(provider, 'FileProvider', () => ({ baseDir: baseDir ?? '.', watch: mode }));
}

interface SubscriptionContext {
  poll: boolean;
  debounceMs: number;
  settleMs: number;
  pollIntervalMs: number;
  snapshots: ReadonlyMap<string, Snapshot>;
  currentHash(path: string): Promise<string>;
  /** The file's inode and the milliseconds until it has not been modified for the settle time. */
  settleState(path: string): { inode: bigint; wait: number } | undefined;
  onStop(): void;
}

interface Target {
  readonly path: string;
  readonly refs: SecretRef[];
  /** Content hash, or `!CODE` while unreadable; undefined until a first check sets the baseline. */
  state: string | undefined;
  /** Real directories whose entries decide this path: its own and those along its symlink chain. */
  dirs: string[];
  /** The inode last seen: a change on the same inode is a write in place, which may be unfinished. */
  inode?: bigint;
}

/** One `watch()` call: directory watchers or a poll timer, a debounce, and the last state of each path. */
class Subscription {
  private readonly targets = new Map<string, Target>();
  private readonly watchers = new Map<string, fs.FSWatcher>();
  /** Directories fs.watch refused for good (ENOSPC, unsupported): their paths are polled. */
  private readonly unwatchable = new Set<string>();
  private byDir = new Map<string, Set<Target>>();
  private readonly pending = new Set<Target>();
  private debounceTimer: NodeJS.Timeout | undefined;
  /** Checks again once a file caught being written has settled. */
  private settle: NodeJS.Timeout | undefined;
  /** When each target was first found unsettled: a file whose mtime is in the future is not held forever. */
  private readonly unsettledSince = new Map<Target, number>();
  private burstStartedAt: number | undefined;
  private poller: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private rerun = false;
  private stopped = false;

  constructor(
    refs: readonly SecretRef[],
    private readonly onChange: (ref: SecretRef) => void,
    private readonly context: SubscriptionContext,
  ) {
    for (const ref of refs) {
      let target = this.targets.get(ref.id);
      if (!target) {
        // The baseline is what the provider read last (normally the resolver's own fetch), so a change made
        // between that fetch and this call is still reported by the first check.
        // Its inode too: a write in place right after that fetch is then known for one.
        const snapshot = context.snapshots.get(ref.id);
        target = {
          path: ref.id,
          refs: [],
          state: snapshot?.hash,
          dirs: [dirname(ref.id)],
          inode: snapshot && BigInt(snapshot.key.split(':')[1] ?? 0),
        };
        this.targets.set(ref.id, target);
      }
      if (!target.refs.includes(ref)) target.refs.push(ref);
    }
  }

  start(): void {
    this.reconcile();
    for (const target of this.targets.values()) this.pending.add(target);
    this.run(true);
  }

  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      clearTimeout(this.debounceTimer);
      clearTimeout(this.settle);
      clearInterval(this.poller);
      for (const watcher of this.watchers.values()) watcher.close();
      this.watchers.clear();
      this.context.onStop();
    }
    await this.running;
  }

  private onEvent(dir: string): void {
    if (this.stopped) return;
    for (const target of this.byDir.get(dir) ?? []) this.pending.add(target);
    const now = Date.now();
    this.burstStartedAt ??= now;
    // Trailing debounce, but a directory that never goes quiet (a log file next door) is still checked.
    const maxWait = Math.max(1_000, 4 * this.context.debounceMs);
    const wait = Math.max(0, Math.min(this.context.debounceMs, this.burstStartedAt + maxWait - now));
    clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => {
      this.debounceTimer = undefined;
      this.burstStartedAt = undefined;
      this.run(false);
    }, wait).unref();
  }

  private run(resolveDirs: boolean): void {
    if (this.running) {
      this.rerun = true;
      return;
    }
    this.running = this.checkPending(resolveDirs).finally(() => {
      this.running = undefined;
    });
  }

  private async checkPending(resolveDirs: boolean): Promise<void> {
    let again = true;
    while (again && !this.stopped) {
      this.rerun = false;
      const batch = [...this.pending];
      this.pending.clear();
      const changed: Target[] = [];
      for (const target of batch) {
        const state = await this.context
          .currentHash(target.path)
          .catch((err: unknown) => `!${errorCode(err) ?? 'error'}`);
        const differs = state !== target.state;
        if (resolveDirs || differs) target.dirs = await watchDirs(target.path);
        if (this.stopped) return;
        if (differs && target.state !== undefined) {
          // Modified moments ago: the writer may not be done. Report it once it has been left alone.
          const settle = state.startsWith('!') ? undefined : this.context.settleState(target.path);
          const inPlace = settle !== undefined && settle.inode === target.inode;
          const wait = inPlace ? settle.wait : 0;
          const since = this.unsettledSince.get(target) ?? Date.now();
          if (wait > 0 && Date.now() - since < 10 * this.context.settleMs) {
            this.unsettledSince.set(target, since);
            this.pending.add(target);
            clearTimeout(this.settle);
            this.settle = setTimeout(() => this.run(false), wait).unref();
            continue;
          }
          this.unsettledSince.delete(target);
          changed.push(target);
        }
        target.state = state;
        target.inode = state.startsWith('!') ? undefined : this.context.settleState(target.path)?.inode;
      }
      this.reconcile();
      for (const target of changed) {
        for (const ref of target.refs) {
          try {
            this.onChange(ref);
          } catch (err) {
            // A throwing listener must not stop the others; it surfaces as an uncaught exception instead.
            queueMicrotask(() => {
              throw err;
            });
          }
        }
      }
      resolveDirs = false;
      again = this.rerun;
    }
  }

  /** Watches the directories the targets need now, closes the rest, and polls what cannot be watched. */
  private reconcile(): void {
    if (this.stopped) return;
    const byDir = new Map<string, Set<Target>>();
    for (const target of this.targets.values()) {
      for (const dir of target.dirs) {
        const set = byDir.get(dir) ?? new Set<Target>();
        set.add(target);
        byDir.set(dir, set);
      }
    }
    this.byDir = byDir;
    if (!this.context.poll) {
      // Open the new watchers before closing the old ones, so a swap in progress is not missed.
      for (const dir of byDir.keys())
        if (!this.watchers.has(dir) && !this.unwatchable.has(dir)) this.watchDir(dir);
    }
    for (const [dir, watcher] of this.watchers) {
      if (!byDir.has(dir)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
    const polled = [...this.targets.values()].some((target) => !this.watchers.has(target.dirs[0] ?? ''));
    if (polled && !this.poller) {
      this.poller = setInterval(() => this.poll(), this.context.pollIntervalMs).unref();
    } else if (!polled && this.poller) {
      clearInterval(this.poller);
      this.poller = undefined;
    }
  }

  private watchDir(dir: string): void {
    const own = basename(dir);
    const drop = (watcher: fs.FSWatcher) => {
      watcher.close();
      if (this.watchers.get(dir) === watcher) this.watchers.delete(dir);
    };
    try {
      // The next check re-watches a dropped directory, or polls its paths if it is gone.
      const watcher = fs.watch(dir, { persistent: false }, (_event, filename) => {
        // inotify names the directory itself when it is deleted or moved away: that watch sees nothing more.
        if (filename === own) drop(watcher);
        this.onEvent(dir);
      });
      watcher.on('error', () => {
        drop(watcher);
        this.onEvent(dir);
      });
      watcher.unref();
      this.watchers.set(dir, watcher);
    } catch (err) {
      // A missing directory may appear later and is retried at each check; ENOSPC or an unsupported file
      // system will not get better.
      if (!NOT_FOUND.has(errorCode(err) ?? '')) this.unwatchable.add(dir);
    }
  }

  private poll(): void {
    for (const target of this.targets.values()) {
      if (!this.watchers.has(target.dirs[0] ?? '')) this.pending.add(target);
    }
    this.run(false);
  }
}

/**
 * The real directories whose entries decide what `path` opens: its own directory and the directory of every
 * symlink it leads through (`tls.crt -> ..data/tls.crt` in a Kubernetes volume, `live/` to `archive/` for
 * certbot). Real paths, so a swapped `..data` gives a new key and a fresh watcher.
 */
async function watchDirs(path: string): Promise<string[]> {
  const dirs = [dirname(path)];
  let current = path;
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    let link: string;
    try {
      link = await fs.promises.readlink(current);
    } catch {
      break; // EINVAL: not a symlink, the chain ends here.
    }
    current = resolve(dirname(current), link);
    dirs.push(dirname(current));
  }
  const real = await Promise.all(dirs.map((dir) => fs.promises.realpath(dir).catch(() => dir)));
  return [...new Set(real)];
}
