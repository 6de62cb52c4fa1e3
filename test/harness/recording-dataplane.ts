// A Dataplane for fast tests of the controller loop: the kernel is the model of
// kernel-model.ts, every call is recorded, failures can be injected per action (as
// Felix's mock netlink and statedb's faulty table do), and kernel events are fed to the
// loop through the real monitor filter. Claims about the kernel itself are proven on a
// real kernel (test/kernel/), not here.

import type { Dataplane } from '../../src/dataplane/dataplane.ts';
import { monitorLineMatters } from '../../src/dataplane/ip/monitor.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import type { Action, ActionResult } from '../../src/model/action.ts';
import type { KernelInterest, KernelState } from '../../src/model/kernel.ts';
import { applyNftAction, applyOperation, ModelError } from './kernel-model.ts';

interface Injected {
  matches: (action: Action) => boolean;
  error: string;
  /** How many more actions it fails; Infinity until cleared. */
  remaining: number;
}

interface Watcher {
  onEvent: (concernsUs: boolean) => void;
  interest: () => KernelInterest;
}

/** Deleting what is already gone is success, as the ip driver counts it. */
const GONE = /Cannot find device|No such process/;

export class RecordingDataplane implements Dataplane {
  state: KernelState;
  /** How many times the kernel was read. */
  observes = 0;
  /** Each apply call's actions, as the `ip` lines they render to. */
  readonly applied: string[][] = [];
  private readonly injected: Injected[] = [];
  private readonly watchers = new Set<Watcher>();

  constructor(state: KernelState) {
    this.state = structuredClone(state);
  }

  /** Makes the next `times` actions that match fail with `error` (the kernel unchanged by them). */
  failWhen(
    matches: (action: Action) => boolean,
    error = 'RTNETLINK answers: Operation not permitted',
    times = Number.POSITIVE_INFINITY,
  ): void {
    this.injected.push({ matches, error, remaining: times });
  }

  clearFailures(): void {
    this.injected.length = 0;
  }

  /** Every `ip` line applied so far, in order. */
  get lines(): string[] {
    return this.applied.flat();
  }

  async observe(): Promise<KernelState> {
    this.observes += 1;
    return structuredClone(this.state);
  }

  async apply(actions: readonly Action[]): Promise<ActionResult[]> {
    if (actions.length === 0) return [];
    this.applied.push(renderPlan(actions));
    // Errors read as the ip driver's do: the command, then what the kernel answered.
    return actions.map((action) => {
      const lines = renderPlan([action]);
      const injected = this.injected.find((f) => f.remaining > 0 && f.matches(action));
      if (injected !== undefined) {
        injected.remaining -= 1;
        return { action, error: `${lines[0]}: ${injected.error}` };
      }
      if (action.tool === 'nft') {
        try {
          applyNftAction(this.state, action);
        } catch (error) {
          if (!(error instanceof ModelError)) throw error;
          return { action, error: `nft -f: ${error.message}` };
        }
        return { action };
      }
      for (const [i, o] of action.ops.entries()) {
        try {
          applyOperation(this.state, o);
        } catch (error) {
          if (!(error instanceof ModelError)) throw error;
          if (action.verb === 'delete' && GONE.test(error.message)) continue;
          return { action, error: `${lines[i]}: ${error.message}` };
        }
      }
      return { action };
    });
  }

  watch(onEvent: (concernsUs: boolean) => void, interest: () => KernelInterest): () => void {
    const watcher = { onEvent, interest };
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  /** Whether a monitor is listening (the loop subscribes at start and lets go on stop). */
  get watching(): boolean {
    return this.watchers.size > 0;
  }

  /**
   * Changes the kernel by hand (as a person with `ip` would) and tells the monitor with the
   * line `ip -o monitor` would print for it.
   */
  edit(change: (state: KernelState) => void, monitorLine: string): void {
    change(this.state);
    for (const w of this.watchers) w.onEvent(monitorLineMatters(monitorLine, w.interest()));
  }
}
