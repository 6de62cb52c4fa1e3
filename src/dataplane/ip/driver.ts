// The ip driver, the only code that runs iproute2's `ip`: through process.ts with argument
// arrays, never a shell. A reconcile costs one `ip` process at most, the batch that
// writes, whatever the number of objects; two more run for good: the reader (kept-reader.ts),
// to which each pass's read goes, and `ip monitor`.

import { tmpdir } from 'node:os';
import type { ActionResult, IpAction } from '../../model/action.ts';
import type { KernelEvent, KernelInterest, KernelState } from '../../model/kernel.ts';
import { BatchFiles } from '../batch-file.ts';
import type { CommandObserver, Driver } from '../dataplane.ts';
import { runTool, startTool } from '../process.ts';
import { superviseMonitor } from '../supervise.ts';
import { monitorLineMatters, parseMonitorLine } from './monitor.ts';
import { parseObserveOutput } from './parse.ts';
import { KeptReader, ReaderError } from '../kept-reader.ts';
import type { ReaderAnswer } from '../kept-reader.ts';
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

/**
 * The reader's arguments. Not -4: it would hide links without an IPv4 address, and a
 * foreign link with a wanted name must be seen. -N: numbers, not names from /etc/iproute2.
 * -s: each link's kernel counters (stats64) for the metrics, in the same read; it does not
 * change `route show` (checked on 6.1). No -force: a failed read ends the process (reader.ts).
 */
export const IP_READ_ARGS: readonly string[] = ['-json', '-details', '-N', '-s', '-batch', '-'];

/** What each read asks the reader: `address show` first (it refreshes the names by index, namesCacheVerdict), then the main table. */
export const IP_READ_COMMANDS: readonly string[] = ['address show', 'route show table main'];

/**
 * Whether a read of the kept reader process names devices as a new process would.
 * iproute2 names a route's device and a tunnel's underlay from a cache by index, with the
 * name it had when that process first saw the index: from a link dump (every read starts
 * with one) or, for an index the dump did not have, a lookup. `seen` mirrors that cache for
 * one process (updated here: first names stay, as in iproute2).
 * - 'stale': an index the process saw before has another name now; names from the cache
 *   in this read may be the old one. Read again, from a new process.
 * - 'looked up': the read names a device its own dump does not have (made between the
 *   dumps, or in another namespace): the process looked it up, and later reads could not
 *   tell if it is renamed. This read is right; the next one starts a new process.
 * - 'fresh': every name the read gives is a name its own dump has for that index.
 */
export function namesCacheVerdict(seen: Map<number, string>, state: KernelState): 'fresh' | 'stale' | 'looked up' {
  let stale = false;
  const names = new Set<string>();
  for (const link of state.links) {
    names.add(link.name);
    const before = seen.get(link.index);
    if (before === undefined) seen.set(link.index, link.name);
    else if (before !== link.name) stale = true;
  }
  if (stale) return 'stale';
  const named = (dev: string | undefined) => dev === undefined || names.has(dev);
  const lookedUp = state.routes.some((r) => !named(r.dev)) || state.links.some((l) => !named(l.tunnel?.underlayDevice));
  return lookedUp ? 'looked up' : 'fresh';
}

/**
 * A write's timeout: the driver's, plus WRITE_MS_PER_LINE for each command. One batch
 * holds a pass's every command (5,000 for 1,000 tunnels from empty), which a slow node
 * (UML under `--cpu-prof`, 2 shared cores) was seen to take 29 s to run: a fixed 30 s
 * would kill a write that is making progress, and every retry would start over.
 */
export const WRITE_MS_PER_LINE = 10;
export function writeTimeoutMs(baseMs: number, lines: number): number {
  return baseMs + lines * WRITE_MS_PER_LINE;
}

export class IpDriver implements Driver<IpAction, KernelState> {
  readonly tool = 'ip';
  private readonly ip: string;
  private readonly timeoutMs: number;
  private readonly options: IpDriverOptions;

  private readonly batches: BatchFiles;
  private readonly reader: KeptReader;
  /**
   * The names the monitor's process may print for each index: from its link lines, and from
   * the reads (it may have looked an index up that it never had a line for).
   */
  private monitorNames = new Map<number, string>();
  /** The names the reader's current process has seen, by index (namesCacheVerdict). */
  private namesOf: { process: number; names: Map<number, string> } = { process: 0, names: new Map() };

  constructor(options: IpDriverOptions = {}) {
    this.ip = options.ipPath ?? 'ip';
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.options = options;
    this.batches = new BatchFiles(options.batchDir ?? tmpdir(), BATCH_PREFIX);
    this.reader = new KeptReader({
      tool: 'ip',
      start: () => startTool(this.ip, IP_READ_ARGS, { stdin: 'pipe' }),
      timeoutMs: this.timeoutMs,
      // Counted when it ends, as the monitor is: a reader that keeps dying shows as
      // ip_commands_total{purpose="reader",result="error"}.
      onEnd: (seconds, stopped) => this.options.onCommand?.('ip', 'reader', seconds, stopped),
    });
  }

  private async run(
    purpose: 'observe' | 'apply',
    args: string[],
    input?: string,
    timeoutMs = this.timeoutMs,
  ): Promise<IpResult> {
    const started = process.hrtime.bigint();
    const result = await runTool(this.ip, args, { ...(input === undefined ? {} : { input }), timeoutMs });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.options.onCommand?.('ip', purpose, seconds, result.exitCode === 0);
    return result;
  }

  /**
   * One read of the reader (IP_READ_COMMANDS). Read again from a new process when the
   * answer may hold a stale name (namesCacheVerdict).
   */
  async observe(): Promise<KernelState> {
    for (let exits = 0; ; ) {
      const started = process.hrtime.bigint();
      let answer: ReaderAnswer;
      try {
        answer = await this.reader.read(IP_READ_COMMANDS);
      } catch (error) {
        this.options.onCommand?.('ip', 'observe', Number(process.hrtime.bigint() - started) / 1e9, false);
        // A process that died since the last read (killed, say) may get the next read before
        // its exit is seen: one more try, from a new process. Not after a timeout: that would
        // double a hung read's wait.
        if (error instanceof ReaderError && error.kind === 'exited' && exits++ === 0) continue;
        throw new Error(`ip: reading links and routes failed: ${(error as Error).message}`);
      }
      this.options.onCommand?.('ip', 'observe', Number(process.hrtime.bigint() - started) / 1e9, true);
      const state = parseObserveOutput(answer.lines.join('\n'));
      if (answer.process !== this.namesOf.process) this.namesOf = { process: answer.process, names: new Map() };
      const verdict = namesCacheVerdict(this.namesOf.names, state);
      if (verdict === 'stale') {
        // A new process's cache is empty: its read is never 'stale', so this reads twice at most.
        this.reader.stop();
        continue;
      }
      if (verdict === 'looked up') this.reader.stop();
      for (const link of state.links)
        if (!this.monitorNames.has(link.index)) this.monitorNames.set(link.index, link.name);
      return state;
    }
  }

  /** Ends the reader's process (a later observe starts another). */
  stop(): void {
    this.reader.stop();
  }

  /**
   * One `ip -force -batch FILE` for every action, through a file (batch-file.ts says why:
   * "route del 10.1.0.0/24 proto 203" cut to "route del 10.1.0.0/24" by a kill would
   * delete whatever route that is).
   */
  async apply(actions: readonly IpAction[]): Promise<ActionResult[]> {
    if (actions.length === 0) return [];
    const lines = actions.map(ipLines);
    // -force: keep going past a failed line, so one bad object does not block the others.
    const timeoutMs = writeTimeoutMs(this.timeoutMs, lines.flat().length);
    const result = await this.batches.with(`${lines.flat().join('\n')}\n`, (file) =>
      this.run('apply', ['-force', '-batch', file], undefined, timeoutMs),
    );
    if ('writeError' in result) {
      const message = `cannot write the ip batch to ${this.batches.directory}: ${result.writeError}`;
      return actions.map((action) => ({ action, error: message }));
    }
    if (result.timedOut) {
      return actions.map((action) => ({ action, error: `ip -batch timed out after ${timeoutMs} ms` }));
    }
    return resultsFromBatch(actions, parseBatchErrors(String(result.stderr)), lines);
  }

  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void {
    return superviseMonitor({
      // -o: one line per event; label: each says [LINK], [ADDR] or [ROUTE]; -N: protocols
      // and route types as numbers; -d: each link whole (its tunnel attributes and alias),
      // so that the line says what the link is now (parseMonitorLine).
      start: () => {
        this.monitorNames = new Map();
        return startTool(this.ip, ['-d', '-N', '-o', 'monitor', 'label', 'link', 'address', 'route'], {
          stdin: 'ignore',
        });
      },
      onLine: (line, restart) => {
        const change = parseMonitorLine(line);
        onEvent({ concernsUs: monitorLineMatters(line, interest()), change });
        if (change.kind !== 'link') return;
        // The monitor names a route's device from the same cache as the reader (reader.ts):
        // after a rename it would go on printing the old name. A new process, and the view
        // untrusted until the next read (what the old one printed since is dropped).
        const { index, name } = change.link;
        const before = this.monitorNames.get(index);
        if (change.deleted) this.monitorNames.delete(index);
        else if (before === undefined) this.monitorNames.set(index, name);
        else if (before !== name) {
          restart();
          onEvent({ concernsUs: true, change: { kind: 'unreadable' } });
        }
      },
      // Counted when it ends: a monitor that keeps dying shows as ip_commands_total{purpose="monitor",result="error"}.
      onEnd: (seconds, stopped) => this.options.onCommand?.('ip', 'monitor', seconds, stopped),
      onDeath: (r) => {
        this.options.onMonitorError?.(
          `ip monitor exited (${r.exitCode ?? r.signal ?? r.code}): ${String(r.stderr ?? '').trim()}`,
        );
        // Events may have been missed until the next monitor runs: the agent's view of the kernel is stale.
        onEvent({ concernsUs: true, change: { kind: 'unreadable' } });
        return undefined;
      },
    });
  }
}
