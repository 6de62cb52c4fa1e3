// A tool's monitor process (`ip monitor`, `nft monitor`), kept running for good: each line
// of its output goes to the driver, and when it dies it is started again with backoff
// (1 s doubling to 60 s; reset by any line). The driver starts the process (only drivers
// run tools), so this module runs none itself.

import type { Readable } from 'node:stream';
import { createInterface } from 'node:readline';

/** What the supervisor needs of a started process (a kept process of process.ts). */
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
  /**
   * One line of the current process. `restart` replaces the process at once (no backoff, no
   * onDeath); the lines its old one still prints are dropped.
   */
  onLine(line: string, restart: () => void): void;
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
  /** The current process's number: a line or an end of an older one is not the current one's. */
  let generation = 0;
  const start = () => {
    if (stopped) return;
    generation += 1;
    const mine = generation;
    let replaced = false;
    const started = process.hrtime.bigint();
    const child = h.start();
    kill = () => {
      child.kill();
    };
    const restart = () => {
      if (stopped || replaced || mine !== generation) return;
      replaced = true;
      child.kill();
      start();
    };
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (mine !== generation) return;
      backoffMs = 1000;
      h.onLine(line, restart);
    });
    void Promise.resolve(child).then((exit) => {
      h.onEnd(Number(process.hrtime.bigint() - started) / 1e9, stopped || replaced);
      if (stopped || replaced) return;
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
