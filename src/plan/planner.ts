// The interface every kind of kernel object is planned through. One planner per kind
// (links.ts, addresses.ts, routes.ts, rules.ts); engine.ts runs them all the same way: conflicts,
// then what to remove, then what to create or change, then the order. Pure.

import type { Action, ObjectKind, Verb } from '../model/action.ts';
import type { DesiredTunnel } from '../model/desired.ts';
import type { KernelState } from '../model/kernel.ts';
import type { TunnelProblem } from '../model/problem.ts';

/** The tunnel whose ownership alias an observed link of this name carries; undefined: not ours. */
export type LinkOwners = (linkName: string) => string | undefined;

/** An observed object that carries the agent's mark, with the tunnel it belongs to. */
export interface Owned<O> {
  object: O;
  owner: string;
}

export interface KindPlanner<D, O, Index> {
  readonly kind: ObjectKind;
  /** Where this kind's actions go in a plan, by verb; lower first. Removals come before additions. */
  readonly phase: Readonly<Record<Verb, number>>;
  /** The objects of this kind a tunnel wants. */
  desired(tunnel: DesiredTunnel): readonly D[];
  /** The objects of this kind the kernel has, the agent's and everyone else's. */
  observed(state: KernelState): readonly O[];
  /** Identity: a desired and an observed object with the same key are the same object. */
  desiredKey(d: D): string;
  observedKey(o: O): string;
  /** The tunnel whose mark the object carries; undefined: not the agent's, never changed or deleted. */
  owner(o: O, links: LinkOwners): string | undefined;
  /** The link the object lives on: when that link is deleted, the object goes with it. */
  parentLink(o: O): string | undefined;
  /** What the conflict test looks things up in, built once per plan (from this kind's objects, or the state). */
  index(observed: readonly O[], state: KernelState): Index;
  /** Something that is not the agent's in the way of d: then the tunnel gets no action at all. */
  conflict(tunnel: string, d: D, index: Index, links: LinkOwners): TunnelProblem | undefined;
  /**
   * The actions that make `current` (the agent's object with d's key, if any) into d;
   * `index` shows what else is in the way (another of the agent's tunnels, which lost the
   * claim to d in resolve).
   */
  diff(tunnel: string, d: D, current: Owned<O> | undefined, index: Index, links: LinkOwners): Action[];
  /** The action that removes an object of the agent's that no tunnel wants. */
  remove(owned: Owned<O>): Action;
}
