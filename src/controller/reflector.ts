// A supervised list+watch cache of one resource (what client-go calls a reflector and
// informer). List, then watch from the list's resourceVersion; a watch the server closes
// is resumed from the last resourceVersion seen (bookmarks keep it fresh); 410 Gone, or
// an ERROR event, means a fresh list; a server that is away is retried with backoff. The
// cache is only ever replaced by a successful list, so losing the API server keeps the
// last known state. `synced` is our own flag, set after the first successful list.
//
// Handlers learn what changed (old and current object) so they can tell whether it
// concerns them; they only enqueue, they do not reconcile (level-based).

import type { ListPage, WatchEventType, WatchHandlers } from '../kube/client.ts';
import { ApiError } from '../kube/client.ts';
import type { Logger } from '../report/log.ts';

export interface ReflectorSource<T> {
  /** For logs: "ipiptunnels", "nodes". */
  what: string;
  list(): Promise<ListPage<T>>;
  watch(resourceVersion: string, handlers: WatchHandlers): Promise<() => void>;
  /** What is kept of an object from a watch event (for Nodes: a name and an address). */
  fromWatch(object: Record<string, unknown>): T;
  key(item: T): string;
  /** Equal for what the agent cares about: an update that changes nothing of it is not a change. */
  same(a: T, b: T): boolean;
  resourceVersion(item: T): string | undefined;
}

function isNewer(candidate: string | undefined, current: string | undefined): boolean {
  if (candidate === undefined || current === undefined || !/^\d+$/.test(candidate) || !/^\d+$/.test(current))
    return false;
  return BigInt(candidate) > BigInt(current);
}

/** One object's change in the cache: `old` undefined when added, `current` undefined when deleted. */
export interface Change<T> {
  old: T | undefined;
  current: T | undefined;
}

export interface ReflectorOptions<T> {
  log: Logger;
  /** Told what changed: once per watch event, once per list (every difference it made), once per offer. */
  onChange: (changes: ReadonlyArray<Change<T>>) => void;
  /** A full list this often even when the watch is healthy: the defence against a watch that lost events. */
  relistMs?: number;
  /** Reconnect backoff: first delay and cap. */
  backoffMs?: { first: number; max: number };
  /** Told on every fresh list and why (metrics, tests). */
  onList?: (why: ListReason) => void;
}

export type ListReason = 'start' | 'expired' | 'error' | 'periodic';

type WatchEnd = { kind: 'closed' } | { kind: 'expired'; message: string } | { kind: 'failed'; message: string };

export class Reflector<T> {
  private readonly cache = new Map<string, T>();
  private readonly source: ReflectorSource<T>;
  private readonly options: ReflectorOptions<T>;
  private hasSynced = false;
  private stopped = false;
  private readonly wakeUp = new AbortController();
  private stopWatch: (() => void) | undefined;
  private loop: Promise<void> | undefined;

  constructor(source: ReflectorSource<T>, options: ReflectorOptions<T>) {
    this.source = source;
    this.options = options;
  }

  /** True once a list has succeeded; stays true while the server is away (the cache is kept). */
  get synced(): boolean {
    return this.hasSynced;
  }

  items(): T[] {
    return [...this.cache.values()];
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp.abort();
    this.stopWatch?.();
    await this.loop;
  }

  /** Calls fn when stop() is called; returns the unsubscribe (listeners must not pile up over days). */
  private onStop(fn: () => void): () => void {
    this.wakeUp.signal.addEventListener('abort', fn, { once: true });
    return () => this.wakeUp.signal.removeEventListener('abort', fn);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((done) => {
      if (this.stopped) return done();
      const finish = () => {
        clearTimeout(timer);
        unsubscribe();
        done();
      };
      const timer = setTimeout(finish, ms);
      const unsubscribe = this.onStop(finish);
    });
  }

  private backoff(failures: number): number {
    const { first, max } = this.options.backoffMs ?? { first: 1000, max: 30_000 };
    const ms = Math.min(max, first * 2 ** Math.max(0, failures - 1));
    return ms / 2 + Math.random() * (ms / 2); // jitter: agents on every node must not reconnect in step
  }

  /** Replaces the cache with a list; tells onChange once with every difference, if any. */
  private replace(items: readonly T[]): void {
    const changes: Array<Change<T>> = [];
    const fresh = new Map<string, T>();
    for (const item of items) {
      const key = this.source.key(item);
      const old = this.cache.get(key);
      if (old === undefined || !this.source.same(old, item)) changes.push({ old, current: item });
      fresh.set(key, item);
    }
    for (const [key, old] of this.cache) if (!fresh.has(key)) changes.push({ old, current: undefined });
    this.cache.clear();
    for (const [k, v] of fresh) this.cache.set(k, v);
    if (changes.length > 0) this.options.onChange(changes);
  }

  /**
   * An object the agent just got back from a write: into the cache now, if it is newer
   * than what the cache has, rather than when its watch event arrives (which then changes
   * nothing). resourceVersions are opaque by contract; an API server on etcd gives its
   * revision, a decimal number. Where they are not numbers, the offer is ignored and the
   * watch event does the job.
   */
  offer(item: T, options: { created?: boolean } = {}): void {
    const key = this.source.key(item);
    const current = this.cache.get(key);
    if (current === undefined) {
      // An object the cache has not seen is taken only from a write that may have created
      // it (this node's own report); any other could be one deleted meanwhile.
      if (options.created !== true || this.source.resourceVersion(item) === undefined) return;
      this.cache.set(key, item);
      this.options.onChange([{ old: undefined, current: item }]);
      return;
    }
    if (!isNewer(this.source.resourceVersion(item), this.source.resourceVersion(current))) return;
    this.cache.set(key, item);
    if (!this.source.same(current, item)) this.options.onChange([{ old: current, current: item }]);
  }

  private apply(type: WatchEventType, object: Record<string, unknown>): void {
    const item = this.source.fromWatch(object);
    const key = this.source.key(item);
    const old = this.cache.get(key);
    if (type === 'DELETED') {
      if (this.cache.delete(key)) this.options.onChange([{ old, current: undefined }]);
      return;
    }
    // A write's answer offered to the cache is newer than the events of the writes before
    // it, which may still be on their way: putting one of those back would show the cache
    // a past that a reconcile would then write over again.
    if (old !== undefined && isNewer(this.source.resourceVersion(old), this.source.resourceVersion(item))) return;
    this.cache.set(key, item);
    if (old === undefined || !this.source.same(old, item)) this.options.onChange([{ old, current: item }]);
  }

  private async run(): Promise<void> {
    const { log } = this.options;
    const what = this.source.what;
    const relistMs = this.options.relistMs ?? 30 * 60_000;
    let failures = 0;
    let why: ListReason = 'start';
    while (!this.stopped) {
      let resourceVersion: string;
      try {
        const page = await this.source.list();
        if (this.stopped) return;
        this.replace(page.items);
        resourceVersion = page.resourceVersion;
        if (!this.hasSynced) log.info('cache synced', { resource: what, items: page.items.length });
        this.hasSynced = true;
        this.options.onList?.(why);
        failures = 0;
      } catch (error) {
        failures += 1;
        const delay = this.backoff(failures);
        log.warn('list failed; keeping the last known state', {
          resource: what,
          error: String((error as Error).message),
          retryInMs: Math.round(delay),
        });
        await this.sleep(delay);
        why = 'error';
        continue;
      }

      const relistAt = Date.now() + relistMs;
      why = 'periodic';
      while (!this.stopped && Date.now() < relistAt) {
        const end = await this.watchOnce(resourceVersion, (rv) => {
          resourceVersion = rv;
        });
        if (this.stopped) return;
        if (end.kind === 'expired') {
          log.info('watch expired; listing again', { resource: what, detail: end.message });
          why = 'expired';
          break;
        }
        if (end.kind === 'closed') {
          failures = 0;
          continue;
        }
        failures += 1;
        const delay = this.backoff(failures);
        log.warn('watch failed; reconnecting', { resource: what, error: end.message, retryInMs: Math.round(delay) });
        await this.sleep(delay);
        // After a few failures in a row, something may have been missed in ways the
        // resourceVersion cannot tell: start over with a list.
        if (failures >= 5) {
          log.info('watch failed 5 times in a row; listing again', { resource: what });
          why = 'error';
          break;
        }
      }
    }
  }

  /** One watch connection, until it ends; resolves with how it ended. */
  private watchOnce(resourceVersion: string, seen: (rv: string) => void): Promise<WatchEnd> {
    return new Promise<WatchEnd>((finish) => {
      let done = false;
      let unsubscribe = () => {};
      const end = (result: WatchEnd) => {
        if (done) return;
        done = true;
        unsubscribe();
        this.stopWatch?.();
        this.stopWatch = undefined;
        finish(result);
      };
      const handlers: WatchHandlers = {
        onEvent: (type, object) => {
          if (type === 'ERROR') {
            // A Status object: 410 Gone/Expired is "your resourceVersion is too old".
            const status = object as { code?: number; message?: string };
            end(
              status.code === 410
                ? { kind: 'expired', message: status.message ?? 'Gone' }
                : { kind: 'failed', message: `watch error ${status.code ?? '?'}: ${status.message ?? ''}` },
            );
            return;
          }
          const rv = (object.metadata as { resourceVersion?: string } | undefined)?.resourceVersion;
          if (type !== 'BOOKMARK') this.apply(type, object);
          if (rv !== undefined && rv !== '') seen(rv);
        },
        onDone: (err) => {
          if (err === undefined) end({ kind: 'closed' });
          else if (err instanceof ApiError && err.status === 410) end({ kind: 'expired', message: err.message });
          else end({ kind: 'failed', message: String((err as Error).message ?? err) });
        },
      };
      this.source.watch(resourceVersion, handlers).then(
        (stop) => {
          if (done || this.stopped) stop();
          else this.stopWatch = stop;
        },
        (error: unknown) => end({ kind: 'failed', message: String((error as Error).message) }),
      );
      if (this.stopped) end({ kind: 'closed' });
      else unsubscribe = this.onStop(() => end({ kind: 'closed' }));
    });
  }
}
