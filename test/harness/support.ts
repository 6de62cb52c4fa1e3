// The two helpers every test of the harness uses: eventually(), the one way to wait for
// something (with a deadline), and StartedByTest, for a lab started by a suite's first test.

export interface EventuallyOptions {
  /** Default 60 s. */
  timeoutMs?: number;
  /** Time between two checks; default 500 ms. */
  intervalMs?: number;
  /** More to say on a timeout, e.g. the agents' last log lines. */
  context?: () => Promise<string>;
}

/**
 * Thrown by a check of eventually(): stop waiting now and fail with `cause` (e.g. the
 * process that was to become ready has exited). Any other error is only remembered and
 * named on a timeout.
 */
export class GiveUp extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

/**
 * Polls `check` until it returns a value other than undefined or false, and resolves with
 * it; on timeout fails naming what was awaited, the last error seen and, when given, more
 * context (agents' logs).
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  options: EventuallyOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (error) {
      if (error instanceof GiveUp) throw error.cause;
      last = error;
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, Math.min(options.intervalMs ?? 500, Math.max(0, deadline - Date.now()))));
  }
  const context =
    options.context === undefined
      ? ''
      : `\n${await options.context().catch((e: unknown) => `(no context: ${String(e)})`)}`;
  throw new Error(
    `timed out waiting for ${what}${last === undefined ? '' : `; last: ${String((last as Error).message ?? last)}`}${context}`,
  );
}

/**
 * A lab or API server started by the first test of a suite, not by a before() hook: a
 * failing hook only marks the tests "cancelled" (the summary says "fail 0"), while a
 * failing test counts as a failure and prints the install hint right there. Later tests
 * get it with get(), which fails pointing at that first test when it did not start.
 */
export class StartedByTest<T> {
  private value: T | undefined;
  private error: unknown;
  private readonly what: string;

  constructor(what: string) {
    this.what = what;
  }

  async start(start: () => Promise<T>): Promise<T> {
    try {
      this.value = await start();
      return this.value;
    } catch (error) {
      this.error = error;
      throw error;
    }
  }

  get(): T {
    if (this.value === undefined)
      throw new Error(`no ${this.what}: see the failure of the first test`, { cause: this.error });
    return this.value;
  }

  /** For after(): what was started, if anything. */
  get started(): T | undefined {
    return this.value;
  }
}
