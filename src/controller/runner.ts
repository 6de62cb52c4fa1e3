// A coalescing, serial trigger for the node's reconcile: any number of requests while one
// is waiting or running collapse into one more run. Requests carry no data (level-based).

export interface RunnerOptions {
  /** Wait this long after a request for more to arrive (a burst of kernel events is one run). */
  debounceMs: number;
}

export class CoalescingRunner {
  private timer: NodeJS.Timeout | undefined;
  private dueAt = 0;
  private running = false;
  private pending = false;
  private stopped = false;
  private readonly options: RunnerOptions;
  /** The work; it may return a delay after which it wants to run again (a retry). */
  private readonly work: () => Promise<number | undefined>;
  private stopWaiters: Array<() => void> = [];

  constructor(work: () => Promise<number | undefined>, options: RunnerOptions) {
    this.work = work;
    this.options = options;
  }

  /** Ask for a run after `delayMs` (default: the debounce). An earlier request wins. */
  request(delayMs = this.options.debounceMs): void {
    if (this.stopped) return;
    if (this.running) {
      this.pending = true;
      return;
    }
    const dueAt = Date.now() + delayMs;
    if (this.timer !== undefined) {
      if (dueAt >= this.dueAt) return; // the run already scheduled comes sooner
      clearTimeout(this.timer);
    }
    this.dueAt = dueAt;
    this.timer = setTimeout(() => void this.run(), delayMs);
  }

  private async run(): Promise<void> {
    this.timer = undefined;
    this.running = true;
    let retryAfterMs: number | undefined;
    try {
      retryAfterMs = await this.work();
    } finally {
      this.running = false;
      if (this.pending && !this.stopped) {
        this.pending = false;
        this.request();
      } else if (retryAfterMs !== undefined && !this.stopped) {
        this.request(retryAfterMs);
      }
      if (this.stopped) for (const w of this.stopWaiters.splice(0)) w();
    }
  }

  /** No more runs; resolves once the one under way (if any) has finished. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running) await new Promise<void>((resolveStopped) => this.stopWaiters.push(resolveStopped));
  }
}

/** Exponential backoff for retrying a node whose reconcile left problems: 1 s doubling to 5 min. */
export function backoffMs(failuresInARow: number, baseMs = 1000, maxMs = 300_000): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, failuresInARow - 1));
}
