// What one reconcile of a node found and did: the input of reporting.

import type { ActionResult } from './action.ts';
import type { KernelState } from './kernel.ts';
import type { TunnelProblem, TunnelResolution } from './problem.ts';

export interface ReconcileOutcome {
  /** The kernel as read at the start of this reconcile (before its changes). */
  observed: KernelState;
  resolutions: TunnelResolution[];
  results: ActionResult[];
  /** Every tunnel that is not as its spec asks, and why: resolve errors, waiting, conflicts, kernel errors. */
  problems: TunnelProblem[];
}
