// Turns `ip -json -details -N -s` output into the observed model. Pure, so it is tested on
// output captured from a real kernel (test/unit/fixtures/). -N makes iproute2 print
// protocols, scopes and types as numbers, so no name table (/etc/iproute2) is consulted.

import type { KernelState, LinkStats, ObservedAddress, ObservedLink, ObservedRoute } from '../../model/kernel.ts';
import type { TunnelAttrs } from '../../model/tunnel.ts';
import { normalizePrefix } from '../../net/ipv4.ts';

type Json = Record<string, unknown>;

const SCOPE_NAMES: Record<string, number> = { global: 0, universe: 0, site: 200, link: 253, host: 254, nowhere: 255 };
const PROTOCOL_NAMES: Record<string, number> = { unspec: 0, redirect: 1, kernel: 2, boot: 3, static: 4 };
const GROUP_NAMES: Record<string, number> = { default: 0 };
/** Route types by iproute2's name (rtnetlink's RTN_* numbers), for output where -N was not honoured; monitor.ts reads them too. */
export const ROUTE_TYPE_NAMES: Readonly<Record<string, number>> = {
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  throw: 9,
};

/** Numbers come as numbers or numeric strings; names only if -N was not honoured. */
function toNumber(value: unknown, names: Readonly<Record<string, number>>, fallback: number): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string') {
    if (/^[0-9]+$/.test(value)) return Number(value);
    const named = names[value];
    if (named !== undefined) return named;
  }
  return fallback;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function parseAddress(a: Json): ObservedAddress | undefined {
  if (a.family !== 'inet' || typeof a.local !== 'string') return undefined;
  const address: ObservedAddress = {
    local: a.local,
    prefixlen: typeof a.prefixlen === 'number' ? a.prefixlen : 32,
    scope: toNumber(a.scope, SCOPE_NAMES, 0),
  };
  // `address` is the peer only when it differs from local (iproute2 prints it for peers).
  const peer = str(a.address);
  if (peer !== undefined && peer !== a.local) address.peer = peer;
  return address;
}

/**
 * `ip -s -json` prints a link's counters as stats64 (or stats, from a kernel without 64-bit
 * counters; same keys). A counter that is missing drops the whole set: a made-up 0 would
 * read as a counter reset to anyone computing a rate.
 */
function parseStats(raw: unknown): LinkStats | undefined {
  const { rx, tx } = (raw ?? {}) as { rx?: Json; tx?: Json };
  if (rx === undefined || tx === undefined) return undefined;
  const stats = {
    rxBytes: rx.bytes,
    rxPackets: rx.packets,
    rxErrors: rx.errors,
    rxDropped: rx.dropped,
    txBytes: tx.bytes,
    txPackets: tx.packets,
    txErrors: tx.errors,
    txDropped: tx.dropped,
  };
  return Object.values(stats).every((n) => typeof n === 'number') ? (stats as LinkStats) : undefined;
}

/** A tunnel address attribute (info_data, or a monitor line's word): iproute2 prints "any" for an unset one. */
export function tunnelAddress(value: unknown): string | undefined {
  const text = str(value);
  return text === 'any' ? undefined : text;
}

/**
 * The attributes of a tunnel device of a mode the agent knows, from `ip -d`'s info_data;
 * undefined for every other kind. A new mode's parser goes here.
 */
function tunnelAttrs(kind: string | undefined, data: Json): TunnelAttrs | undefined {
  switch (kind) {
    case 'ipip':
      // iproute2 prints no ttl for "inherit" (0).
      return {
        mode: 'ipip',
        local: tunnelAddress(data.local),
        remote: tunnelAddress(data.remote),
        ttl: typeof data.ttl === 'number' ? data.ttl : 0,
        underlayDevice: str(data.link),
      };
    default:
      return undefined;
  }
}

export function parseLinks(json: unknown): ObservedLink[] {
  if (!Array.isArray(json)) throw new Error('ip -json address show: expected a JSON array');
  return json.map((raw: Json) => {
    const flags = Array.isArray(raw.flags) ? (raw.flags as unknown[]) : [];
    const linkinfo = (raw.linkinfo ?? {}) as Json;
    const data = (linkinfo.info_data ?? {}) as Json;
    const link: ObservedLink = {
      index: Number(raw.ifindex),
      name: String(raw.ifname),
      group: toNumber(raw.group, GROUP_NAMES, 0),
      up: flags.includes('UP'),
      mtu: Number(raw.mtu),
      addresses: Array.isArray(raw.addr_info)
        ? (raw.addr_info as Json[]).map(parseAddress).filter((a): a is ObservedAddress => a !== undefined)
        : [],
    };
    const kind = str(linkinfo.info_kind);
    if (kind !== undefined) link.kind = kind;
    const alias = str(raw.ifalias);
    if (alias !== undefined) link.alias = alias;
    const tunnel = tunnelAttrs(kind, data);
    if (tunnel !== undefined) link.tunnel = tunnel;
    const stats = parseStats(raw.stats64 ?? raw.stats);
    if (stats !== undefined) link.stats = stats;
    return link;
  });
}

export function parseRoutes(json: unknown): ObservedRoute[] {
  if (!Array.isArray(json)) throw new Error('ip -json route show: expected a JSON array');
  return json.map((raw: Json) => {
    const route: ObservedRoute = {
      dst: normalizePrefix(String(raw.dst)),
      protocol: toNumber(raw.protocol, PROTOCOL_NAMES, 0),
      metric: typeof raw.metric === 'number' ? raw.metric : 0,
      scope: toNumber(raw.scope, SCOPE_NAMES, 0),
      type: toNumber(raw.type, ROUTE_TYPE_NAMES, 1),
    };
    const dev = str(raw.dev);
    if (dev !== undefined) route.dev = dev;
    const gateway = str(raw.gateway);
    if (gateway !== undefined) route.gateway = gateway;
    if (Array.isArray(raw.flags) && raw.flags.includes('onlink')) route.onlink = true;
    return route;
  });
}

/**
 * The observe batch prints one JSON document per line: first `address show` (links with
 * their addresses), then `route show`. `address show` is used for links because in one
 * batch a `link show` before it makes iproute2 (6.1) drop addr_info from the later output.
 */
export function parseObserveOutput(stdout: string): KernelState {
  const docs = stdout.split('\n').filter((line) => line.trim() !== '');
  if (docs.length !== 2) {
    throw new Error(`ip observe batch: expected 2 JSON documents, got ${docs.length}`);
  }
  return {
    links: parseLinks(JSON.parse(docs[0]!)),
    routes: parseRoutes(JSON.parse(docs[1]!)),
  };
}
