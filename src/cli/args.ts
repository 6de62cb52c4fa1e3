// Flag values from the command line and the environment, checked before anything runs.

import { InputError } from '../api/manifest.ts';
import { objectNameProblem } from '../api/names.ts';
import { LOG_LEVELS } from '../report/log.ts';
import type { LogFormat, LogLevel } from '../report/log.ts';

export interface DurationBounds {
  minMs: number;
  maxMs: number;
}

/**
 * The resync period's bounds: more often than every second is a busy loop on a node with
 * many tunnels; a timer cannot hold more than 2^31-1 ms (24.8 days: Node would fire it
 * every millisecond), and a resync once a day is already no defence against drift.
 */
export const RESYNC_BOUNDS: DurationBounds = { minMs: 1000, maxMs: 24 * 3_600_000 };

function shown(ms: number): string {
  return ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** "60s", "5m", "500ms", "1h", or a bare number of seconds, within bounds. */
export function parseDuration(flag: string, text: string, bounds: DurationBounds): number {
  const m = /^(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new InputError(`--${flag}: "${text}" is not a duration like 60s, 5m or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!;
  const ms = Math.round(Number(m[1]) * unit);
  if (ms < bounds.minMs || ms > bounds.maxMs) {
    throw new InputError(`--${flag}: "${text}" is outside ${shown(bounds.minMs)} to ${shown(bounds.maxMs)}`);
  }
  return ms;
}

export function parseLogFormat(text: string): LogFormat {
  if (text === 'json' || text === 'text') return text;
  throw new InputError(`--log-format: must be json or text, got "${text}"`);
}

export function parseLogLevel(text: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(text)) return text as LogLevel;
  throw new InputError(`--log-level: must be one of ${LOG_LEVELS.join(', ')}, got "${text}"`);
}

export function parseNodeName(flag: string, text: string | undefined): string {
  if (text === undefined || text === '') {
    throw new InputError(`--${flag} is required (or the NODE_NAME environment variable, as the downward API sets it)`);
  }
  const problem = objectNameProblem(text, 253);
  if (problem !== undefined) throw new InputError(`--${flag}: "${text}" ${problem}`);
  return text;
}
