// Small helpers shared by the tests against a real API server.

import type { ApiServer } from './apiserver.ts';

/**
 * Polls `check` until it returns a value other than undefined; on timeout fails naming
 * what was awaited, the last error seen and, when given, more context (agents' logs).
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; context?: () => Promise<string> } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 500));
  }
  const context = options.context === undefined ? '' : `\n${await options.context()}`;
  throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `; last: ${String((last as Error).message ?? last)}`}${context}`);
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
    if (this.value === undefined) throw new Error(`no ${this.what}: see the failure of the first test`, { cause: this.error });
    return this.value;
  }

  /** For after(): what was started, if anything. */
  get started(): T | undefined {
    return this.value;
  }
}

/** kubectl against the server; its stdout, or an error with its stderr. */
export async function kubectlOk(api: ApiServer, args: string[], input?: string): Promise<string> {
  const r = await api.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
