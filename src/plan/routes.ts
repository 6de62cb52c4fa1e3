// Routes into the agent's links, in the main table, marked with the agent's route protocol
// and on a link of the agent's. A route to a wanted prefix that is not the agent's, at any
// metric, is a conflict: a route of ours at metric 0 would outrank it (a DHCP default route
// has a metric), so it is never added beside it, let alone replaced.

import type { Action } from '../model/action.ts';
import type { DesiredRoute } from '../model/desired.ts';
import type { ObservedRoute } from '../model/kernel.ts';
import { ROUTE_PROTOCOL, routeOwner } from '../model/ownership.ts';
import { groupBy } from './group.ts';
import type { KindPlanner, LinkOwners } from './planner.ts';

/** The metric the agent's routes have: the kernel's default for IPv4. */
const MAIN_METRIC = 0;

/** A route's identity in the main table (the kernel's is destination, TOS and metric; TOS is never set here). */
export const routeKey = (dst: string, metric: number) => `${dst} metric ${metric}`;

function replace(tunnel: string, d: DesiredRoute, verb: 'create' | 'update'): Action {
  return {
    tool: 'ip',
    kind: 'route',
    verb,
    tunnel,
    link: d.dev,
    detail: d.dst,
    ops: [{ op: 'route-replace', route: d, protocol: ROUTE_PROTOCOL }],
  };
}

/** The protocol of the routes the kernel adds itself (for an address and its peer, for a subnet). */
const RTPROT_KERNEL = 2;

/**
 * A route the kernel made on one of the agent's links, for an address of the agent's
 * there (the peer of a point-to-point address): it goes with that address, so it is in
 * the way of nobody's route (a tunnel going from 2 endpoints to a mesh wants a route to
 * that same peer).
 */
function kernelRouteOfOurs(r: ObservedRoute, links: LinkOwners): boolean {
  return r.protocol === RTPROT_KERNEL && r.dev !== undefined && links(r.dev) !== undefined;
}

function sameNextHop(d: DesiredRoute, o: ObservedRoute): boolean {
  return o.dev === d.dev && o.gateway === d.via && (o.onlink ?? false) === (d.onlink ?? false);
}

export const routePlanner: KindPlanner<DesiredRoute, ObservedRoute, ReadonlyMap<string, readonly ObservedRoute[]>> = {
  kind: 'route',
  phase: { delete: 0, create: 6, update: 6 },
  desired: (t) => t.routes,
  observed: (state) => state.routes,
  desiredKey: (d) => routeKey(d.dst, MAIN_METRIC),
  observedKey: (o) => routeKey(o.dst, o.metric),
  owner: routeOwner,
  parentLink: (o) => o.dev,

  /** Every route by destination, whatever its metric. */
  index: (observed) => groupBy(observed, (r) => r.dst),

  conflict(tunnel, d, byDst, links) {
    const foreign = byDst.get(d.dst)?.find((r) => routeOwner(r, links) === undefined && !kernelRouteOfOurs(r, links));
    if (foreign === undefined) return undefined;
    const how = [
      `protocol ${foreign.protocol}`,
      foreign.dev === undefined ? '' : `dev ${foreign.dev}`,
      foreign.metric === 0 ? '' : `metric ${foreign.metric}`,
    ]
      .filter((x) => x !== '')
      .join(', ');
    return {
      tunnel,
      reason: 'RouteTaken',
      field: d.field ?? 'spec.routes',
      message:
        `a route to ${foreign.dst} exists (${how}) that ipip-operator did not create; it is left alone, ` +
        `and no route of ours is put beside it`,
    };
  },

  diff(tunnel, d, current) {
    if (current === undefined) return [replace(tunnel, d, 'create')];
    return sameNextHop(d, current.object) ? [] : [replace(tunnel, d, 'update')];
  },

  remove: ({ object, owner }) => ({
    tool: 'ip',
    kind: 'route',
    verb: 'delete',
    tunnel: owner,
    link: object.dev ?? '',
    detail: object.dst,
    ops: [{ op: 'route-del', dst: object.dst, dev: object.dev, metric: object.metric, protocol: ROUTE_PROTOCOL }],
  }),
};
