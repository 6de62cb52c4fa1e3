// What resolve decides a node's kernel should hold for one tunnel: its link, the addresses
// on it, the routes into it and its rules in the agent's nftables table. Types only;
// plan/ turns them into actions.

import type { TunnelAttrs } from './tunnel.ts';

export interface DesiredLink {
  name: string;
  mtu: number;
  tunnel: TunnelAttrs;
  /**
   * For an any-remote (mesh) link: the underlay addresses of the peers its routes go to,
   * sorted. Not an attribute of the link; the kernel gives an incoming packet to the device
   * that matches its addresses best, so which other devices match these peers matters.
   */
  peers?: readonly string[];
}

export interface DesiredAddress {
  /** The link the address is on. */
  dev: string;
  local: string;
  prefixlen: number;
  /** The far end of a point-to-point address ("ip addr add A peer B"). */
  peer?: string;
  /** The spec fields it comes from (its own address, its peer), for messages. */
  field?: string;
  peerField?: string;
}

export interface DesiredRoute {
  /** Always with a length: "172.0.0.0/24". */
  dst: string;
  dev: string;
  /** The next hop, when the route is not simply "into the link". */
  via?: string;
  /** Take `via` to be on the link whatever the link's addresses say (mesh peers' underlay addresses). */
  onlink?: boolean;
  /** The spec field it comes from ("spec.routes[0]", "spec.endpoints[1].networks[0]"), for messages. */
  field?: string;
}

/**
 * One tunnel's part of the agent's nftables table (`table ip ipip-operator`). Each part is
 * a set and a rule per purpose, named and commented after the tunnel.
 */
export interface DesiredRules {
  tunnel: string;
  /**
   * Drop IPIP (IP protocol 4) to `local` from every source but `allowed` (sorted
   * addresses): an any-remote (mesh) link takes IPIP from anyone, spoofed inner sources
   * included. Point-to-point links need no rule: the kernel gives them only their
   * remote's packets.
   */
  peerFilter?: { local: string; allowed: readonly string[] };
  /**
   * Source-NAT (masquerade) packets from `sources` (sorted prefixes with a length, none
   * inside another: the other endpoints' overlay addresses and networks) that leave by
   * any device but `link`, so hosts beyond this node answer without a route back.
   */
  masquerade?: { link: string; sources: readonly string[] };
}

export interface DesiredTunnel {
  tunnel: string;
  link: DesiredLink;
  addresses: DesiredAddress[];
  routes: DesiredRoute[];
  /** Absent: the tunnel needs nothing in nftables on this node. */
  rules?: DesiredRules;
}
