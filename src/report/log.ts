// Structured logs (winston). JSON for machines, text for people; both carry the same fields.

import winston from 'winston';
import TransportStream from 'winston-transport';

export type LogFormat = 'json' | 'text';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

export type Logger = winston.Logger;

export function createLogger(options: { format: LogFormat; level: LogLevel }): Logger {
  const format =
    options.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(
          winston.format.timestamp(),
          winston.format.printf(({ timestamp, level, message, ...fields }) => {
            const rest = Object.entries(fields)
              .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
              .join(' ');
            return `${String(timestamp)} ${level} ${String(message)}${rest === '' ? '' : ` ${rest}`}`;
          }),
        );
  return winston.createLogger({ level: options.level, format, transports: [new StderrTransport()] });
}

/** Where winston keeps a log entry's formatted line. */
const MESSAGE = Symbol.for('message');

/**
 * Every line to stderr (stdout is kept for command output: plan lines, the --once summary),
 * written at once. Not winston's Console transport: it also schedules a setImmediate per
 * line to emit 'logged' with the entry, so a reconcile that logs 5,000 kernel changes in
 * one go held all 5,000 entries until it ended (12 MiB, and 8 MiB of the agent's RSS at
 * 1,000 tunnels: bench/memory.ts). On Linux, writes to stderr are synchronous for files,
 * pipes and terminals alike, so nothing is buffered here either. winston-transport is the
 * base winston documents for a transport of one's own.
 */
class StderrTransport extends TransportStream {
  override log(info: Record<symbol, unknown>, next: () => void): void {
    process.stderr.write(`${String(info[MESSAGE])}\n`);
    next();
  }
}
