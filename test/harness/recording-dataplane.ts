// A Dataplane for fast tests of the controller loop: the kernel is the model of
// kernel-model.ts, every call is recorded, failures can be injected per action (as
// Felix's mock netlink and statedb's faulty table do), and kernel events are fed to the
// loop through the real monitor filter. Claims about the kernel itself are proven on a
// real kernel (test/kernel/), not here.

import type { Dataplane } from '../../src/dataplane/dataplane.ts';
import { monitorLineMatters, parseMonitorLine, routeConcerns } from '../../src/dataplane/ip/monitor.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import type { Action, ActionResult } from '../../src/model/action.ts';
import type { KernelChange, KernelEvent, KernelInterest, KernelState, ObservedRoute } from '../../src/model/kernel.ts';
import { routeKey } from '../../src/plan/routes.ts';
import { ROUTE_PROTOCOL } from '../../src/model/ownership.ts';
import { applyNftAction, applyOperation, ModelError } from './kernel-model.ts';

interface Injected {
  matches: (action: Action) => boolean;
  error: string;
  /** How many more actions it fails; Infinity until cleared. */
  remaining: number;
}

interface Watcher {
  onEvent: (event: KernelEvent) => void;
  interest: () => KernelInterest;
}

const keyOf = (r: ObservedRoute) => routeKey(r.dst, r.metric);

/**
 * The events a kernel sends for the difference between two states, as its monitors would
 * report them: each changed link as it is now (or was, deleted), each address and route
 * added or deleted; the nftables table's rewrite as the agent's own transaction.
 */
export function changesBetween(before: KernelState, after: KernelState, nftWritten: boolean): KernelChange[] {
  const changes: KernelChange[] = [];
  const strip = (l: KernelState['links'][number]) => {
    const { addresses: _addresses, stats: _stats, ...link } = l;
    return link;
  };
  const was = new Map(before.links.map((l) => [l.index, l]));
  const now = new Map(after.links.map((l) => [l.index, l]));
  for (const [index, l] of was) {
    if (!now.has(index)) changes.push({ kind: 'link', deleted: true, link: strip(l) });
  }
  for (const [index, l] of now) {
    const old = was.get(index);
    if (old === undefined || JSON.stringify(strip(old)) !== JSON.stringify(strip(l))) {
      changes.push({ kind: 'link', deleted: false, link: strip(l) });
    }
    const key = (a: { local: string; prefixlen: number; peer?: string }) => `${a.local}/${a.prefixlen} ${a.peer ?? ''}`;
    const oldAddresses = new Set((old?.addresses ?? []).map(key));
    const newAddresses = new Set(l.addresses.map(key));
    for (const a of old?.addresses ?? []) {
      if (!newAddresses.has(key(a))) changes.push({ kind: 'address', deleted: true, dev: l.name, address: a });
    }
    for (const a of l.addresses) {
      if (!oldAddresses.has(key(a))) changes.push({ kind: 'address', deleted: false, dev: l.name, address: a });
    }
  }
  const oldRoutes = new Map(before.routes.map((r) => [keyOf(r), r]));
  const newRoutes = new Map(after.routes.map((r) => [keyOf(r), r]));
  for (const [k, r] of oldRoutes) if (!newRoutes.has(k)) changes.push({ kind: 'route', deleted: true, route: r });
  for (const [k, r] of newRoutes) {
    const old = oldRoutes.get(k);
    if (old === undefined || JSON.stringify(old) !== JSON.stringify(r))
      changes.push({ kind: 'route', deleted: false, route: r });
  }
  if (nftWritten) changes.push({ kind: 'nft', own: true });
  return changes;
}

/** Whether the real monitors would say an echo concerns the agent (see monitorLineMatters). */
function echoConcerns(change: KernelChange, interest: KernelInterest): boolean {
  switch (change.kind) {
    case 'route':
      return routeConcerns(
        change.route.dst,
        change.route.protocol === ROUTE_PROTOCOL,
        change.route.dev === undefined ? [] : [change.route.dev],
        interest,
      );
    case 'nft':
      return !change.own;
    case 'elsewhere':
      return false;
    default:
      return true;
  }
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
    const before = structuredClone(this.state);
    const results = this.applyAll(actions);
    // The kernel's echoes of the writes, as its monitors report them.
    const nftWritten = results.some((r) => r.action.tool === 'nft' && r.error === undefined);
    this.emit(changesBetween(before, this.state, nftWritten));
    return results;
  }

  private emit(changes: readonly KernelChange[]): void {
    for (const w of this.watchers) {
      for (const change of changes) w.onEvent({ concernsUs: echoConcerns(change, w.interest()), change });
    }
  }

  private applyAll(actions: readonly Action[]): ActionResult[] {
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

  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void {
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
    for (const w of this.watchers) {
      w.onEvent({ concernsUs: monitorLineMatters(monitorLine, w.interest()), change: parseMonitorLine(monitorLine) });
    }
  }
}
