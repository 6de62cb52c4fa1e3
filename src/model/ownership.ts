// The marks by which the agent knows its own kernel objects, fixed from day one: a link
// alias naming the tunnel, and a route protocol number. Nothing without its mark is ever
// changed or deleted.

import { MAX_TUNNEL_NAME, objectNameProblem } from '../api/names.ts';

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
