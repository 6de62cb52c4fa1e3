// A plan as a person would type it: each action's commands in its tool's syntax, in order.
// The same text the drivers run (minus the tool's name at the front of each `ip` line).

import type { Action } from '../model/action.ts';
import { ipLines } from './ip/render.ts';
import { nftScript } from './nft/render.ts';

/** An nft transaction as a shell would run it: the script on nft's standard input. */
function nftHereDocument(lines: readonly string[]): string[] {
  return ["nft -f - <<'EOF'", ...lines, 'EOF'];
}

/** One action's commands, each prefixed with its tool. A new tool's renderer is called here. */
export function renderAction(a: Action): string[] {
  switch (a.tool) {
    case 'ip':
      return ipLines(a).map((line) => `ip ${line}`);
    case 'nft':
      return nftHereDocument(nftScript(a.table));
  }
}

/**
 * Every action's commands in plan order. The nft actions of a plan are one transaction
 * (each carries the whole table after it), printed once where the first of them stands.
 */
export function renderPlan(actions: readonly Action[]): string[] {
  let nftDone = false;
  return actions.flatMap((a) => {
    if (a.tool !== 'nft') return renderAction(a);
    if (nftDone) return [];
    nftDone = true;
    return renderAction(a);
  });
}
