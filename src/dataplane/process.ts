// The one place that starts processes: the drivers' tools (`ip`, `nft`), by path and an
// argument array, never through a shell, so no name or address that reaches a tool is ever
// parsed as shell syntax. Two kinds: a run (its input, then its whole output and how it
// ended) and a kept process (a reader or a monitor, its streams the caller's).
//
// Not execa: the agent needs these two things of it, and loading it cost 2,100 page faults
// and 15 MiB of peak RSS at start-up (its own modules and the built-ins they import: worker
// threads, v8 serialization, dgram, the readline history), a fifth of a second in the lab's
// User-Mode Linux guests (bench/RESULTS.md, "Start-up"). What it did for us that Node's
// spawn does not is here: the spawn error as the result (ENOENT when the tool is not
// installed), a timeout that says it fired, stdin errors caught (EPIPE from a tool that
// exited first), and kept processes killed when the agent exits.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

/** How a tool's process ended. */
export interface ToolExit {
  /** Its exit status; undefined when a signal ended it or it never started. */
  exitCode: number | undefined;
  /** The signal that ended it (SIGTERM or SIGKILL after a timeout). */
  signal: string | undefined;
  /** The spawn error's code ("ENOENT" when the binary is not there); undefined when it started. */
  code: string | undefined;
  /** The end of what it wrote to stderr (a kept process's last STDERR_KEPT characters). */
  stderr: string;
}

/** A run's whole answer. */
export interface ToolResult extends ToolExit {
  stdout: string;
  /** The run was killed because it took longer than its timeout. */
  timedOut: boolean;
}

/** The most of a kept process's stderr its exit keeps (the end: an error is at the end). */
const STDERR_KEPT = 4096;
/** After a timeout's SIGTERM, how long a process has before SIGKILL. */
const KILL_GRACE_MS = 2000;

/** Kept processes still running: killed when the agent exits, as a child left over would hold on. */
const kept = new Set<ChildProcess>();
let killOnExit = false;

function keep(child: ChildProcess): void {
  kept.add(child);
  if (!killOnExit) {
    killOnExit = true;
    process.on('exit', () => {
      for (const c of kept) c.kill();
    });
  }
}

/** The child's end: its 'close' (streams drained), or its spawn error. Settles once. */
function ended(child: ChildProcess, stderr: () => string): Promise<ToolExit> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (exit: ToolExit) => {
      if (settled) return;
      settled = true;
      kept.delete(child);
      resolve(exit);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      // A spawn that failed never emits 'close' with a status; anything else is not an end.
      if (child.pid === undefined) {
        settle({ exitCode: undefined, signal: undefined, code: error.code ?? error.message, stderr: stderr() });
      }
    });
    child.once('close', (status: number | null, signal: NodeJS.Signals | null) => {
      settle({ exitCode: status ?? undefined, signal: signal ?? undefined, code: undefined, stderr: stderr() });
    });
  });
}

/**
 * Runs `file` with `args` to its end: `input` on its stdin (else none), its stdout and
 * stderr whole. Past `timeoutMs` it is sent SIGTERM, then SIGKILL; the result says so.
 * `onStarted` is told its pid once it runs (nft's own writes are known by it). Never
 * rejects: a tool that is not installed is a result with code "ENOENT".
 */
export async function runTool(
  file: string,
  args: readonly string[],
  options: { input?: string; timeoutMs: number; onStarted?: (pid: number) => void },
): Promise<ToolResult> {
  const child = spawn(file, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (child.pid !== undefined) options.onStarted?.(child.pid);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  if (options.input !== undefined && child.stdin !== null) {
    // A tool that exits before it has read everything (or never started) closes the pipe: EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input);
  }
  let timedOut = false;
  let forceKill: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGTERM');
    forceKill = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
  }, options.timeoutMs);
  const exit = await ended(child, () => stderr.join(''));
  clearTimeout(timer);
  clearTimeout(forceKill);
  return { ...exit, stdout: stdout.join(''), timedOut };
}

/** A process kept running: its streams are the caller's to read and write. */
export interface KeptProcess extends PromiseLike<ToolExit> {
  readonly pid: number | undefined;
  /** Its stdin with `stdin: 'pipe'`, else null. */
  readonly stdin: Writable | null;
  readonly stdout: Readable;
  /** Its stderr: the caller may read it too; its last STDERR_KEPT characters are also in the exit. */
  readonly stderr: Readable;
  kill(signal?: NodeJS.Signals): boolean;
  /** Whether the process keeps the agent's event loop alive (it does, as started). */
  ref(): void;
  unref(): void;
}

/** Starts `file` with `args` and keeps it: a reader (`stdin: 'pipe'`) or a monitor (`'ignore'`). */
export function startTool(file: string, args: readonly string[], options: { stdin: 'pipe' | 'ignore' }): KeptProcess {
  const child = spawn(file, args, { stdio: [options.stdin, 'pipe', 'pipe'] });
  keep(child);
  // Nobody may read a monitor's stderr, and a full pipe would stop the tool: always drained.
  let stderrTail = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_KEPT);
  });
  child.stdin?.on('error', () => {});
  const exit = ended(child, () => stderrTail);
  return {
    pid: child.pid,
    stdin: child.stdin,
    stdout: child.stdout as Readable,
    stderr: child.stderr as Readable,
    kill: (signal) => child.kill(signal),
    ref: () => child.ref(),
    unref: () => child.unref(),
    // biome-ignore lint/suspicious/noThenProperty: a kept process is awaited for its end, as a child of execa was.
    then: (onExit, onError) => exit.then(onExit, onError),
  };
}
