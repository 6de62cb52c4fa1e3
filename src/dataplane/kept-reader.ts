// A reader process kept for the agent's life: each read writes its show commands to the
// process's stdin and takes its answer, lines of JSON, from its stdout. A read then costs
// the kernel's dumps and their printing, not a process: starting `ip` or `nft` is most of a
// small read's time (about 100 ms in the UML guests, bench/RESULTS.md), and the agent reads
// at every pass. The ip driver keeps `ip -json ... -batch -` (one line per command: iproute2
// ends each command's JSON with a newline and flushes it); the nft driver keeps `nft -j -i`
// (one line per command that succeeds; an error goes to stderr only, so its reads say when
// their answer is complete).
//
// Only reads go here. A write stays one process of its own per pass (batch-file.ts says why
// a pipe is not safe for writes); a read cut off by the agent's death is only a shorter read.
// What a tool keeps between the commands of one process is the driver's to check (iproute2's
// cache of interface names: namesCacheVerdict in ip/driver.ts).
//
// A process that exits fails the read under way, and the next read starts a new process. A
// read that has no answer in time kills it, for the same outcome. An idle reader does not
// keep the agent's process alive (`--once` exits when its pass is done, and the tool then
// sees the end of its input).

import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/** What the reader needs of a started process (a kept process of process.ts, with `stdin: 'pipe'`). */
export interface ReaderProcess
  extends PromiseLike<{ exitCode?: number | undefined; signal?: string | undefined; code?: unknown }> {
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
  kill(signal?: NodeJS.Signals): unknown;
  /** Whether the process keeps the agent's event loop alive. */
  ref(): unknown;
  unref(): unknown;
}

export interface KeptReaderOptions {
  /** The tool's name, for messages. */
  tool: string;
  /** Starts the process (the driver's tool, so that only drivers run tools). */
  start: () => ReaderProcess;
  /** A read with no answer in this time kills the process. */
  timeoutMs: number;
  /** Told when a process ends: how long it ran, and whether it ended because the reader was stopped. */
  onEnd?: (seconds: number, stopped: boolean) => void;
}

/** The most of the tool's stderr a read keeps (its last bytes: the error is at the end). */
const STDERR_KEPT = 4096;

/**
 * Why a read failed: its process ended (exited), gave no answer in time (killed then),
 * printed what no read asked for, or the reader was stopped meanwhile.
 */
export class ReaderError extends Error {
  readonly kind: 'exited' | 'timeout' | 'protocol' | 'stopped';
  constructor(kind: ReaderError['kind'], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** One read's lines, and which process answered (a number of its own for each process the reader starts). */
export interface ReaderAnswer {
  lines: string[];
  process: number;
}

/** Whether the lines so far are a read's whole answer. */
export type AnswerComplete = (lines: readonly string[]) => boolean;

interface Running {
  id: number;
  child: ReaderProcess;
  started: bigint;
  stderr: string;
  exited: boolean;
  /** Ended by stop(), not by a failure. */
  stopping: boolean;
}

interface PendingRead {
  /** The process this read asked: a line or an exit of another is not its answer. */
  running: Running;
  complete: AnswerComplete;
  lines: string[];
  resolve: (answer: ReaderAnswer) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class KeptReader {
  private readonly options: KeptReaderOptions;
  private running: Running | undefined;
  private current: PendingRead | undefined;
  /** Reads wait their turn: one in flight, so each line belongs to the read that asked for it. */
  private queue: Promise<unknown> = Promise.resolve();
  private started = 0;

  constructor(options: KeptReaderOptions) {
    this.options = options;
  }

  /**
   * Runs these show commands; resolves with their lines once `complete` says they are all
   * there (by default: one line per command).
   */
  read(
    commands: readonly string[],
    complete: AnswerComplete = (lines) => lines.length === commands.length,
  ): Promise<ReaderAnswer> {
    const turn = this.queue.then(() => this.readNow(commands, complete));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /**
   * Ends the process (its input closed, and a SIGTERM); a later read starts a new one.
   * Its end is counted as stopped, not as a failure.
   */
  stop(): void {
    const running = this.running;
    if (running === undefined) return;
    running.stopping = true;
    this.retire(running, new ReaderError('stopped', 'the reader was stopped'));
    running.child.stdin?.end();
    running.child.kill('SIGTERM');
  }

  private readNow(commands: readonly string[], complete: AnswerComplete): Promise<ReaderAnswer> {
    const running = this.running ?? this.begin();
    return new Promise<ReaderAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.retire(running, new ReaderError('timeout', `no answer in ${this.options.timeoutMs} ms`));
        running.child.kill('SIGKILL');
      }, this.options.timeoutMs);
      this.current = { running, complete, lines: [], resolve, reject, timer };
      running.stderr = '';
      // Held open only while a read waits for its answer.
      setRef(running.child, true);
      running.child.stdin?.write(`${commands.join('\n')}\n`);
    });
  }

  private begin(): Running {
    const child = this.options.start();
    this.started += 1;
    const running: Running = {
      id: this.started,
      child,
      started: process.hrtime.bigint(),
      stderr: '',
      exited: false,
      stopping: false,
    };
    this.running = running;
    // Lines of JSON; readline puts together a line that comes in pieces.
    if (child.stdout !== null)
      createInterface({ input: child.stdout }).on('line', (line) => this.onLine(running, line));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      running.stderr = (running.stderr + chunk).slice(-STDERR_KEPT);
    });
    // A write into a pipe whose reader died: the exit says what happened.
    child.stdin?.on('error', () => {});
    void Promise.resolve(child).then(
      // A spawn error's code ("ENOENT" when there is no `ip`) when there is no exit code or signal.
      (exit) => this.onExit(running, exit.exitCode ?? exit.signal ?? exit.code),
      (error: unknown) => this.onExit(running, String(error)),
    );
    return running;
  }

  private onLine(running: Running, line: string): void {
    const read = this.current;
    if (read === undefined || read.running !== running) {
      // Output nobody asked for: whose the lines are is no longer known. Start over.
      this.retire(running, new ReaderError('protocol', `${this.options.tool} printed a line no read asked for`));
      running.child.kill('SIGKILL');
      return;
    }
    read.lines.push(line);
    if (read.complete(read.lines)) this.settle(read, () => read.resolve({ lines: read.lines, process: running.id }));
  }

  private onExit(running: Running, how: unknown): void {
    running.exited = true;
    this.options.onEnd?.(Number(process.hrtime.bigint() - running.started) / 1e9, running.stopping);
    const said = running.stderr.trim();
    this.retire(
      running,
      new ReaderError(
        'exited',
        `${this.options.tool} exited (${String(how ?? 'unknown')})${said === '' ? '' : `: ${said}`}`,
      ),
    );
  }

  /** No more reads go to this process (the next starts a new one); the read it owes fails with why. */
  private retire(running: Running, why: ReaderError): void {
    if (this.running === running) this.running = undefined;
    const read = this.current;
    if (read?.running === running) this.settle(read, () => read.reject(why));
  }

  private settle(read: PendingRead, done: () => void): void {
    clearTimeout(read.timer);
    if (this.current === read) this.current = undefined;
    if (!read.running.exited) setRef(read.running.child, false);
    done();
  }
}

/** A process and its pipes hold the agent's event loop open, or not. */
function setRef(child: ReaderProcess, ref: boolean): void {
  if (ref) child.ref();
  else child.unref();
  for (const pipe of [child.stdin, child.stdout, child.stderr]) {
    // The pipes are sockets; ref and unref are not on the stream types.
    const socket = pipe as { ref?: () => void; unref?: () => void } | null;
    if (ref) socket?.ref?.();
    else socket?.unref?.();
  }
}
