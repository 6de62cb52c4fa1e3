// A plan as a person would type it: each action's commands in its tool's syntax, in order.
// The same text the drivers run (minus the tool's name at the front of each line).

import type { Action } from '../model/action.ts';
import { ipLines } from './ip/render.ts';

/** One action's commands, each prefixed with its tool. A new tool's renderer is called here. */
export function renderAction(a: Action): string[] {
  switch (a.tool) {
    case 'ip':
      return ipLines(a).map((line) => `ip ${line}`);
  }
}

export function renderPlan(actions: readonly Action[]): string[] {
  return actions.flatMap(renderAction);
}
