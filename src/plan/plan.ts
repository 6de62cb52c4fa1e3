// plan: desired state (from resolve) vs observed kernel state -> ordered actions.
// Pure. It only ever changes links marked with our alias, the addresses on them, and
// routes with our protocol number; anything else in the way is a conflict for that tunnel,
// which then gets no action at all. plan(resolve, state-after-apply) is empty.

import { ownerAlias, ROUTE_PROTOCOL, tunnelOfAlias } from '../api/names.ts';
import type { ObservedLink, ObservedRoute, ObservedState } from '../dataplane/model.ts';
import type { DesiredLink, DesiredTunnel, TunnelProblem, TunnelResolution } from '../resolve/types.ts';
import type { Action } from './types.ts';

export interface Plan {
  actions: Action[];
  /** Desired tunnels that cannot be programmed because something foreign is in the way. */
  conflicts: TunnelProblem[];
}

const MAIN_METRIC = 0;

function linkParams(l: DesiredLink): string[] {
  const params = ['type', l.mode, 'local', l.local, 'remote', l.remote, 'ttl', String(l.ttl)];
  if (l.underlay !== undefined) params.push('dev', l.underlay);
  return params;
}

function linkMismatches(want: DesiredLink, have: ObservedLink): string[] {
  const diffs: string[] = [];
  if (have.local !== want.local) diffs.push(`local ${have.local ?? 'any'} -> ${want.local}`);
  if (have.remote !== want.remote) diffs.push(`remote ${have.remote ?? 'any'} -> ${want.remote}`);
  if ((have.ttl ?? 0) !== want.ttl) diffs.push(`ttl ${have.ttl ?? 0} -> ${want.ttl}`);
  if (want.underlay !== undefined && have.underlay !== want.underlay) diffs.push(`dev ${have.underlay ?? 'none'} -> ${want.underlay}`);
  return diffs;
}

function createLink(tunnel: string, l: DesiredLink): Action {
  return {
    object: 'link', action: 'create', tunnel, link: l.name,
    detail: `${l.mode} ${l.local} -> ${l.remote} ttl ${l.ttl} mtu ${l.mtu}`,
    commands: [
      ['link', 'add', 'name', l.name, 'mtu', String(l.mtu), ...linkParams(l)],
      // The kernel ignores an alias given to `link add`: it is set right after, in the same batch.
      ['link', 'set', 'dev', l.name, 'alias', ownerAlias(tunnel)],
      ['link', 'set', 'dev', l.name, 'up'],
    ],
  };
}

function deleteLink(tunnel: string, name: string, why: string): Action {
  return { object: 'link', action: 'delete', tunnel, link: name, detail: why, commands: [['link', 'del', 'dev', name]] };
}

function addressArgs(d: DesiredTunnel['address']): string[] {
  return [`${d.local}/32`, 'peer', `${d.peer}/32`];
}

function routeReplace(tunnel: string, link: string, dst: string, verb: 'create' | 'update'): Action {
  return {
    object: 'route', action: verb, tunnel, link, detail: dst,
    commands: [['route', 'replace', dst, 'dev', link, 'proto', String(ROUTE_PROTOCOL)]],
  };
}

function routeDelete(tunnel: string, route: ObservedRoute): Action {
  const args = ['route', 'del', route.dst, 'proto', String(ROUTE_PROTOCOL)];
  if (route.dev !== undefined) args.push('dev', route.dev);
  if (route.metric !== MAIN_METRIC) args.push('metric', String(route.metric));
  return { object: 'route', action: 'delete', tunnel, link: route.dev ?? '', detail: route.dst, commands: [args] };
}

/** Observed routes by destination: plan looks each desired prefix up once. */
type RoutesByDst = ReadonlyMap<string, readonly ObservedRoute[]>;

function indexRoutes(routes: readonly ObservedRoute[]): RoutesByDst {
  const byDst = new Map<string, ObservedRoute[]>();
  for (const r of routes) {
    const list = byDst.get(r.dst);
    if (list === undefined) byDst.set(r.dst, [r]);
    else list.push(r);
  }
  return byDst;
}

/** Something not ours in the way of a desired tunnel: then the tunnel gets no action at all. */
function conflictOf(d: DesiredTunnel, observedLink: ObservedLink | undefined, routes: RoutesByDst): TunnelProblem | undefined {
  const { tunnel, link } = d;
  if (observedLink !== undefined && tunnelOfAlias(observedLink.alias) === undefined) {
    const kind = observedLink.kind ?? 'device';
    return { tunnel, reason: 'LinkNameTaken', field: 'spec.linkName',
      message: `a ${kind} link named ${link.name} exists that ipip-operator did not create; it is left alone (choose another spec.linkName or remove it)` };
  }
  const foreignRoute = d.routes.flatMap((dst) => routes.get(dst) ?? []).find((r) => r.metric === MAIN_METRIC && r.protocol !== ROUTE_PROTOCOL);
  if (foreignRoute !== undefined) {
    return { tunnel, reason: 'RouteTaken', field: 'spec.routes',
      message: `a route to ${foreignRoute.dst} exists (protocol ${foreignRoute.protocol}${foreignRoute.dev === undefined ? '' : `, dev ${foreignRoute.dev}`}) that ipip-operator did not create; it is left alone` };
  }
  return undefined;
}

/** The actions that bring one desired, unconflicted tunnel about. observedLink is ours or absent. */
function actionsFor(d: DesiredTunnel, observedLink: ObservedLink | undefined, routes: RoutesByDst): Action[] {
  const { tunnel, link } = d;
  const actions: Action[] = [];
  const ours = observedLink !== undefined && observedLink.kind === link.mode ? observedLink : undefined;
  if (observedLink !== undefined && ours === undefined) {
    actions.push(deleteLink(tunnel, link.name, `kind ${observedLink.kind ?? 'none'} is not ${link.mode}: recreate`));
  }
  if (ours === undefined) {
    actions.push(createLink(tunnel, link));
  } else {
    const commands: string[][] = [];
    const changes = linkMismatches(link, ours);
    if (changes.length > 0) commands.push(['link', 'set', 'dev', link.name, ...linkParams(link)]);
    if (ours.mtu !== link.mtu) {
      changes.push(`mtu ${ours.mtu} -> ${link.mtu}`);
      commands.push(['link', 'set', 'dev', link.name, 'mtu', String(link.mtu)]);
    }
    if (!ours.up) {
      changes.push('down -> up');
      commands.push(['link', 'set', 'dev', link.name, 'up']);
    }
    if (commands.length > 0) {
      actions.push({ object: 'link', action: 'update', tunnel, link: link.name, detail: changes.join(', '), commands });
    }
  }

  // Addresses: the link is ours, so every IPv4 address on it is ours to keep right.
  const existing = ours?.addresses ?? [];
  const wanted = (a: ObservedLink['addresses'][number]) =>
    a.local === d.address.local && a.peer === d.address.peer && a.prefixlen === 32;
  for (const a of existing) {
    if (wanted(a)) continue;
    const args = ['address', 'del', `${a.local}/${a.prefixlen}`];
    if (a.peer !== undefined) args.push('peer', `${a.peer}/32`);
    actions.push({ object: 'address', action: 'delete', tunnel, link: link.name,
      detail: a.peer === undefined ? `${a.local}/${a.prefixlen}` : `${a.local} peer ${a.peer}`,
      commands: [[...args, 'dev', link.name]] });
  }
  if (!existing.some(wanted)) {
    actions.push({ object: 'address', action: 'create', tunnel, link: link.name,
      detail: `${d.address.local} peer ${d.address.peer}`,
      commands: [['address', 'add', ...addressArgs(d.address), 'dev', link.name]] });
  }

  for (const dst of d.routes) {
    // A link that is (re)created has none of the routes the kernel showed on that name.
    const current = (routes.get(dst) ?? []).find((r) => r.protocol === ROUTE_PROTOCOL && r.metric === MAIN_METRIC && (ours !== undefined || r.dev !== link.name));
    if (current === undefined) actions.push(routeReplace(tunnel, link.name, dst, 'create'));
    else if (current.dev !== link.name || current.gateway !== undefined) actions.push(routeReplace(tunnel, link.name, dst, 'update'));
  }
  return actions;
}

/** The order the kernel needs: removals first, then links, addresses, routes (a route needs its link up). */
const PHASE: Record<string, number> = {
  'route/delete': 0, 'address/delete': 1, 'link/delete': 2,
  'link/create': 3, 'link/update': 4, 'address/create': 5,
  'route/create': 6, 'route/update': 6,
};

export function plan(resolutions: readonly TunnelResolution[], observed: ObservedState): Plan {
  const linksByName = new Map(observed.links.map((l) => [l.name, l]));
  const routesByDst = indexRoutes(observed.routes);
  const desired = new Map<string, DesiredTunnel>();
  const conflicts: TunnelProblem[] = [];
  // Tunnels whose kernel objects stay exactly as they are: waiting, in error, or in conflict.
  const kept = new Set<string>();
  for (const r of resolutions) {
    if (r.outcome === 'waiting' || r.outcome === 'error') kept.add(r.tunnel);
    if (r.outcome !== 'desired') continue;
    const conflict = conflictOf(r.desired, linksByName.get(r.desired.link.name), routesByDst);
    if (conflict === undefined) desired.set(r.tunnel, r.desired);
    else {
      conflicts.push(conflict);
      kept.add(r.tunnel);
    }
  }
  const actions: Action[] = [];

  // Sweep: our links that no desired tunnel wants under that name, unless their tunnel is
  // kept (so a bad edit or a missing remote never tears a working tunnel down).
  const deletedLinks = new Set<string>();
  for (const l of observed.links) {
    const owner = tunnelOfAlias(l.alias);
    if (owner === undefined || kept.has(owner)) continue;
    const want = desired.get(owner);
    if (want?.link.name === l.name) continue;
    // Another desired tunnel may want this name: the old link goes first, then it is created anew.
    deletedLinks.add(l.name);
    actions.push(deleteLink(owner, l.name, want === undefined ? `tunnel ${owner} is gone from this node` : `tunnel ${owner} now uses link ${want.link.name}`));
  }

  for (const d of desired.values()) {
    const current = linksByName.get(d.link.name);
    actions.push(...actionsFor(d, current !== undefined && deletedLinks.has(current.name) ? undefined : current, routesByDst));
  }

  // Our routes that no desired tunnel wants, except those on a link that is going anyway
  // (the kernel removes them with it) or on the link of a kept tunnel.
  const wantedRoutes = new Set([...desired.values()].flatMap((d) => d.routes));
  for (const r of observed.routes) {
    if (r.protocol !== ROUTE_PROTOCOL) continue;
    const devOwner = r.dev === undefined ? undefined : tunnelOfAlias(linksByName.get(r.dev)?.alias);
    if (devOwner !== undefined && kept.has(devOwner)) continue;
    if (r.dev !== undefined && deletedLinks.has(r.dev)) continue;
    if (wantedRoutes.has(r.dst) && r.metric === MAIN_METRIC) continue;
    actions.push(routeDelete(devOwner ?? 'unknown', r));
  }

  const ordered = actions
    .map((a, i) => ({ a, i }))
    .sort((x, y) => PHASE[`${x.a.object}/${x.a.action}`]! - PHASE[`${y.a.object}/${y.a.action}`]! || x.i - y.i)
    .map((x) => x.a);
  return { actions: ordered, conflicts };
}
