// A tool's monitor process (`ip monitor`, `nft monitor`), kept running for good: each line
// of its output goes to the driver, and when it dies it is started again with backoff
// (1 s doubling to 60 s; reset by any line). The driver starts the process (only drivers
// run tools), so this module runs none itself.

import type { Readable } from 'node:stream';
import { createInterface } from 'node:readline';

/** What the supervisor needs of a started process (an execa child with `buffer: false`). */
export interface MonitorProcess extends PromiseLike<MonitorExit> {
  stdout: Readable;
  kill(): unknown;
}

export interface MonitorExit {
  exitCode?: number | undefined;
  signal?: string | undefined;
  stderr?: unknown;
  /** A spawn error's code ("ENOENT" when the binary is not there). */
  code?: unknown;
}

export interface MonitorHandlers {
  /** Starts the process. */
  start(): MonitorProcess;
  onLine(line: string): void;
  /** Told when a process ends: how long it ran, and whether it was stopped on purpose (for the command metric). */
  onEnd(seconds: number, stopped: boolean): void;
  /**
   * Told when it died on its own (the driver reports it as it sees fit). Returns how long
   * to wait before the next start, or undefined for the backoff, which then doubles.
   */
  onDeath(exit: MonitorExit): number | undefined;
}

/** Runs the monitor until the returned function is called. */
export function superviseMonitor(h: MonitorHandlers): () => void {
  let stopped = false;
  let kill: (() => void) | undefined;
  let backoffMs = 1000;
  const start = () => {
    if (stopped) return;
    const started = process.hrtime.bigint();
    const child = h.start();
    kill = () => {
      child.kill();
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      backoffMs = 1000;
      h.onLine(line);
    });
    void Promise.resolve(child).then((exit) => {
      h.onEnd(Number(process.hrtime.bigint() - started) / 1e9, stopped);
      if (stopped) return;
      const delayMs = h.onDeath(exit);
      if (delayMs !== undefined) {
        setTimeout(start, delayMs).unref();
        return;
      }
      setTimeout(start, backoffMs).unref();
      backoffMs = Math.min(backoffMs * 2, 60_000);
    });
  };
  start();
  return () => {
    stopped = true;
    kill?.();
  };
}
