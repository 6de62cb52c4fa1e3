// Routes into the agent's links, in the main table, marked with the agent's route protocol.
// A route to a wanted prefix that carries another protocol at the same metric is a conflict,
// never replaced.

import type { Action } from '../model/action.ts';
import type { DesiredRoute } from '../model/desired.ts';
import type { ObservedRoute } from '../model/kernel.ts';
import { ROUTE_PROTOCOL } from '../model/ownership.ts';
import type { KindPlanner } from './planner.ts';

/** The metric the agent's routes have: the kernel's default for IPv4. */
const MAIN_METRIC = 0;
/** The owner named for a route of ours on a link that is not (a route left behind). */
const UNKNOWN_OWNER = 'unknown';

const routeKey = (dst: string, metric: number) => `${dst} metric ${metric}`;

function replace(tunnel: string, d: DesiredRoute, verb: 'create' | 'update'): Action {
  return { tool: 'ip', kind: 'route', verb, tunnel, link: d.dev, detail: d.dst, ops: [{ op: 'route-replace', route: d, protocol: ROUTE_PROTOCOL }] };
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
  owner: (o, links) => (o.protocol === ROUTE_PROTOCOL ? ((o.dev === undefined ? undefined : links(o.dev)) ?? UNKNOWN_OWNER) : undefined),
  parentLink: (o) => o.dev,

  index(observed) {
    const byKey = new Map<string, ObservedRoute[]>();
    for (const r of observed) {
      const k = routeKey(r.dst, r.metric);
      const list = byKey.get(k);
      if (list === undefined) byKey.set(k, [r]);
      else list.push(r);
    }
    return byKey;
  },

  conflict(tunnel, d, byKey) {
    const foreign = byKey.get(routeKey(d.dst, MAIN_METRIC))?.find((r) => r.protocol !== ROUTE_PROTOCOL);
    if (foreign === undefined) return undefined;
    return {
      tunnel, reason: 'RouteTaken', field: 'spec.routes',
      message: `a route to ${foreign.dst} exists (protocol ${foreign.protocol}${foreign.dev === undefined ? '' : `, dev ${foreign.dev}`}) that ipip-operator did not create; it is left alone`,
    };
  },

  diff(tunnel, d, current) {
    if (current === undefined) return [replace(tunnel, d, 'create')];
    return sameNextHop(d, current.object) ? [] : [replace(tunnel, d, 'update')];
  },

  remove: ({ object, owner }) => ({
    tool: 'ip', kind: 'route', verb: 'delete', tunnel: owner, link: object.dev ?? '', detail: object.dst,
    ops: [{ op: 'route-del', dst: object.dst, dev: object.dev, metric: object.metric, protocol: ROUTE_PROTOCOL }],
  }),
};
