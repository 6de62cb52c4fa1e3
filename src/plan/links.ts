// Tunnel links: created with the ownership marks, changed in place where the kernel allows
// (`ip link set ... type MODE ...` keeps the ifindex and the traffic flowing), recreated
// only when the mode is wrong. A link that is not the agent's and has the wanted name, or
// holds the wanted underlay address pair, is a conflict, never taken.

import type { Action } from '../model/action.ts';
import type { DesiredLink } from '../model/desired.ts';
import type { ObservedLink } from '../model/kernel.ts';
import { LINK_GROUP, linkOwner, NO_TUNNEL, ownerAlias } from '../model/ownership.ts';
import { tunnelAttrChanges, underlayPair } from '../model/tunnel.ts';
import type { TunnelAttrs } from '../model/tunnel.ts';
import { groupBy } from './group.ts';
import type { KindPlanner, LinkOwners } from './planner.ts';

function createLink(tunnel: string, l: DesiredLink): Action {
  const t = l.tunnel;
  return {
    tool: 'ip',
    kind: 'link',
    verb: 'create',
    tunnel,
    link: l.name,
    detail: `${t.mode} ${t.local ?? 'any'} -> ${t.remote ?? 'any'} ttl ${t.ttl} mtu ${l.mtu}`,
    ops: [
      // Marked by its group from the first moment (link-add carries it).
      { op: 'link-add', link: l, group: LINK_GROUP },
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

interface LinkIndex {
  byName: ReadonlyMap<string, ObservedLink>;
  byPair: ReadonlyMap<string, readonly ObservedLink[]>;
  /** Tunnel links by mode and local address ("ipip 192.168.40.2", "ipip any"). */
  byLocal: ReadonlyMap<string, readonly ObservedLink[]>;
}

const localKey = (t: TunnelAttrs) => `${t.mode} ${t.local ?? 'any'}`;

/** The links on the underlay pairs d holds: its own pair, and for a mesh the pair to each peer. */
function holdersOfPair(d: DesiredLink, index: LinkIndex): readonly ObservedLink[] {
  const pairs = [d.tunnel, ...(d.peers ?? []).map((remote) => ({ ...d.tunnel, remote }))];
  return pairs.flatMap((t) => {
    const key = underlayPair(t);
    return key === undefined ? [] : (index.byPair.get(key) ?? []);
  });
}

/**
 * A device that is not ours and that the kernel's lookup (ip_tunnel_lookup) would set
 * against a mesh link: it takes a peer's packets from the mesh link, or the mesh link takes
 * its packets. The lookup prefers an exact local+remote match, then remote only, then
 * local only (the mesh), then neither, and at each step a device bound to the interface
 * the packet came in on returns at once, so a bound mesh link beats an unbound device
 * whose match is better. Devices with another local address never meet it.
 */
function meshRival(d: DesiredLink, index: LinkIndex): { link: ObservedLink; why: string } | undefined {
  const want = d.tunnel;
  if (want.remote !== undefined || want.local === undefined) return undefined;
  const peers = new Set(d.peers ?? []);
  const candidates = [
    ...(index.byLocal.get(localKey(want)) ?? []),
    ...(index.byLocal.get(localKey({ ...want, local: undefined })) ?? []),
  ];
  for (const link of candidates) {
    const t = link.tunnel!;
    if (linkOwner(link) !== undefined) continue;
    const from = t.local ?? 'any';
    if (t.local === undefined && t.remote === undefined) {
      // The fallback device (tunl0) only takes packets while it is up.
      if (link.up)
        return {
          link,
          why: `takes every ${t.mode} packet nobody else matches, and the mesh would take those to ${want.local}`,
        };
      continue;
    }
    if (t.remote !== undefined && peers.has(t.remote))
      return {
        link,
        why: `joins ${from} and the mesh peer ${t.remote}: one of the two devices would lose that peer's packets`,
      };
    if (t.remote === undefined)
      return {
        link,
        why: `also takes ${t.mode} from any remote to ${from}: the mesh would take its packets, or it the mesh's`,
      };
    if (t.underlayDevice !== want.underlayDevice)
      return {
        link,
        why:
          `joins ${from} and ${t.remote} ${t.underlayDevice === undefined ? 'unbound' : `bound to ${t.underlayDevice}`}, ` +
          `and a mesh link bound to ${want.underlayDevice ?? 'no device'} would take its packets`,
      };
  }
  return undefined;
}

export const linkPlanner: KindPlanner<DesiredLink, ObservedLink, LinkIndex> = {
  kind: 'link',
  phase: { delete: 2, create: 3, update: 4 },
  desired: (t) => [t.link],
  observed: (state) => state.links,
  desiredKey: (d) => d.name,
  observedKey: (o) => o.name,
  owner: linkOwner,
  parentLink: () => undefined,

  index: (observed) => ({
    byName: new Map(observed.map((l) => [l.name, l])),
    byPair: groupBy(observed, (l) => (l.tunnel === undefined ? undefined : underlayPair(l.tunnel))),
    byLocal: groupBy(observed, (l) => (l.tunnel === undefined ? undefined : localKey(l.tunnel))),
  }),

  conflict(tunnel, d, index) {
    const named = index.byName.get(d.name);
    if (named !== undefined && linkOwner(named) === undefined) {
      return {
        tunnel,
        reason: 'LinkNameTaken',
        field: 'spec.linkName',
        message:
          `a ${named.kind ?? 'device'} link named ${d.name} exists that ipip-operator did not create; ` +
          `it is left alone (choose another spec.linkName or remove it)`,
      };
    }
    const holder = holdersOfPair(d, index).find((l) => linkOwner(l) === undefined);
    if (holder !== undefined) {
      // The pair it holds, not the desired link's: for a mesh that is the pair to one of its peers.
      const pair = holder.tunnel!;
      const peer = d.tunnel.remote === undefined && pair.remote !== undefined ? ', a peer of the mesh' : '';
      return {
        tunnel,
        reason: 'UnderlayPairTaken',
        field: 'spec.endpoints',
        message:
          `${holder.name}, a ${holder.kind} link that ipip-operator did not create, already carries ${pair.mode} ` +
          `from ${pair.local} to ${pair.remote ?? 'any'}${peer}; two devices on one underlay pair take ` +
          `each other's traffic, so it is left alone`,
      };
    }
    const rival = meshRival(d, index);
    if (rival !== undefined) {
      return {
        tunnel,
        reason: 'UnderlayPairTaken',
        field: 'spec.endpoints',
        message: `${rival.link.name}, a ${rival.link.kind} link that ipip-operator did not create, ${rival.why}; it is left alone`,
      };
    }
    return undefined;
  },

  diff(tunnel, d, current, index, links: LinkOwners) {
    // Another tunnel of the agent's holding the pair lost it to this one in resolve: it goes first.
    const actions = holdersOfPair(d, index)
      .filter((l) => l.name !== d.name && links(l.name) !== undefined && links(l.name) !== tunnel)
      .map((l) => deleteLink(links(l.name)!, l.name, `tunnel ${tunnel} holds its underlay pair`));
    if (current === undefined) return [...actions, createLink(tunnel, d)];
    const have = current.object;
    // A link of the agent's whose alias was never set (the agent was killed right after
    // creating it) is adopted by the tunnel that wants its name.
    if (current.owner !== tunnel && current.owner !== NO_TUNNEL) {
      // Another tunnel's link under the name this one won in resolve: the old goes, this one is created anew.
      return [
        ...actions,
        deleteLink(current.owner, d.name, `tunnel ${tunnel} now uses the name ${d.name}`),
        createLink(tunnel, d),
      ];
    }
    if (have.tunnel === undefined || have.tunnel.mode !== d.tunnel.mode) {
      return [
        ...actions,
        deleteLink(tunnel, d.name, `kind ${have.kind ?? 'none'} is not ${d.tunnel.mode}: recreate`),
        createLink(tunnel, d),
      ];
    }
    // The kernel refuses to turn a point-to-point device into an any-remote one or back in
    // place (EINVAL: the POINTOPOINT flag would change, seen on 6.1): a tunnel going from 2
    // endpoints to a mesh, or back, gets a new link.
    if ((have.tunnel.remote === undefined) !== (d.tunnel.remote === undefined)) {
      const to = d.tunnel.remote === undefined ? 'any remote (a mesh)' : `remote ${d.tunnel.remote}`;
      return [
        ...actions,
        deleteLink(tunnel, d.name, `remote ${have.tunnel.remote ?? 'any'} -> ${to} cannot change in place: recreate`),
        createLink(tunnel, d),
      ];
    }
    const update: Action = { tool: 'ip', kind: 'link', verb: 'update', tunnel, link: d.name, detail: '', ops: [] };
    const changes = tunnelAttrChanges(d.tunnel, have.tunnel).map(
      (c) => `${ATTR_LABEL[c.attr] ?? c.attr} ${shown(c.from)} -> ${shown(c.to)}`,
    );
    if (changes.length > 0) update.ops.push({ op: 'link-set-tunnel', name: d.name, tunnel: d.tunnel });
    if (have.mtu !== d.mtu) {
      changes.push(`mtu ${have.mtu} -> ${d.mtu}`);
      update.ops.push({ op: 'link-set-mtu', name: d.name, mtu: d.mtu });
    }
    if (have.alias !== ownerAlias(tunnel)) {
      // Created, then killed before the alias was set: the group marks it, the alias names its tunnel.
      changes.push(`alias -> ${ownerAlias(tunnel)}`);
      update.ops.push({ op: 'link-set-alias', name: d.name, alias: ownerAlias(tunnel) });
    }
    if (!have.up) {
      changes.push('down -> up');
      update.ops.push({ op: 'link-set-up', name: d.name });
    }
    update.detail = changes.join(', ');
    return update.ops.length > 0 ? [...actions, update] : actions;
  },

  remove: ({ object, owner }) =>
    deleteLink(owner, object.name, `tunnel ${owner} is gone from this node or uses another link`),
};
