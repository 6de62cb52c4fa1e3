// The nft driver, the only code that runs nftables' `nft`: through process.ts with argument
// arrays, never a shell. It owns one table, `table ip ipip-operator`, whole. A reconcile
// reads the table from an `nft -j -p -i` the driver keeps (kept-reader.ts: a read costs no
// process), and, when something changes, starts one `nft` to write the whole table as one
// transaction (`nft -f FILE`); another runs `nft monitor` for good. Once per process (and
// again every few minutes while it fails) a check-mode load of a sample table asks the
// kernel whether it can hold the table at all.

import { tmpdir } from 'node:os';
import type { ActionResult, NftAction } from '../../model/action.ts';
import type { KernelEvent, KernelInterest, NftState, ObservedRules } from '../../model/kernel.ts';
import { NFT_FAMILY, NFT_TABLE } from '../../model/ownership.ts';
import { BatchFiles } from '../batch-file.ts';
import type { CommandObserver, Driver, ObserveHint } from '../dataplane.ts';
import { KeptReader } from '../kept-reader.ts';
import { runTool, startTool } from '../process.ts';
import { superviseMonitor } from '../supervise.ts';
import { NftTransactions } from './monitor.ts';
import { parseNftListOutput, parseNftTable } from './parse.ts';
import { nftScript } from './render.ts';

export interface NftDriverOptions {
  /** The nft binary; "nft" from PATH by default. */
  nftPath?: string;
  /** A hung `nft` must not hang the agent. */
  timeoutMs?: number;
  onCommand?: CommandObserver;
  /** Told when the monitor process dies and is restarted. */
  onMonitorError?: (error: string) => void;
  /** Where a transaction is put for `nft` to read: os.tmpdir() by default (the chart mounts an emptyDir there). */
  batchDir?: string;
}

const BATCH_PREFIX = 'ipip-operator-nft-';

/** How long after its start an own write's transaction is still taken for its echo: well past the write's timeout. */
const OWN_WRITE_MS = 120_000;

/**
 * How long a failed probe stands before the next observe asks the kernel again: a node
 * does not gain nf_tables often (a module loaded, nftables installed), and a probe is
 * a process.
 */
export const REPROBE_MS = 5 * 60_000;

/**
 * What the probe loads in check mode: the table in the form apply writes, with a set and
 * a rule in each base chain (the raw prerouting filter, the nat postrouting masquerade),
 * so that a kernel lacking the ip family, nat or masquerade refuses it. Documentation
 * addresses (RFC 5737); nothing is committed.
 */
export const PROBE_TABLE: readonly ObservedRules[] = [
  {
    tunnel: 'probe',
    peerFilter: { local: '192.0.2.1', allowed: ['192.0.2.2'] },
    masquerade: { link: 'probe0', sources: ['198.51.100.0/24'] },
  },
];

/**
 * The kept reader's request: the names of the family's tables, the table, and a command
 * that always answers with one line and never names the table (the arp family's tables,
 * usually none), which ends the answer. `nft -i` answers a table that is not there on
 * stderr only, and stderr comes in on a pipe of its own, in no set order with stdout: the
 * first line says on stdout whether the table was there.
 */
export const KEPT_READ = [
  `list tables ${NFT_FAMILY}`,
  `list table ${NFT_FAMILY} ${NFT_TABLE}`,
  'list tables arp',
] as const;

/** The objects of a line of `nft -j` output; undefined when the line is not that. */
function nftObjects(line: string): readonly unknown[] | undefined {
  try {
    const objects = (JSON.parse(line) as { nftables?: unknown }).nftables;
    return Array.isArray(objects) ? objects : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a line's objects name the agent's table (the listing, or the family's names with it); undefined for a line that is not `nft -j` output. */
function namesOurTable(objects: readonly unknown[] | undefined): boolean | undefined {
  return objects?.some((o) => {
    const table = (o as { table?: { family?: string; name?: string } }).table;
    return table?.family === NFT_FAMILY && table.name === NFT_TABLE;
  });
}

/**
 * The kept reader's answer to KEPT_READ as its lines come, each line parsed once (the
 * listing of a 1,000-peer mesh is its largest JSON): whether the lines so far are all of
 * it, and then what it says.
 */
export class KeptAnswer {
  private readonly parsed: (readonly unknown[] | undefined)[] = [];

  /** The reader's check, with the lines so far: past the first, a line without the table ends the answer. */
  readonly complete = (lines: readonly string[]): boolean => {
    for (let i = this.parsed.length; i < lines.length; i++) this.parsed.push(nftObjects(lines[i]!));
    return this.parsed.length >= 2 && namesOurTable(this.parsed.at(-1)) !== true;
  };

  /**
   * What the answer says for sure: the table's objects (its listing, between the family's
   * names and the end), or absent (no listing after names without the table). Anything
   * else (the table gone between the two commands, an error) is undefined: the driver then
   * reads with a process of its own, whose exit says what happened.
   */
  result(): { objects: readonly unknown[] } | 'absent' | undefined {
    const [names, listing] = this.parsed;
    if (this.parsed.length === 3 && namesOurTable(listing) === true) return { objects: listing! };
    if (this.parsed.length === 2 && namesOurTable(names) === false) return 'absent';
    return undefined;
  }
}

/** The kernel lacks what the table needs: no nfnetlink ("Protocol not supported"), no ip family or nat ("Operation not supported"). */
const UNSUPPORTED = /Operation not supported|Protocol not supported/;

interface NftResult {
  exitCode?: number | undefined;
  timedOut: boolean;
  stdout: unknown;
  stderr: unknown;
  code?: unknown;
}

/** A run's answer when the binary is not there. */
function notInstalled(r: NftResult): boolean {
  return r.code === 'ENOENT';
}

/**
 * nft's error, short: its first "Error: ..." line without the file position nft puts
 * before it, and how many more there were (a refused transaction names every statement
 * it could not process; the first is the cause), or else its first line.
 */
export function nftError(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim());
  const errors = lines.filter((l) => /Error: /.test(l)).map((l) => l.replace(/^.*?Error: /, ''));
  if (errors.length === 0) return lines.find((l) => l !== '') ?? 'failed';
  const more = errors.length - 1;
  return more === 0 ? errors[0]! : `${errors[0]} (and ${more} more error${more === 1 ? '' : 's'})`;
}

export class NftDriver implements Driver<NftAction, NftState | undefined> {
  readonly tool = 'nft';
  private readonly nft: string;
  private readonly timeoutMs: number;
  private readonly options: NftDriverOptions;
  private readonly batches: BatchFiles;
  private readonly reader: KeptReader;

  /** The probe's answer: held for good once the kernel took the table; a refusal is asked again after REPROBE_MS. */
  private available: { ok: true } | { ok: false; why: string; at: number } | undefined;
  /** A probe under way: concurrent observes wait for the one answer. */
  private probing: Promise<void> | undefined;
  /**
   * The processes of the agent's own writes whose transaction the monitor has not reported
   * yet, with when they started: a transaction by one of them is an echo, not drift. A pid
   * goes when its transaction is seen, or after OWN_WRITE_MS (a write that failed commits
   * nothing), so a later process that happens to get the same pid is not taken for ours.
   */
  private readonly ownWrites = new Map<number, number>();
  /**
   * Whether the table may be in the kernel: it was at the last read or write, or someone
   * else changed it since, or the monitor died (what it missed is not known). While it
   * may not, and no tunnel can want rules, observe reads nothing.
   */
  private tableMayExist = true;

  constructor(options: NftDriverOptions = {}) {
    this.nft = options.nftPath ?? 'nft';
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.options = options;
    this.batches = new BatchFiles(options.batchDir ?? tmpdir(), BATCH_PREFIX);
    this.reader = new KeptReader({
      tool: 'nft',
      // -j: JSON; -p: protocol numbers (4, not "ipencap"); -i: commands from stdin, one answer each.
      start: () => startTool(this.nft, ['-j', '-p', '-i'], { stdin: 'pipe' }),
      timeoutMs: this.timeoutMs,
      onEnd: (seconds, stopped) => this.options.onCommand?.('nft', 'reader', seconds, stopped),
    });
  }

  /**
   * The table from the kept reader: its objects, 'absent', or undefined when the reader
   * cannot say for sure (KeptAnswer) or failed; the caller then reads with a process.
   */
  private async keptRead(): Promise<NftState | undefined> {
    const started = process.hrtime.bigint();
    try {
      const answer = new KeptAnswer();
      await this.reader.read(KEPT_READ, answer.complete);
      const said = answer.result();
      this.options.onCommand?.('nft', 'observe', Number(process.hrtime.bigint() - started) / 1e9, said !== undefined);
      if (said === undefined) return undefined;
      if (said === 'absent') return { available: true, table: false, rules: [] };
      return { available: true, table: true, rules: parseNftTable(said.objects) };
    } catch {
      this.options.onCommand?.('nft', 'observe', Number(process.hrtime.bigint() - started) / 1e9, false);
      return undefined;
    }
  }

  private async run(purpose: 'observe' | 'apply', args: string[], input?: string): Promise<NftResult> {
    const started = process.hrtime.bigint();
    const result = await runTool(this.nft, args, {
      ...(input === undefined ? {} : { input }),
      timeoutMs: this.timeoutMs,
      onStarted: (pid) => {
        if (purpose === 'apply') this.ownWrites.set(pid, Date.now());
      },
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.options.onCommand?.('nft', purpose, seconds, result.exitCode === 0);
    return result;
  }

  /** Whether `pid` is one of the agent's own writes (and forgets it: a write is one transaction). */
  private ownWrite(pid: number): boolean {
    const now = Date.now();
    for (const [p, at] of this.ownWrites) if (now - at > OWN_WRITE_MS) this.ownWrites.delete(p);
    return this.ownWrites.delete(pid);
  }

  /** Why the kernel cannot hold the table, as last found; undefined when it can or nobody has asked. */
  private unavailable(): string | undefined {
    return this.available?.ok === false ? this.available.why : undefined;
  }

  private refuse(why: string): NftState {
    this.available = { ok: false, why, at: Date.now() };
    return { available: false, why };
  }

  private notInstalledWhy(): string {
    return `nft is not installed (${this.nft} not found; Debian: apt-get install nftables), so the agent's nftables table cannot be written`;
  }

  /**
   * `nft -c -f -` of PROBE_TABLE: check mode sends the transaction to the kernel, which
   * validates it and throws it away (seen on 6.12: exit 0, nothing created; on Debian's
   * 6.1 UML: "Operation not supported", or "Unable to initialize Netlink socket: Protocol
   * not supported" without nfnetlink). stdin is fine here: nothing is committed, so a
   * cut-off script can do no harm. A timeout is not an answer: it throws, uncached.
   */
  private async probe(): Promise<void> {
    const r = await this.run('observe', ['-c', '-f', '-'], `${nftScript(PROBE_TABLE).join('\n')}\n`);
    if (notInstalled(r)) {
      this.refuse(this.notInstalledWhy());
    } else if (r.timedOut) {
      throw new Error(`nft: the check of the kernel's nftables timed out after ${this.timeoutMs} ms`);
    } else if (r.exitCode === 0) {
      this.available = { ok: true };
    } else {
      this.refuse(
        `the kernel cannot hold the agent's nftables table (nftables for the ip family with nat and masquerade): ` +
          `nft -c answered "${nftError(String(r.stderr))}"`,
      );
    }
  }

  private async ensureProbed(): Promise<void> {
    const a = this.available;
    if (a?.ok === true || (a !== undefined && Date.now() - a.at < REPROBE_MS)) return;
    this.probing ??= this.probe().finally(() => {
      this.probing = undefined;
    });
    await this.probing;
  }

  /**
   * The agent's table: one read of the kept `nft -j -p -i` (after the first probe, in
   * steady state), or of an `nft -j -p list table ip ipip-operator` when that one cannot
   * say for sure or no tunnel can want rules; undefined, with no process, when none can and
   * the table cannot be there (see tableMayExist).
   */
  async observe(hint?: ObserveHint): Promise<NftState | undefined> {
    // A node whose tunnels cannot want rules reads the table once, or when someone made it:
    // with a process of its own, and no kept `nft` waits meanwhile.
    const kept = hint?.rules !== false;
    if (!kept) this.reader.stop();
    if (!kept && !this.tableMayExist) return undefined;
    const state = await this.read(kept);
    this.tableMayExist = !state.available || state.table;
    return state;
  }

  private async read(kept: boolean): Promise<NftState> {
    // Whether the kernel can hold the table is asked (a process of its own) only for a node
    // whose tunnels can want rules. A read of a table left over answers for itself: a table,
    // none, or a kernel that has none (UNSUPPORTED). That is one process fewer at the start
    // of every agent whose tunnels are all point-to-point, about 0.1 to 0.2 s in the lab's
    // guests, where a process start (a fork of the agent) is that slow.
    if (kept) await this.ensureProbed();
    const why = this.unavailable();
    if (why !== undefined) return { available: false, why };
    const answer = kept ? await this.keptRead() : undefined;
    if (answer !== undefined) return answer;
    // -j: JSON; -p: protocol numbers, not names from /etc/protocols (4, not "ipencap").
    const r = await this.run('observe', ['-j', '-p', 'list', 'table', NFT_FAMILY, NFT_TABLE]);
    if (notInstalled(r)) return this.refuse(this.notInstalledWhy());
    const stderr = String(r.stderr);
    if (r.exitCode === 0 && !r.timedOut)
      return { available: true, table: true, rules: parseNftListOutput(String(r.stdout)) };
    // What nft answers for a table that is not there.
    if (!r.timedOut && /No such file or directory/.test(stderr)) return { available: true, table: false, rules: [] };
    if (UNSUPPORTED.test(stderr))
      return this.refuse(`the kernel cannot hold nftables tables of the ip family: nft answered "${nftError(stderr)}"`);
    throw new Error(
      `nft: reading table ${NFT_FAMILY} ${NFT_TABLE} failed: ${r.timedOut ? `timed out after ${this.timeoutMs} ms` : nftError(stderr)}`,
    );
  }

  /**
   * One `nft -f FILE` of the whole table after the write (every action carries it). The
   * transaction goes through a file, not a pipe: nft reads a pipe to its end and applies
   * what it got, and a script cut after `delete table` by an agent killed while writing it
   * would remove every rule. nft applies a file all or nothing, so a failure is every
   * action's. Nothing is run while the kernel is known not to hold the table.
   */
  async apply(actions: readonly NftAction[]): Promise<ActionResult[]> {
    if (actions.length === 0) return [];
    const fail = (error: string) => actions.map((action) => ({ action, error }));
    const why = this.unavailable();
    if (why !== undefined) return fail(why);
    const table = actions[0]!.table;
    if (actions.some((a) => a.table !== table && JSON.stringify(a.table) !== JSON.stringify(table)))
      return fail('nft actions of one write carry different tables; nothing was written');
    let script: string;
    try {
      script = `${nftScript(table).join('\n')}\n`;
    } catch (error) {
      return fail((error as Error).message);
    }
    const r = await this.batches.with(script, (file) => this.run('apply', ['-f', file]));
    if ('writeError' in r)
      return fail(`cannot write the nft transaction to ${this.batches.directory}: ${r.writeError}`);
    if (notInstalled(r)) {
      this.refuse(this.notInstalledWhy());
      return fail(this.notInstalledWhy());
    }
    if (r.timedOut) return fail(`nft -f timed out after ${this.timeoutMs} ms`);
    // After a failed write the table is whatever it was: it may be there.
    this.tableMayExist = r.exitCode !== 0 || table.length > 0;
    if (r.exitCode === 0) return actions.map((action) => ({ action }));
    const message = nftError(String(r.stderr));
    // The kernel refused the family or nat after all: say so at the next observe, before anything else is tried.
    if (UNSUPPORTED.test(message))
      this.refuse(`the kernel cannot hold the agent's nftables table: nft -f answered "${message}"`);
    return fail(`nft -f: ${message}`);
  }

  /**
   * `nft monitor`: every table's events, one transaction at a time (NftTransactions). A
   * transaction that touched the agent's table concerns it unless one of its own writes
   * made it (a write replaces the whole table with what the pass wanted: its echo is no
   * news). Restarted with backoff when it dies; while the kernel is known not to hold the
   * table, only as often as the probe.
   */
  watch(onEvent: (event: KernelEvent) => void, _interest: () => KernelInterest): () => void {
    let transactions: NftTransactions;
    return superviseMonitor({
      start: () => {
        // Lines cut off by a restart must not run into the next process's first transaction.
        transactions = new NftTransactions(
          (pid) => this.ownWrite(pid),
          (touched, own) => {
            if (touched && !own) this.tableMayExist = true;
            onEvent(
              touched
                ? { concernsUs: !own, change: { kind: 'nft', own } }
                : { concernsUs: false, change: { kind: 'elsewhere' } },
            );
          },
        );
        return startTool(this.nft, ['monitor'], { stdin: 'ignore' });
      },
      onLine: (line) => transactions.line(line),
      onEnd: (seconds, stopped) => this.options.onCommand?.('nft', 'monitor', seconds, stopped),
      onDeath: (r) => {
        // Known and reported in the state (tunnels that need rules are refused with it): no log line per restart.
        if (this.unavailable() !== undefined) return REPROBE_MS;
        this.options.onMonitorError?.(
          `nft monitor exited (${r.exitCode ?? r.signal ?? r.code}): ${nftError(String(r.stderr ?? ''))}`,
        );
        // Events may have been missed until the next monitor runs: the agent's view of the table is stale.
        this.tableMayExist = true;
        onEvent({ concernsUs: true, change: { kind: 'unreadable' } });
        return undefined;
      },
    });
  }
}
