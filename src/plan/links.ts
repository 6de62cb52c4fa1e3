// Tunnel links: created with the ownership alias, changed in place where the kernel allows
// (`ip link set ... type MODE ...` keeps the ifindex and the traffic flowing), recreated
// only when the kind is wrong. A link with the wanted name that is not the agent's is a
// conflict, never taken.

import type { Action } from '../model/action.ts';
import type { DesiredLink } from '../model/desired.ts';
import type { ObservedLink } from '../model/kernel.ts';
import { ownerAlias, tunnelOfAlias } from '../model/ownership.ts';
import { tunnelAttrChanges } from '../model/tunnel.ts';
import type { KindPlanner } from './planner.ts';

function createLink(tunnel: string, l: DesiredLink): Action {
  const t = l.tunnel;
  return {
    tool: 'ip', kind: 'link', verb: 'create', tunnel, link: l.name,
    detail: `${t.mode} ${t.local ?? 'any'} -> ${t.remote ?? 'any'} ttl ${t.ttl} mtu ${l.mtu}`,
    ops: [
      { op: 'link-add', link: l },
      // The kernel ignores an alias given to `link add`: it is set right after, in the same batch.
      { op: 'link-set-alias', name: l.name, alias: ownerAlias(tunnel) },
      { op: 'link-set-up', name: l.name },
    ],
  };
}

function deleteLink(tunnel: string, name: string, why: string): Action {
  return { tool: 'ip', kind: 'link', verb: 'delete', tunnel, link: name, detail: why, ops: [{ op: 'link-del', name }] };
}

/** How an attribute reads in a change's detail: the `ip` keyword, "any" for unset. */
const ATTR_LABEL: Readonly<Record<string, string>> = { underlayDevice: 'dev' };
const shown = (v: unknown): string => (v === undefined ? 'any' : String(v));

export const linkPlanner: KindPlanner<DesiredLink, ObservedLink, ReadonlyMap<string, ObservedLink>> = {
  kind: 'link',
  phase: { delete: 2, create: 3, update: 4 },
  desired: (t) => [t.link],
  observed: (state) => state.links,
  desiredKey: (d) => d.name,
  observedKey: (o) => o.name,
  owner: (o) => tunnelOfAlias(o.alias),
  parentLink: () => undefined,
  index: (observed) => new Map(observed.map((l) => [l.name, l])),

  conflict(tunnel, d, byName) {
    const have = byName.get(d.name);
    if (have === undefined || tunnelOfAlias(have.alias) !== undefined) return undefined;
    return {
      tunnel, reason: 'LinkNameTaken', field: 'spec.linkName',
      message: `a ${have.kind ?? 'device'} link named ${d.name} exists that ipip-operator did not create; it is left alone (choose another spec.linkName or remove it)`,
    };
  },

  diff(tunnel, d, current) {
    if (current === undefined) return [createLink(tunnel, d)];
    const have = current.object;
    if (current.owner !== tunnel) {
      // Another tunnel's link under the name this one wants: the old goes, this one is created anew.
      return [deleteLink(current.owner, d.name, `tunnel ${tunnel} now uses the name ${d.name}`), createLink(tunnel, d)];
    }
    if (have.kind !== d.tunnel.mode || have.tunnel?.mode !== d.tunnel.mode) {
      return [deleteLink(tunnel, d.name, `kind ${have.kind ?? 'none'} is not ${d.tunnel.mode}: recreate`), createLink(tunnel, d)];
    }
    const action: Action = { tool: 'ip', kind: 'link', verb: 'update', tunnel, link: d.name, detail: '', ops: [] };
    const changes = tunnelAttrChanges(d.tunnel, have.tunnel).map((c) => `${ATTR_LABEL[c.attr] ?? c.attr} ${shown(c.from)} -> ${shown(c.to)}`);
    if (changes.length > 0) action.ops.push({ op: 'link-set-tunnel', name: d.name, tunnel: d.tunnel });
    if (have.mtu !== d.mtu) {
      changes.push(`mtu ${have.mtu} -> ${d.mtu}`);
      action.ops.push({ op: 'link-set-mtu', name: d.name, mtu: d.mtu });
    }
    if (!have.up) {
      changes.push('down -> up');
      action.ops.push({ op: 'link-set-up', name: d.name });
    }
    action.detail = changes.join(', ');
    return action.ops.length > 0 ? [action] : [];
  },

  remove: ({ object, owner }) => deleteLink(owner, object.name, `tunnel ${owner} is gone from this node or uses another link`),
};
