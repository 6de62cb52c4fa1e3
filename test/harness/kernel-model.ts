// A model of the few kernel behaviours plan relies on, driven by the actions' operations.
// It lets unit tests check that plan's output, applied, leaves nothing to do, and lets the
// recording dataplane serve fast tests of the controller loop. It is not evidence about
// the kernel: test/kernel proves the same on a real one.

import type { Action, IpOperation, NftAction } from '../../src/model/action.ts';
import type { KernelState, ObservedLink } from '../../src/model/kernel.ts';

/** What the kernel answers a command that cannot be done, as `ip -batch` would report it. */
export class ModelError extends Error {}

function linkNamed(s: KernelState, name: string): ObservedLink {
  const link = s.links.find((l) => l.name === name);
  if (link === undefined) throw new ModelError(`Cannot find device "${name}"`);
  return link;
}

/**
 * Removes the matching routes in place, returning how many. In place rather than a filtered
 * copy: a converge of 1,000 tunnels replaces 1,000 routes, and a copy of the table each time
 * was 40 MiB of garbage in bench/memory.ts, which measures the agent beside this model.
 */
function removeRoutes(s: KernelState, matches: (r: KernelState['routes'][number]) => boolean): number {
  let kept = 0;
  for (const r of s.routes) if (!matches(r)) s.routes[kept++] = r;
  const removed = s.routes.length - kept;
  s.routes.length = kept;
  return removed;
}

/** Applies one operation to the state in place; throws ModelError where the kernel would refuse. */
export function applyOperation(s: KernelState, o: IpOperation): void {
  switch (o.op) {
    case 'link-add': {
      if (s.links.some((l) => l.name === o.link.name)) throw new ModelError('RTNETLINK answers: File exists');
      let index = 1;
      for (const l of s.links) index = Math.max(index, l.index + 1);
      s.links.push({
        index,
        name: o.link.name,
        kind: o.link.tunnel.mode,
        group: o.group,
        up: false,
        mtu: o.link.mtu,
        tunnel: { ...o.link.tunnel },
        addresses: [],
      });
      return;
    }
    case 'link-set-alias':
      linkNamed(s, o.name).alias = o.alias;
      return;
    case 'link-set-tunnel': {
      const link = linkNamed(s, o.name);
      // ip_tunnel_changelink: a point-to-point device cannot become any-remote or back (seen on 6.1).
      if ((link.tunnel?.remote === undefined) !== (o.tunnel.remote === undefined))
        throw new ModelError('RTNETLINK answers: Invalid argument');
      link.tunnel = { ...o.tunnel };
      return;
    }
    case 'link-set-mtu':
      linkNamed(s, o.name).mtu = o.mtu;
      return;
    case 'link-set-up':
      linkNamed(s, o.name).up = true;
      return;
    case 'link-del':
      linkNamed(s, o.name);
      s.links = s.links.filter((l) => l.name !== o.name);
      s.routes = s.routes.filter((r) => r.dev !== o.name);
      return;
    case 'address-add': {
      const link = linkNamed(s, o.address.dev);
      const { local, prefixlen, peer } = o.address;
      link.addresses.push({ local, prefixlen, scope: 0, ...(peer === undefined ? {} : { peer }) });
      // The kernel routes the peer of a point-to-point address into the link itself (proto kernel).
      if (peer !== undefined)
        s.routes.push({ dst: `${peer}/32`, dev: link.name, protocol: 2, metric: 0, scope: 253, type: 1 });
      return;
    }
    case 'address-del': {
      const link = linkNamed(s, o.address.dev);
      link.addresses = link.addresses.filter((x) => !(x.local === o.address.local && x.peer === o.address.peer));
      if (o.address.peer !== undefined) {
        const dst = `${o.address.peer}/32`;
        s.routes = s.routes.filter((r) => !(r.dst === dst && r.dev === link.name && r.protocol === 2));
      }
      return;
    }
    case 'route-replace': {
      const r = o.route;
      linkNamed(s, r.dev);
      removeRoutes(s, (x) => x.dst === r.dst && x.metric === 0);
      s.routes.push({
        dst: r.dst,
        dev: r.dev,
        protocol: o.protocol,
        metric: 0,
        scope: r.via === undefined ? 253 : 0,
        type: 1,
        ...(r.via === undefined ? {} : { gateway: r.via }),
        ...(r.onlink === true ? { onlink: true } : {}),
      });
      return;
    }
    case 'route-del': {
      const removed = removeRoutes(
        s,
        (x) =>
          x.dst === o.dst &&
          x.metric === o.metric &&
          x.protocol === o.protocol &&
          (o.dev === undefined || x.dev === o.dev),
      );
      if (removed === 0) throw new ModelError('RTNETLINK answers: No such process');
      return;
    }
  }
}

/** The state after the actions, as a new object; an operation the kernel would refuse throws. */
export function applyModel(state: KernelState, actions: readonly Action[]): KernelState {
  const s: KernelState = structuredClone(state);
  for (const a of actions) {
    if (a.tool === 'ip') for (const o of a.ops) applyOperation(s, o);
    else applyNftAction(s, a);
  }
  return s;
}

/**
 * nft's rule: a write replaces the agent's whole table with the action's `table` (every
 * nft action of a plan carries the same one), in one transaction; a node that cannot hold
 * the table refuses it, as nft does ("Operation not supported").
 */
export function applyNftAction(s: KernelState, a: NftAction): void {
  if (s.nft?.available === false) throw new ModelError('Error: Could not process rule: Operation not supported');
  s.nft = { available: true, table: a.table.length > 0, rules: structuredClone([...a.table]) };
}
