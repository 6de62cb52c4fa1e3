// plan: desired state (from resolve) vs observed kernel state -> ordered actions. Pure.
// Every kind of object goes through the same steps with its own planner (planner.ts):
//   1. conflicts: something not ours in the way of a desired object; that tunnel then
//      gets no action at all, and keeps what it has;
//   2. removal: objects that carry our mark, that no desired tunnel wants, and whose tunnel
//      is not kept (waiting, in error, in conflict: a bad edit never tears a tunnel down);
//   3. the diff of each desired object against ours with its key;
//   4. order: by each kind's phase (removals first, a route after its link, nft rules
//      before the links they guard and removed after them), stable; every nft action then
//      carries the whole table the pass writes in one transaction.
// Objects on a link that is deleted go with it: they are neither removed nor diffed against.
// plan(resolve, state-after-apply) is empty.

import type { Action } from '../model/action.ts';
import type { DesiredTunnel } from '../model/desired.ts';
import type { KernelState } from '../model/kernel.ts';
import type { TunnelProblem, TunnelResolution } from '../model/problem.ts';
import { linkOwnersOf } from '../model/ownership.ts';
import { addressPlanner } from './addresses.ts';
import { linkPlanner } from './links.ts';
import type { KindPlanner, LinkOwners, Owned } from './planner.ts';
import { routePlanner } from './routes.ts';
import { rulesPlanner, withTable } from './rules.ts';

export interface Plan {
  actions: Action[];
  /** Desired tunnels that cannot be programmed because something foreign is in the way. */
  conflicts: TunnelProblem[];
}

// The planners, in the order they run: links first, because what goes with a deleted link
// is known only once the links are planned. Method parameters are checked bivariantly, so
// each planner fits the erased element type.
// biome-ignore lint/suspicious/noExplicitAny: a list of planners of different object types
type AnyPlanner = KindPlanner<any, any, any>;
const PLANNERS: readonly AnyPlanner[] = [linkPlanner, addressPlanner, routePlanner, rulesPlanner];

export function plan(resolutions: readonly TunnelResolution[], observed: KernelState): Plan {
  const ownerByLink = linkOwnersOf(observed);
  const links: LinkOwners = (name) => ownerByLink.get(name);
  const passes = PLANNERS.map((planner) => {
    const objects = planner.observed(observed);
    return { planner, objects, index: planner.index(objects, observed) };
  });

  // Tunnels whose kernel objects stay exactly as they are: waiting, in error, or in conflict.
  const kept = new Set<string>();
  const active: DesiredTunnel[] = [];
  const conflicts: TunnelProblem[] = [];
  for (const r of resolutions) {
    if (r.outcome === 'waiting' || r.outcome === 'error') kept.add(r.tunnel);
    if (r.outcome !== 'desired') continue;
    const conflict = firstConflict(r.desired, passes, links);
    if (conflict === undefined) active.push(r.desired);
    else {
      conflicts.push(conflict);
      kept.add(r.tunnel);
    }
  }

  const actions: Action[] = [];
  const phases: number[] = [];
  const linksGoing = new Set<string>();
  for (const { planner, objects, index } of passes) {
    const ours = new Map<string, Owned<unknown>>();
    for (const object of objects) {
      const owner = planner.owner(object, links);
      const parent = planner.parentLink(object);
      if (owner === undefined || (parent !== undefined && linksGoing.has(parent))) continue;
      ours.set(planner.observedKey(object), { object, owner });
    }
    const wanted = new Set(active.flatMap((t) => planner.desired(t).map((d) => planner.desiredKey(d))));
    const add = (a: Action) => {
      // A link both swept and in the way of another tunnel is deleted once.
      if (a.kind === 'link' && a.verb === 'delete' && linksGoing.has(a.link)) return;
      actions.push(a);
      phases.push(planner.phase[a.verb]);
      if (a.kind === 'link' && a.verb === 'delete') linksGoing.add(a.link);
    };
    for (const [key, owned] of ours) if (!wanted.has(key) && !kept.has(owned.owner)) add(planner.remove(owned));
    for (const t of active) {
      for (const d of planner.desired(t))
        for (const a of planner.diff(t.tunnel, d, ours.get(planner.desiredKey(d)), index, links)) add(a);
    }
  }

  const ordered = actions
    .map((_, i) => i)
    .sort((x, y) => phases[x]! - phases[y]! || x - y)
    .map((i) => actions[i]!);
  return { actions: withTable(ordered, observed), conflicts };
}

function firstConflict(
  d: DesiredTunnel,
  passes: ReadonlyArray<{ planner: AnyPlanner; index: unknown }>,
  links: LinkOwners,
): TunnelProblem | undefined {
  for (const { planner, index } of passes) {
    for (const object of planner.desired(d)) {
      const conflict = planner.conflict(d.tunnel, object, index, links);
      if (conflict !== undefined) return conflict;
    }
  }
  return undefined;
}
