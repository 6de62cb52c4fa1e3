// Each tunnel's rules in the agent's nftables table (model/desired.ts DesiredRules): a peer
// filter for a mesh, masquerade for an endpoint that asks for it. The table is the agent's
// whole, so every tunnel's part in it is the agent's, and a part no tunnel wants is removed
// (unless its tunnel is kept). A node that cannot hold the table (no nft, no nf_tables for
// the ip family, no nat) refuses the tunnels that need rules, before anything is written.
// nft is never written piece by piece: `withTable` gives every nft action of a plan the
// whole table as it is to be after the pass's one transaction.

import type { Action, NftAction } from '../model/action.ts';
import type { DesiredRules } from '../model/desired.ts';
import type { KernelState, NftState, ObservedRules } from '../model/kernel.ts';
import { NO_TUNNEL } from '../model/ownership.ts';
import type { KindPlanner } from './planner.ts';

/** What a list holds, whatever its order (the parser and resolve may sort differently). */
function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((x) => set.has(x));
}

/** Whether the kernel's part of a tunnel is exactly what is wanted (counters aside). */
export function sameRules(d: DesiredRules, o: ObservedRules): boolean {
  const f = d.peerFilter;
  const g = o.peerFilter;
  const m = d.masquerade;
  const n = o.masquerade;
  return (
    (f === undefined ? g === undefined : g !== undefined && f.local === g.local && sameMembers(f.allowed, g.allowed)) &&
    (m === undefined ? n === undefined : n !== undefined && m.link === n.link && sameMembers(m.sources, n.sources))
  );
}

/** "drop foreign IPIP to 192.168.40.4, masquerade from 3 prefixes" */
function describe(r: DesiredRules | undefined): string {
  const parts: string[] = [];
  if (r?.peerFilter !== undefined)
    parts.push(`drop IPIP to ${r.peerFilter.local} but from ${r.peerFilter.allowed.length} allowed addresses`);
  if (r?.masquerade !== undefined)
    parts.push(
      `masquerade from ${r.masquerade.sources.length} prefixes leaving by any device but ${r.masquerade.link}`,
    );
  return parts.length === 0 ? 'nftables rules' : parts.join(', ');
}

function action(verb: NftAction['verb'], tunnel: string, rules: ObservedRules | undefined, detail: string): NftAction {
  // `table` is filled in by withTable once every tunnel's action is known.
  return { tool: 'nft', kind: 'rules', verb, tunnel, link: rules?.masquerade?.link ?? '', detail, rules, table: [] };
}

export const rulesPlanner: KindPlanner<DesiredRules, ObservedRules, NftState | undefined> = {
  kind: 'rules',
  // The filter is in place before a mesh link comes up, and stays until it is gone.
  phase: { create: -1, update: -1, delete: 10 },
  desired: (t) => (t.rules === undefined ? [] : [t.rules]),
  observed: (state) => (state.nft?.available === true ? state.nft.rules : []),
  desiredKey: (d) => d.tunnel,
  observedKey: (o) => o.tunnel,
  // The table is the agent's: everything in it belongs to the tunnel it is named after.
  owner: (o) => o.tunnel,
  parentLink: () => undefined,
  index: (_observed, state) => state.nft,

  conflict(tunnel, _d, nft) {
    if (nft?.available !== false) return undefined;
    return {
      tunnel,
      reason: 'NftablesUnavailable',
      field: 'spec',
      message: `${nft.why}; nothing of the tunnel is programmed on this node`,
    };
  },

  diff(tunnel, d, current) {
    if (current !== undefined && sameRules(d, current.object)) return [];
    // The counters go on from where the kernel has them.
    const rules: ObservedRules = { ...d };
    if (current?.object.dropped !== undefined && d.peerFilter !== undefined) rules.dropped = current.object.dropped;
    if (current?.object.masqueraded !== undefined && d.masquerade !== undefined)
      rules.masqueraded = current.object.masqueraded;
    return [action(current === undefined ? 'create' : 'update', tunnel, rules, describe(d))];
  },

  remove: ({ object, owner }) =>
    action('delete', owner, undefined, owner === NO_TUNNEL ? 'what no tunnel explains in the table' : describe(object)),
};

/**
 * Gives every nft action the table after the pass's write: the kernel's parts of the
 * tunnels (kept ones as they are, counters included) with each action's part put in or
 * taken out, sorted by tunnel. Actions of other tools pass through unchanged.
 */
export function withTable(actions: readonly Action[], state: KernelState): Action[] {
  if (!actions.some((a) => a.tool === 'nft')) return [...actions];
  const table = new Map<string, ObservedRules>();
  for (const r of rulesPlanner.observed(state)) if (r.tunnel !== NO_TUNNEL) table.set(r.tunnel, r);
  for (const a of actions) {
    if (a.tool !== 'nft') continue;
    if (a.rules === undefined) table.delete(a.tunnel);
    else table.set(a.tunnel, a.rules);
  }
  const after = [...table.values()].sort((x, y) => (x.tunnel < y.tunnel ? -1 : x.tunnel > y.tunnel ? 1 : 0));
  return actions.map((a) => (a.tool === 'nft' ? { ...a, table: after } : a));
}
