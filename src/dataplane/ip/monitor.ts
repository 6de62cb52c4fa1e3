// Which kernel events can change what a reconcile would do. `ip monitor` reports every
// route of every table: on a node whose BGP daemon (BIRD, GoBGP, FRR) churns routes, a
// reconcile per route event would read the whole routing table over and over for nothing.
// Pure: the monitor's lines in, a yes or no out.

import type { KernelInterest } from '../../model/kernel.ts';
import { ROUTE_PROTOCOL } from '../../model/ownership.ts';
import { normalizePrefix } from '../../net/ipv4.ts';

/** Our route protocol, as `ip -N` prints it. */
const OUR_PROTO = String(ROUTE_PROTOCOL);

/**
 * Whether one line of `ip -N -o monitor label link address route` can change what a
 * reconcile would do. Link and address events always can (a link with a wanted name, an
 * underlay's MTU or address), and they are rare. A route event can only when it is one of
 * ours (proto 203), goes through one of our links (the kernel's peer route, anything a
 * user put on them), or is for a prefix we route (someone taking or freeing it).
 * Anything unrecognised counts: reading the kernel once too often is the safe side.
 */
export function monitorLineMatters(line: string, interest: KernelInterest): boolean {
  if (!line.startsWith('[ROUTE]')) return true;
  const tokens = line.slice('[ROUTE]'.length).trim().split(/\s+/);
  if (tokens[0] === 'Deleted') tokens.shift();
  if (tokens.length > 1 && /^\d+$/.test(tokens[0]!)) tokens.shift(); // a route type, numeric with -N (2: local)
  const dst = tokens[0];
  if (dst === undefined || dst === '') return true;
  for (let i = 1; i < tokens.length - 1; i++) {
    if (tokens[i] === 'proto' && tokens[i + 1] === OUR_PROTO) return true;
    // Multipath routes name a dev per nexthop: any of them counts.
    if (tokens[i] === 'dev' && interest.links.has(tokens[i + 1]!)) return true;
  }
  if (dst.includes(':')) return false; // IPv6: not ours to route, and not on our links (checked above)
  return interest.prefixes.has(normalizePrefix(dst));
}
