// Tunnel devices by mode: one record per mode, as `ip link ... type MODE` takes its
// attributes. The observed side (parsed from `ip -d`) and the desired side (from resolve)
// have the same shape, so a link is compared attribute by attribute without a hand-kept
// list of fields. A new mode (gre, sit, ip6ip6) is a new variant here, its parser in the
// ip driver's parse.ts and its arguments in its render.ts.

/** `ip link add ... type ipip`: IPv4 in IPv4 (IP protocol 4). */
export interface IpipAttrs {
  mode: 'ipip';
  /** The outer source address; undefined is "any". */
  local: string | undefined;
  /** The outer destination; undefined is "any" (a device that takes IPIP from any peer). */
  remote: string | undefined;
  /** 0 inherits the inner packet's TTL. */
  ttl: number;
  /** The underlay device the tunnel is bound to (`dev`); undefined when unbound. */
  underlayDevice: string | undefined;
}

export type TunnelAttrs = IpipAttrs;
export type TunnelMode = TunnelAttrs['mode'];

/** Bytes each mode's outer headers add: the tunnel's MTU is the underlay's minus this. */
export const TUNNEL_OVERHEAD: Readonly<Record<TunnelMode, number>> = { ipip: 20 };

/**
 * The underlay address pair of a tunnel, by which the kernel gives a device its packets
 * (`ip_tunnel_lookup`): two devices of one mode on the same pair fight over one flow.
 * undefined for a device with no local address (it matches any).
 */
export function underlayPair(t: TunnelAttrs): string | undefined {
  return t.local === undefined ? undefined : `${t.mode} ${t.local} -> ${t.remote ?? 'any'}`;
}

export interface AttrChange {
  attr: string;
  from: unknown;
  to: unknown;
}

/**
 * The attributes in which `have` differs from `want`, for two tunnels of the same mode.
 * Every attribute of the mode counts; an absent one (undefined) is a value like any other.
 */
export function tunnelAttrChanges(want: TunnelAttrs, have: TunnelAttrs): AttrChange[] {
  const changes: AttrChange[] = [];
  for (const attr of Object.keys(want) as Array<keyof TunnelAttrs>) {
    if (attr !== 'mode' && want[attr] !== have[attr]) changes.push({ attr, from: have[attr], to: want[attr] });
  }
  return changes;
}
