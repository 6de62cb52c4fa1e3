// The marks by which the agent knows its own kernel objects: a link group number set in
// the same netlink request that creates the link, a link alias naming the tunnel set right
// after, and a route protocol number. Nothing without its mark is ever changed or deleted,
// and a mark counts only on a kind of object the agent creates.

import { MAX_TUNNEL_NAME, objectNameProblem } from '../api/names.ts';
import type { KernelState, ObservedLink, ObservedRoute } from './kernel.ts';

/** The link alias that marks a link as created by this operator for one tunnel. */
const ALIAS_PREFIX = 'ipip-operator/';

export function ownerAlias(tunnelName: string): string {
  return `${ALIAS_PREFIX}${tunnelName}`;
}

/** The tunnel a link belongs to, or undefined for a link that is not ours. */
export function tunnelOfAlias(alias: string | undefined): string | undefined {
  if (alias === undefined || !alias.startsWith(ALIAS_PREFIX)) return undefined;
  const name = alias.slice(ALIAS_PREFIX.length);
  return objectNameProblem(name, MAX_TUNNEL_NAME) === undefined ? name : undefined;
}

/**
 * The route protocol number that marks routes as ours (see /etc/iproute2/rt_protos: 0-4 are
 * the kernel's, the named ones belong to routing daemons; 203 is used by none of them).
 * Fixed forever: changing it would orphan every route a running cluster has.
 */
export const ROUTE_PROTOCOL = 203;

/**
 * The link group (`ip link add ... group 203`) of every link the agent creates. Unlike the
 * alias, which the kernel takes only after `link add`, the group is part of the creating
 * request: a link the agent made is marked from its first moment, even if the agent is
 * killed before it sets the alias. Fixed forever, like the route protocol.
 */
export const LINK_GROUP = 203;

/** The owner of a link of the agent's that names no tunnel: created, but killed before its alias was set. */
export const NO_TUNNEL = '(no tunnel)';

/**
 * The tunnel a link belongs to; NO_TUNNEL for one of the agent's links whose tunnel is not
 * known; undefined for a link that is not the agent's. A link is the agent's only when it
 * is a tunnel of a mode the agent creates and carries its alias or its group.
 */
export function linkOwner(link: ObservedLink): string | undefined {
  if (link.tunnel === undefined || link.kind !== link.tunnel.mode) return undefined;
  return tunnelOfAlias(link.alias) ?? (link.group === LINK_GROUP ? NO_TUNNEL : undefined);
}

/** The owner of every link of the agent's on a node, by link name (see linkOwner). */
export function linkOwnersOf(state: KernelState): Map<string, string> {
  const owners = new Map<string, string>();
  for (const l of state.links) {
    const owner = linkOwner(l);
    if (owner !== undefined) owners.set(l.name, owner);
  }
  return owners;
}

/** The owner of a route that carries the agent's mark and is on a link of the agent's (`owners`: link name -> owner). */
export function routeOwner(route: ObservedRoute, owners: (linkName: string) => string | undefined): string | undefined {
  if (route.protocol !== ROUTE_PROTOCOL || route.dev === undefined) return undefined;
  return owners(route.dev);
}

/**
 * The nftables table the agent owns, whole: family ip (the tunnels are IPv4), one set and
 * one rule per purpose per tunnel, each named or commented after its tunnel. Nothing in any
 * other table is ever read or changed. Fixed forever, like the marks above.
 */
export const NFT_FAMILY = 'ip';
export const NFT_TABLE = 'ipip-operator';
