// What the host's own traffic needs from the agent: the path to every underlay address in
// use on this node must stay as it is. A route the agent adds, the kernel's route to the
// peer of a point-to-point address, or an overlay address (a local route) that is as
// specific as the route an underlay address takes now, or carves a piece out of an
// underlay subnet, would send the tunnel's own outer packets into the tunnel, or cut the
// node off from its peers. Pure: the kernel as read and the tunnels' resolved underlays in,
// a verdict per prefix out.

import type { KernelState, ObservedRoute } from '../model/kernel.ts';
import { SCOPE_GLOBAL } from '../model/kernel.ts';
import { routeOwner } from '../model/ownership.ts';
import { ipv4ToNumber, networkOf, numberToIPv4, parsePrefix, prefixSize } from '../net/ipv4.ts';

/** An underlay address in use on this node, and what it is, for messages. */
export interface UnderlayAddress {
  address: string;
  /** "the local underlay address of tunnel lab", "the remote underlay address of tunnel lab". */
  role: string;
}

interface Protected {
  address: number;
  text: string;
  role: string;
  /** The prefix length of the route the address takes now (the longest that covers it); -1: none. */
  pathLength: number;
  /** That route, for messages. */
  path: string;
}

interface Subnet {
  network: number;
  length: number;
  text: string;
  device: string;
}

export interface HostPaths {
  /** Sorted by address, for a range search per prefix. */
  addresses: Protected[];
  subnets: Subnet[];
}

function routeText(r: ObservedRoute): string {
  return `${r.dst}${r.gateway === undefined ? '' : ` via ${r.gateway}`}${r.dev === undefined ? '' : ` dev ${r.dev}`}`;
}

/**
 * The underlay addresses in use and the underlay subnets, with the paths they take now.
 * In use: the local and remote addresses of every tunnel device on the node (the agent's
 * and everyone else's) and of every tunnel resolve wants; the subnets: the prefixes of the
 * devices that hold the local ones.
 */
export function hostPaths(
  kernel: KernelState,
  owners: ReadonlyMap<string, string>,
  wanted: readonly UnderlayAddress[],
): HostPaths {
  const inUse: UnderlayAddress[] = [...wanted];
  for (const l of kernel.links) {
    if (l.tunnel === undefined) continue;
    const whose = owners.has(l.name) ? `the agent's tunnel link ${l.name}` : `the tunnel device ${l.name}`;
    if (l.tunnel.local !== undefined)
      inUse.push({ address: l.tunnel.local, role: `the local underlay address of ${whose}` });
    if (l.tunnel.remote !== undefined)
      inUse.push({ address: l.tunnel.remote, role: `the remote underlay address of ${whose}` });
  }
  // The host's own routes (not the agent's), by prefix length, for longest-prefix matches.
  const byLength = new Map<number, Map<number, ObservedRoute>>();
  for (const r of kernel.routes) {
    if (routeOwner(r, (name) => owners.get(name)) !== undefined || r.dst.includes(':')) continue;
    const { network, length } = parsePrefix(r.dst);
    const table = byLength.get(length) ?? new Map<number, ObservedRoute>();
    byLength.set(length, table);
    const best = table.get(network);
    if (best === undefined || r.metric < best.metric) table.set(network, r);
  }
  const lengths = [...byLength.keys()].sort((a, b) => b - a);
  const seen = new Set<string>();
  const addresses: Protected[] = [];
  for (const u of inUse) {
    if (seen.has(u.address)) continue;
    seen.add(u.address);
    const address = ipv4ToNumber(u.address);
    let pathLength = -1;
    let path = 'no route';
    for (const length of lengths) {
      const route = byLength.get(length)!.get(networkOf(address, length));
      if (route !== undefined) {
        pathLength = length;
        path = routeText(route);
        break;
      }
    }
    addresses.push({ address, text: u.address, role: u.role, pathLength, path });
  }
  addresses.sort((a, b) => a.address - b.address);

  const locals = new Set(inUse.filter((u) => u.role.startsWith('the local')).map((u) => u.address));
  const subnets: Subnet[] = [];
  for (const l of kernel.links) {
    if (!l.addresses.some((a) => locals.has(a.local))) continue;
    for (const a of l.addresses) {
      if (a.scope !== SCOPE_GLOBAL || a.peer !== undefined || a.prefixlen === 32) continue;
      const network = networkOf(ipv4ToNumber(a.local), a.prefixlen);
      subnets.push({ network, length: a.prefixlen, text: `${numberToIPv4(network)}/${a.prefixlen}`, device: l.name });
    }
  }
  return { addresses, subnets };
}

/**
 * Why a prefix the agent would put in the main table (a route, or the /32 of an overlay
 * address) changes the path to an underlay address, or undefined when it does not.
 */
export function harmTo(paths: HostPaths, prefix: string): string | undefined {
  const { network, length } = parsePrefix(prefix);
  const end = network + prefixSize(length);
  // The first protected address at or after the network, then every one inside it.
  let lo = 0;
  let hi = paths.addresses.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (paths.addresses[mid]!.address < network) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < paths.addresses.length && paths.addresses[i]!.address < end; i++) {
    const a = paths.addresses[i]!;
    if (length >= a.pathLength)
      return `${prefix} would take the path to ${a.text}, ${a.role} (it goes by ${a.path} now)`;
  }
  for (const s of paths.subnets) {
    if (length >= s.length && networkOf(network, s.length) === s.network) {
      return `${prefix} lies in ${s.text}, the underlay subnet of ${s.device}: part of the underlay would go into the tunnel`;
    }
  }
  return undefined;
}
