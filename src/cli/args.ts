// Flag values from the command line and the environment, checked before anything runs.

import { InputError } from '../api/manifest.ts';
import { objectNameProblem } from '../api/names.ts';
import { LOG_LEVELS } from '../report/log.ts';
import type { LogFormat, LogLevel } from '../report/log.ts';

/** "60s", "5m", "500ms", "1h", or a bare number of seconds. */
export function parseDuration(flag: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) throw new InputError(`--${flag}: "${text}" is not a duration like 60s, 5m or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!;
  const ms = Number(m[1]) * unit;
  if (ms <= 0) throw new InputError(`--${flag}: must be more than 0`);
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
