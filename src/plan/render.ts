// The one renderer of `ip` commands: apply feeds its output to `ip -batch`, the plan CLI
// prints it, golden tests compare it. Every token is checked here, last, so that nothing a
// user wrote can become an option, a second command or a comment in the batch.

import type { Action } from './types.ts';

/** Names, IPv4 addresses and prefixes, numbers, keywords and the ownership alias. */
const SAFE_TOKEN = /^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$/;

export function assertSafeToken(token: string): string {
  if (!SAFE_TOKEN.test(token)) throw new Error(`refusing to pass ${JSON.stringify(token)} to ip: not a plain name, address or number`);
  return token;
}

/** One command as a batch line (and, with "ip " before it, as a shell line). */
export function renderCommand(argv: readonly string[]): string {
  return argv.map(assertSafeToken).join(' ');
}

export function renderActions(actions: readonly Action[]): string[] {
  return actions.flatMap((a) => a.commands.map(renderCommand));
}

/** The plan as a person would type it. */
export function renderShell(actions: readonly Action[]): string[] {
  return renderActions(actions).map((line) => `ip ${line}`);
}
