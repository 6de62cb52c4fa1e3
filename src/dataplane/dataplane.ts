// The seam between the controller and the kernel. The real implementation is iproute2.ts;
// unit tests of the controller loop may use a recording one, but claims about the kernel
// are proven on a real kernel (test/kernel).

import type { Action } from '../plan/types.ts';
import type { ObservedState } from './model.ts';
import type { KernelInterest } from './monitor.ts';

export interface ActionResult {
  action: Action;
  /** undefined when every command of the action succeeded (or a delete found nothing to delete). */
  error?: string;
}

export interface Dataplane {
  /** Reads links, addresses and routes: one consistent-enough snapshot. */
  observe(): Promise<ObservedState>;
  /** Runs the actions in order; a failed one does not stop the others. One result per action. */
  apply(actions: readonly Action[]): Promise<ActionResult[]>;
  /**
   * Calls onEvent for every change of links, addresses or routes, telling whether it
   * concerns `interest()` (asked at each event: it follows what the last reconcile
   * programmed); returns a stop function.
   */
  watch(onEvent: (concernsUs: boolean) => void, interest: () => KernelInterest): () => void;
}
