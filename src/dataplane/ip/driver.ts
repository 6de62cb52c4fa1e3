// The ip driver, the only code that runs iproute2's `ip`: through execa with argument
// arrays, never a shell. A reconcile costs two `ip` processes at most: one batch to read,
// one batch to write, whatever the number of objects; a third runs `ip monitor` for good.

import { randomUUID } from 'node:crypto';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { ActionResult, IpAction } from '../../model/action.ts';
import type { KernelInterest, KernelState } from '../../model/kernel.ts';
import type { CommandObserver, Driver } from '../dataplane.ts';
import { monitorLineMatters } from './monitor.ts';
import { parseObserveOutput } from './parse.ts';
import { ipLines } from './render.ts';

export interface IpDriverOptions {
  /** The ip binary; "ip" from PATH by default. */
  ipPath?: string;
  /** A hung `ip` must not hang the agent. */
  timeoutMs?: number;
  onCommand?: CommandObserver;
  /** Told when the monitor process dies and is restarted. */
  onMonitorError?: (error: string) => void;
  /** Where a write batch is put for `ip` to read: os.tmpdir() by default (the chart mounts an emptyDir there). */
  batchDir?: string;
}

const BATCH_PREFIX = 'ipip-operator-batch-';

/** What one `ip` process left behind. */
interface IpResult {
  exitCode?: number | undefined;
  timedOut: boolean;
  stdout: unknown;
  stderr: unknown;
}

/**
 * Batch files older than this are left by an agent killed during a write (a live write
 * takes at most the `ip` timeout); a new agent removes them.
 */
const STALE_BATCH_MS = 10 * 60_000;

/** "Already gone" answers to a delete: the wanted end state holds, so they are success. */
const GONE = /Cannot find device|No such process|Cannot assign requested address|No such device/;

/**
 * Splits `ip -force -batch` stderr into the error of each failed line. iproute2 prints the
 * kernel's message, then "Command failed FILE:N" naming the 1-based line of the batch
 * ("-" for FILE when it read stdin).
 */
export function parseBatchErrors(stderr: string): Map<number, string> {
  const errors = new Map<number, string>();
  let pending: string[] = [];
  for (const line of stderr.split('\n')) {
    const failed = /^Command failed .*:(\d+)\s*$/.exec(line);
    if (failed !== null) {
      errors.set(Number(failed[1]), pending.join('; ') || 'failed');
      pending = [];
    } else if (line.trim() !== '') pending.push(line.trim());
  }
  return errors;
}

/**
 * Maps batch line errors back to the actions whose commands those lines were; `lines`
 * are each action's batch lines, as apply wrote them.
 */
export function resultsFromBatch(
  actions: readonly IpAction[],
  errors: Map<number, string>,
  lines: readonly (readonly string[])[] = actions.map(ipLines),
): ActionResult[] {
  let line = 0;
  return actions.map((action, i) => {
    const messages: string[] = [];
    for (const text of lines[i]!) {
      line += 1;
      const error = errors.get(line);
      if (error === undefined) continue;
      if (action.verb === 'delete' && GONE.test(error)) continue;
      messages.push(`ip ${text}: ${error}`);
    }
    return messages.length === 0 ? { action } : { action, error: messages.join('; ') };
  });
}

export class IpDriver implements Driver<IpAction, KernelState> {
  readonly tool = 'ip';
  private readonly ip: string;
  private readonly timeoutMs: number;
  private readonly options: IpDriverOptions;

  private readonly batchDir: string;
  /** Set once the batch files of an earlier, killed agent have been looked for (at the first write). */
  private staleBatchesRemoved = false;

  constructor(options: IpDriverOptions = {}) {
    this.ip = options.ipPath ?? 'ip';
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.options = options;
    this.batchDir = options.batchDir ?? tmpdir();
  }

  private removeStaleBatches(): void {
    if (this.staleBatchesRemoved) return;
    this.staleBatchesRemoved = true;
    try {
      for (const name of readdirSync(this.batchDir)) {
        if (!name.startsWith(BATCH_PREFIX)) continue;
        const path = join(this.batchDir, name);
        if (Date.now() - statSync(path).mtimeMs > STALE_BATCH_MS) rmSync(path, { force: true });
      }
    } catch {
      // Nothing to clean, or not ours to clean: a write will say what is wrong with the dir.
    }
  }

  private async run(purpose: 'observe' | 'apply', args: string[], input?: string): Promise<IpResult> {
    const started = process.hrtime.bigint();
    const result = await execa(this.ip, args, {
      ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
      reject: false,
      timeout: this.timeoutMs,
      stripFinalNewline: false,
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.options.onCommand?.('ip', purpose, seconds, result.exitCode === 0);
    return result;
  }

  async observe(): Promise<KernelState> {
    // Not -4: it would hide links without an IPv4 address, and a foreign link with a wanted
    // name must be seen. `route show` is IPv4 by default. -N: numbers, not names from /etc/iproute2.
    // -s: each link's kernel counters (stats64) for the metrics, in the same read; it does
    // not change `route show` (checked on 6.1).
    const result = await this.run(
      'observe',
      ['-json', '-details', '-N', '-s', '-batch', '-'],
      'address show\nroute show table main\n',
    );
    if (result.exitCode !== 0 || result.timedOut) {
      throw new Error(
        `ip: reading links and routes failed: ${String(result.stderr).trim() || `exit ${result.exitCode}`}`,
      );
    }
    return parseObserveOutput(String(result.stdout));
  }

  /**
   * One `ip -force -batch FILE` for every action. The batch goes through a file, not a
   * pipe: an agent killed while writing to a pipe would leave `ip` to read a cut-off last
   * line and run it ("route del 10.1.0.0/24 proto 203" cut to "route del 10.1.0.0/24"
   * deletes whatever route that is). The file is whole before `ip` starts, and `ip` reads
   * it to the end even when the agent dies meanwhile.
   */
  async apply(actions: readonly IpAction[]): Promise<ActionResult[]> {
    if (actions.length === 0) return [];
    this.removeStaleBatches();
    const lines = actions.map(ipLines);
    const file = join(this.batchDir, `${BATCH_PREFIX}${process.pid}-${randomUUID()}`);
    try {
      await writeFile(file, `${lines.flat().join('\n')}\n`, { flag: 'wx', mode: 0o600 });
    } catch (error) {
      const message = `cannot write the ip batch to ${this.batchDir}: ${(error as Error).message}`;
      return actions.map((action) => ({ action, error: message }));
    }
    // -force: keep going past a failed line, so one bad object does not block the others.
    let result: IpResult;
    try {
      result = await this.run('apply', ['-force', '-batch', file]);
    } finally {
      await rm(file, { force: true });
    }
    if (result.timedOut) {
      return actions.map((action) => ({ action, error: `ip -batch timed out after ${this.timeoutMs} ms` }));
    }
    return resultsFromBatch(actions, parseBatchErrors(String(result.stderr)), lines);
  }

  watch(onEvent: (concernsUs: boolean) => void, interest: () => KernelInterest): () => void {
    let stopped = false;
    let kill: (() => void) | undefined;
    let restartDelay = 1000;
    const start = () => {
      if (stopped) return;
      // -o: one line per event; label: each says [LINK], [ADDR] or [ROUTE]; -N: protocols
      // and route types as numbers. Only whether an event concerns us matters: reconcile
      // reads everything.
      const started = process.hrtime.bigint();
      const child = execa(this.ip, ['-N', '-o', 'monitor', 'label', 'link', 'address', 'route'], {
        buffer: false,
        reject: false,
        stdin: 'ignore',
      });
      kill = () => child.kill();
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        restartDelay = 1000;
        onEvent(monitorLineMatters(line, interest()));
      });
      void child.then((r) => {
        // Counted when it ends: a monitor that keeps dying shows as ip_commands_total{purpose="monitor",result="error"}.
        this.options.onCommand?.('ip', 'monitor', Number(process.hrtime.bigint() - started) / 1e9, stopped);
        if (stopped) return;
        this.options.onMonitorError?.(
          `ip monitor exited (${r.exitCode ?? r.signal}): ${String(r.stderr ?? '').trim()}`,
        );
        setTimeout(start, restartDelay).unref();
        restartDelay = Math.min(restartDelay * 2, 60_000);
      });
    };
    start();
    return () => {
      stopped = true;
      kill?.();
    };
  }
}
