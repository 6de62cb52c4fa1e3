// Structured logs: JSON for machines, text for people; both carry the same fields.
//
// Not winston: the agent logs a message and its fields at four levels to stderr, and needs
// nothing else of it (no transports, no profiling, no streams). Loading winston and logform
// cost 1,360 page faults and 9 MiB of RSS at start-up, and a quarter of a second in the
// lab's User-Mode Linux guests, where a page fault costs about 100 µs (bench/RESULTS.md,
// "Start-up"); this module is what the agent used of it.

export type LogFormat = 'json' | 'text';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/** A line's fields, after its level, message and timestamp (which a field of that name does not replace). */
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
  /** Whether debug lines are written: a caller can skip building fields nobody reads. */
  isDebugEnabled(): boolean;
}

/** Where the lines go; stderr unless a caller (a benchmark, a test) gives its own. */
export type LogSink = (text: string) => void;

const toStderr: LogSink = (text) => {
  process.stderr.write(text);
};

export function createLogger(options: { format: LogFormat; level: LogLevel; sink?: LogSink }): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level);
  const lines = new StretchWriter(options.sink ?? toStderr);
  const line = options.format === 'json' ? jsonLine : textLine;
  const at =
    (level: LogLevel) =>
    (message: string, fields: LogFields = {}): void => {
      if (LOG_LEVELS.indexOf(level) <= threshold) lines.push(line(level, message, stretchTimestamp(), fields));
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    isDebugEnabled: () => threshold >= LOG_LEVELS.indexOf('debug'),
  };
}

/**
 * The entry as one line of JSON, level, message and timestamp first, then the fields in
 * the order they were given, by V8's own JSON.stringify (winston's json format, keys sorted
 * by safe-stable-stringify, took a third longer to log a pass's 3,000 kernel changes:
 * 13.0 against 9.0 ms on the host, medians of 40). A field JSON cannot take (a BigInt, a
 * cycle) still makes a line: see jsonSafe.
 */
function jsonLine(level: LogLevel, message: string, timestamp: string, fields: LogFields): string {
  const entry = Object.assign({ level, message, timestamp }, fields, { level, message, timestamp });
  try {
    return JSON.stringify(entry);
  } catch {
    return JSON.stringify(jsonSafe(entry, []));
  }
}

/** `time level message key=value...`: strings as they are, anything else as JSON. */
function textLine(level: LogLevel, message: string, timestamp: string, fields: LogFields): string {
  let text = `${timestamp} ${level} ${message}`;
  for (const [key, value] of Object.entries(fields)) {
    text += ` ${key}=${typeof value === 'string' ? value : JSON.stringify(jsonSafe(value, []))}`;
  }
  return text;
}

/**
 * `value` with what JSON.stringify refuses replaced: a BigInt by its digits, an object that
 * contains itself by "[Circular]" where it recurs (as winston's json format wrote them).
 */
function jsonSafe(value: unknown, ancestors: object[]): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value !== 'object' || value === null) return value;
  if (ancestors.includes(value)) return '[Circular]';
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return jsonSafe(toJSON.call(value), ancestors);
  const inner = [...ancestors, value];
  if (Array.isArray(value)) return value.map((v) => jsonSafe(v, inner));
  const copy: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) copy[k] = jsonSafe(v, inner);
  return copy;
}

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

/** Writers holding lines not yet written, flushed by the process's 'exit' too. */
const unflushed = new Set<StretchWriter>();
let flushOnExit = false;

/**
 * The lines of one synchronous stretch of code, written in one write at its end, in
 * order. A write is a system call, and a costly one in the lab's guests; one per line was
 * a write per kernel change. Lines logged just before the process exits (an exit 2 after
 * a refusal) are written by the 'exit' handler, which runs synchronously. On Linux, writes
 * to stderr are synchronous for files, pipes and terminals alike, so nothing is held past
 * the stretch, and a line is kept only as its text (winston's Console transport kept each
 * entry until a setImmediate per line had run: 5,000 entries, 12 MiB, for a pass that
 * logged 5,000 kernel changes).
 */
class StretchWriter {
  private pending: string[] = [];
  private readonly sink: LogSink;

  constructor(sink: LogSink) {
    this.sink = sink;
  }

  push(line: string): void {
    if (this.pending.push(line) === 1) {
      unflushed.add(this);
      if (!flushOnExit) {
        flushOnExit = true;
        process.on('exit', () => {
          for (const writer of unflushed) writer.flush();
        });
      }
      queueMicrotask(() => this.flush());
    }
  }

  flush(): void {
    unflushed.delete(this);
    if (this.pending.length === 0) return;
    const text = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.sink(text);
  }
}
