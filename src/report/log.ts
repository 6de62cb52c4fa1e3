// Structured logs (winston). JSON for machines, text for people; both carry the same fields.

import winston from 'winston';

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
  // Logs go to stderr: stdout is kept for command output (plan lines, the --once summary).
  return winston.createLogger({
    level: options.level,
    format,
    transports: [new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] })],
  });
}
