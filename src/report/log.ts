// Structured logs (winston). JSON for machines, text for people; both carry the same fields.

import winston from 'winston';
import TransportStream from 'winston-transport';

export type LogFormat = 'json' | 'text';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export type Logger = winston.Logger;

/** Where the lines go; stderr unless a caller (a benchmark, a test) gives its own. */
export type LogSink = (text: string) => void;

/** Where winston keeps a log entry's formatted line. */
const MESSAGE = Symbol.for('message');

const toStderr: LogSink = (text) => {
  process.stderr.write(text);
};

export function createLogger(options: { format: LogFormat; level: LogLevel; sink?: LogSink }): Logger {
  const stamp = winston.format((info) => {
    info.timestamp = stretchTimestamp();
    return info;
  })();
  const format =
    options.format === 'json'
      ? winston.format.combine(stamp, jsonLine)
      : winston.format.combine(
          stamp,
          winston.format.printf(({ timestamp, level, message, ...fields }) => {
            const rest = Object.entries(fields)
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${String(timestamp)} ${level} ${String(message)}${rest === '' ? '' : ` ${rest}`}`;
          }),
        );
  return winston.createLogger({
    level: options.level,
    format,
    transports: [new StretchTransport(options.sink ?? toStderr)],
  });
}

/** logform's JSON format: the fallback for what JSON.stringify cannot take (a cycle, a BigInt). */
const safeJson = winston.format.json();

/**
 * The entry as one line of JSON, level, message and timestamp first, then the fields in
 * the order they were given. V8's own JSON.stringify: logform's json format (keys sorted
 * by safe-stable-stringify) took a third longer to log a pass's 3,000 kernel changes
 * (13.0 against 9.0 ms on the host, medians of 40).
 */
const jsonLine = winston.format((info) => {
  try {
    const { level, message, timestamp } = info;
    (info as Record<symbol, unknown>)[MESSAGE] = JSON.stringify(Object.assign({ level, message, timestamp }, info));
    return info;
  } catch {
    return safeJson.transform(info, {});
  }
})();

let stretchStamp: string | undefined;

/**
 * The time, read once per synchronous stretch of code: the lines a pass logs in one loop
 * (5,000 kernel changes at 1,000 tunnels) describe one apply that ended at one moment, and
 * share its timestamp. A clock read is cheap on a host (a vDSO call), but a system call
 * where the vDSO is not available: 82 µs in the lab's User-Mode Linux guests, against
 * 0.1 µs on the host, so one per line was a quarter of a second at 1,000 tunnels there.
 * The next stretch (after any await) reads the clock again.
 */
function stretchTimestamp(): string {
  if (stretchStamp === undefined) {
    stretchStamp = new Date().toISOString();
    queueMicrotask(() => {
      stretchStamp = undefined;
    });
  }
  return stretchStamp;
}

/** Transports holding lines not yet written, flushed by the process's 'exit' too. */
const unflushed = new Set<StretchTransport>();
let flushOnExit = false;

/**
 * The lines of one synchronous stretch of code, written in one write at its end, in
 * order. A write is a system call, and a costly one in the lab's guests; one per line was
 * a write per kernel change. Lines logged just before the process exits (an exit 2 after
 * a refusal) are written by the 'exit' handler, which runs synchronously. On Linux, writes
 * to stderr are synchronous for files, pipes and terminals alike, so nothing is held past
 * the stretch. Not winston's Console transport: it also schedules a setImmediate per line
 * to emit 'logged' with the entry, so a reconcile that logs 5,000 kernel changes in one go
 * held all 5,000 entries until it ended (12 MiB, and 8 MiB of the agent's RSS at 1,000
 * tunnels: bench/memory.ts). winston-transport is the base winston documents for a
 * transport of one's own.
 */
class StretchTransport extends TransportStream {
  private pending: string[] = [];
  private readonly sink: LogSink;

  constructor(sink: LogSink) {
    super();
    this.sink = sink;
  }

  override log(info: Record<symbol, unknown>, next: () => void): void {
    if (this.pending.push(String(info[MESSAGE])) === 1) {
      unflushed.add(this);
      if (!flushOnExit) {
        flushOnExit = true;
        process.on('exit', () => {
          for (const transport of unflushed) transport.flush();
        });
      }
      queueMicrotask(() => this.flush());
    }
    next();
  }

  flush(): void {
    unflushed.delete(this);
    if (this.pending.length === 0) return;
    const text = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.sink(text);
  }
}
