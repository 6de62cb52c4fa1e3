// The seam between the controller and the kernel, and how it is made of one driver per
// tool. The controller sees one Dataplane; each driver (ip/driver.ts, nft/driver.ts) owns
// its tool: a read (nft: a process; ip: a request to its reader process), one process to
// write every action of a reconcile, and a monitor.
// Unit tests of the controller loop use a recording Dataplane (test/harness/); claims
// about the kernel are proven on a real kernel (test/kernel/).

import type { Action, ActionResult, IpAction, NftAction, Tool } from '../model/action.ts';
import type { KernelEvent, KernelInterest, KernelState, NftState } from '../model/kernel.ts';
import type { SysctlReader } from './sysctl/driver.ts';

/** What a pass may need of the kernel beyond links, addresses and routes. */
export interface ObserveHint {
  /**
   * Whether any tunnel can want rules in the agent's nftables table (resolve's
   * mayWantRules). When none can, the table is read only while it may exist (it was there
   * at the last read, or someone else changed it since): a node of point-to-point tunnels
   * runs no nft process per pass.
   */
  rules: boolean;
}

export interface Dataplane {
  /** Reads links, addresses and routes (and the agent's nftables table, see ObserveHint): one consistent-enough snapshot. */
  observe(hint?: ObserveHint): Promise<KernelState>;
  /** Runs the actions in order; a failed one does not stop the others. One result per action, in order. */
  apply(actions: readonly Action[]): Promise<ActionResult[]>;
  /**
   * Calls onEvent for every change of links, addresses, routes or the agent's nftables
   * table: what changed, and whether it concerns `interest()` (asked at each event: it
   * follows what the last reconcile programmed); returns a stop function.
   */
  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void;
}

/**
 * Called after every command a driver runs: its tool, what it was for, how long it took,
 * whether it succeeded. A write is a process; ip's read is a request to its reader process
 * (kept-reader.ts; nft's read too, falling back to a process of its own); the monitors and the readers are told when their process ends.
 */
export type CommandObserver = (
  tool: Tool,
  purpose: 'observe' | 'apply' | 'monitor' | 'reader',
  seconds: number,
  ok: boolean,
) => void;

/** The part of the dataplane that one tool does: it reads S, the part of the kernel state that is its tool's. */
export interface Driver<A extends Action, S> {
  readonly tool: A['tool'];
  observe(hint?: ObserveHint): Promise<S>;
  apply(actions: readonly A[]): Promise<ActionResult[]>;
  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void;
}

/** Every tool's driver: the Dataplane the agent runs on a real node. */
export interface Drivers {
  ip: Driver<IpAction, KernelState>;
  /** The agent's nftables table (undefined: not read this time); absent: never read, and nft actions fail. */
  nft?: Driver<NftAction, NftState | undefined>;
  /** Settings read, never written; absent: not read. */
  sysctl?: SysctlReader;
}

export class KernelDataplane implements Dataplane {
  private readonly drivers: Drivers;

  constructor(drivers: Drivers) {
    this.drivers = drivers;
  }

  async observe(hint?: ObserveHint): Promise<KernelState> {
    const [state, nft, ipv4Forwarding] = await Promise.all([
      this.drivers.ip.observe(),
      this.drivers.nft?.observe(hint),
      this.drivers.sysctl?.ipv4Forwarding(),
    ]);
    return {
      ...state,
      ...(nft === undefined ? {} : { nft }),
      ...(ipv4Forwarding === undefined ? {} : { ipv4Forwarding }),
    };
  }

  /**
   * Each tool's actions go to its driver in one write, in plan order; the tools run one
   * after the other in the order of their first action, and the results come back in the
   * actions' order.
   */
  async apply(actions: readonly Action[]): Promise<ActionResult[]> {
    const byTool = new Map<Tool, Action[]>();
    for (const a of actions) {
      const list = byTool.get(a.tool);
      if (list === undefined) byTool.set(a.tool, [a]);
      else list.push(a);
    }
    const results = new Map<Action, ActionResult>();
    for (const [tool, list] of byTool) {
      for (const r of await this.applyWith(tool, list)) results.set(r.action, r);
    }
    return actions.map((a) => results.get(a) ?? { action: a, error: `no result from the ${a.tool} driver` });
  }

  private applyWith(tool: Tool, actions: readonly Action[]): Promise<ActionResult[]> {
    switch (tool) {
      case 'ip':
        return this.drivers.ip.apply(actions as IpAction[]);
      case 'nft': {
        const nft = this.drivers.nft;
        if (nft === undefined) return Promise.resolve(actions.map((action) => ({ action, error: 'no nft driver' })));
        return nft.apply(actions as NftAction[]);
      }
    }
  }

  /** Every driver's monitor: a change the agent cares about in any tool's objects wakes it. */
  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void {
    const stops = [this.drivers.ip.watch(onEvent, interest)];
    if (this.drivers.nft !== undefined) stops.push(this.drivers.nft.watch(onEvent, interest));
    return () => {
      for (const stop of stops) stop();
    };
  }
}
