// What the agent knows of a node's kernel: the links with their IPv4 addresses and traffic
// counters, and the IPv4 routes of the main table. Types only, shared by every stage: the
// drivers in dataplane/ fill them, resolve and plan read them.

import type { DesiredRules } from './desired.ts';
import type { TunnelAttrs } from './tunnel.ts';

export interface ObservedAddress {
  local: string;
  /** The peer of a point-to-point address ("ip addr add A peer B"). */
  peer?: string;
  prefixlen: number;
  /** 0 is global, 253 link, 254 host (rtnetlink scope numbers). */
  scope: number;
}

export interface ObservedLink {
  index: number;
  name: string;
  /** linkinfo.info_kind: "ipip", "veth", ...; undefined for physical and loopback devices. */
  kind?: string;
  alias?: string;
  /** The link group (`ip link ... group N`); 0 is the default group. */
  group: number;
  /** Administratively up (the UP flag), which is what `ip link set up` changes. */
  up: boolean;
  mtu: number;
  /** For a tunnel of a mode the agent knows: its attributes, in the same shape as a desired link's. */
  tunnel?: TunnelAttrs;
  addresses: ObservedAddress[];
  /** The kernel's counters since the link was created; undefined when `ip` printed none. */
  stats?: LinkStats;
}

/**
 * A link's traffic counters as the kernel keeps them (`ip -s`: stats64). Errors and drops
 * are the totals; by kernel convention the finer kinds (carrier, over, ...) are counted in
 * them too, so they are not kept apart. Numbers lose precision only past 2^53 (some 9 PB).
 */
export interface LinkStats {
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

export interface ObservedRoute {
  /** Always with a length: "172.0.0.0/24", "172.0.0.3/32", "0.0.0.0/0". */
  dst: string;
  dev?: string;
  /** The next hop's address (`via`). */
  gateway?: string;
  /** The `onlink` flag: the next hop is taken to be on the link, whatever its addresses say. */
  onlink?: boolean;
  protocol: number;
  metric: number;
  scope: number;
  type: number;
}

/** A rule's counter, as nftables keeps it. */
export interface RuleCounter {
  packets: number;
  bytes: number;
}

/**
 * One tunnel's part of the agent's nftables table as read back (`nft -j`): what of it
 * could be recognised (a part with a set and no rule has neither field), and the rules'
 * counters. The owner is the tunnel its set names and rule comments carry.
 */
export interface ObservedRules extends DesiredRules {
  /** Packets dropped by the peer filter's rule. */
  dropped?: RuleCounter;
  /** Packets the masquerade rule matched: in a nat chain, the first packet of each connection. */
  masqueraded?: RuleCounter;
}

/**
 * The agent's nftables table on a node. Unavailable: the node's kernel or `nft` cannot hold
 * it (no nft binary, no nf_tables for the ip family, no nat), and why.
 */
export type NftState =
  | { available: true /** whether the table exists */; table: boolean; rules: ObservedRules[] }
  | { available: false; why: string };

/** A node's kernel state, as one consistent-enough read. */
export interface KernelState {
  links: ObservedLink[];
  routes: ObservedRoute[];
  /**
   * net.ipv4.ip_forward: whether the node forwards packets (an endpoint with networks
   * behind it needs it); undefined when not read.
   */
  ipv4Forwarding?: boolean;
  /** The agent's nftables table; undefined when not read (no nft driver, plan --from-scratch). */
  nft?: NftState;
}

export const SCOPE_GLOBAL = 0;

/** What this node's agent programs, which is what the kernel monitor wakes it for. */
export interface KernelInterest {
  /** Names of the links the agent wants or owns. */
  links: ReadonlySet<string>;
  /** Destinations it routes (normalised: "172.0.0.0/24", "10.1.1.1/32"). */
  prefixes: ReadonlySet<string>;
}

export const NO_INTEREST: KernelInterest = { links: new Set(), prefixes: new Set() };

/**
 * One kernel event as the monitor read it: what changed, in the terms of the observed
 * state, so that the agent can keep a view of the kernel between reads (controller/view.ts)
 * and tell its own writes' echoes from drift without reading everything again.
 */
export type KernelChange =
  /** A link as it is now (added or changed), or as it was when deleted; no addresses or counters. */
  | { kind: 'link'; deleted: boolean; link: Omit<ObservedLink, 'addresses' | 'stats'> }
  | { kind: 'address'; deleted: boolean; dev: string; address: ObservedAddress }
  /** A route of the main table (the table observe reads). */
  | { kind: 'route'; deleted: boolean; route: ObservedRoute }
  /** A transaction that touched the agent's nftables table; `own`: one of the agent's own writes. */
  | { kind: 'nft'; own: boolean }
  /** Nothing the agent reads: IPv6, another routing table, another nftables table. */
  | { kind: 'elsewhere' }
  /** A line the agent cannot read: its view of the kernel is not to be trusted until the next read. */
  | { kind: 'unreadable' };

export interface KernelEvent {
  /** Whether it can change what a reconcile would do (the monitor filters: monitor.ts of each driver). */
  concernsUs: boolean;
  change: KernelChange;
}
