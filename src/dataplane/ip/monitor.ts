// Which kernel events can change what a reconcile would do. `ip monitor` reports every
// route of every table: on a node whose BGP daemon (BIRD, GoBGP, FRR) churns routes, a
// reconcile per route event would read the whole routing table over and over for nothing.
// Pure: the monitor's lines in, a yes or no out.

import type { KernelChange, KernelInterest, ObservedAddress, ObservedLink, ObservedRoute } from '../../model/kernel.ts';
import { ROUTE_PROTOCOL } from '../../model/ownership.ts';
import { normalizePrefix } from '../../net/ipv4.ts';
import { ROUTE_TYPE_NAMES, tunnelAddress } from './parse.ts';

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
  let ours = false;
  const devs: string[] = [];
  for (let i = 1; i < tokens.length - 1; i++) {
    if (tokens[i] === 'proto' && tokens[i + 1] === OUR_PROTO) ours = true;
    // Multipath routes name a dev per nexthop: any of them counts.
    if (tokens[i] === 'dev') devs.push(tokens[i + 1]!);
  }
  return routeConcerns(dst, ours, devs, interest);
}

/**
 * monitorLineMatters' rule for a route, once read: one of ours (`ours`: proto 203), on one
 * of our links (any of `devs`), or for a prefix we route.
 */
export function routeConcerns(dst: string, ours: boolean, devs: readonly string[], interest: KernelInterest): boolean {
  if (ours || devs.some((dev) => interest.links.has(dev))) return true;
  if (dst.includes(':')) return false; // IPv6: not ours to route, and not on our links (checked above)
  return interest.prefixes.has(normalizePrefix(dst));
}

const MAIN_TABLE = 254;

/** The value after `key` among `tokens`, or undefined. */
function after(tokens: readonly string[], key: string): string | undefined {
  const i = tokens.indexOf(key);
  return i >= 0 && i + 1 < tokens.length ? tokens[i + 1] : undefined;
}

function numberAfter(tokens: readonly string[], key: string): number | undefined {
  const value = after(tokens, key);
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/**
 * A `[LINK]` line of `ip -d -o monitor`: "10: name@parent: <FLAGS> mtu M ... group G \ link/...
 * \ KIND details \ alias TEXT", the segments separated by a backslash. -d prints each link
 * whole (its kind's attributes and alias too), so a line shows every attribute the agent
 * compares.
 */
function parseLink(body: string, deleted: boolean): KernelChange {
  const segments = body.split('\\').map((s) => s.trim());
  const head = /^(\d+): ([^\s@:]+)(?:@[^\s:]*)?: <([^>]*)>(.*)$/.exec(segments[0]!);
  if (head === null) return { kind: 'unreadable' };
  const tokens = head[4]!.trim().split(/\s+/);
  const mtu = numberAfter(tokens, 'mtu');
  if (mtu === undefined) return { kind: 'unreadable' };
  const link: Omit<ObservedLink, 'addresses' | 'stats'> = {
    index: Number(head[1]),
    name: head[2]!,
    group: numberAfter(tokens, 'group') ?? 0,
    up: head[3]!.split(',').includes('UP'),
    mtu,
  };
  for (const segment of segments.slice(1)) {
    if (segment.startsWith('alias ')) link.alias = segment.slice('alias '.length);
    const words = segment.split(/\s+/);
    // The kind's segment: "ipip any remote R local L dev D ttl T pmtudisc ..." (ipip's "any" is its inner protocol).
    if (words[0] === 'ipip' && words.includes('remote')) {
      link.kind = 'ipip';
      const ttl = after(words, 'ttl');
      link.tunnel = {
        mode: 'ipip',
        local: tunnelAddress(after(words, 'local')),
        remote: tunnelAddress(after(words, 'remote')),
        ttl: ttl === undefined || ttl === 'inherit' ? 0 : Number(ttl),
        underlayDevice: after(words, 'dev'),
      };
    } else if (link.kind === undefined && /^[a-z][a-z0-9_]*$/.test(words[0]!) && !GENERIC_WORDS.has(words[0]!)) {
      link.kind = words[0]!;
    }
  }
  return { kind: 'link', deleted, link };
}

/** First words of `ip -d` segments that are not a link kind. */
const GENERIC_WORDS = new Set(['link', 'numtxqueues', 'addrgenmode', 'alias', 'altname', 'vf', 'prop', 'bridge_slave']);

/** An `[ADDR]` line: "10: dev    inet A[ peer B]/LEN ... scope S dev"; IPv6 is elsewhere. */
function parseAddress(body: string, deleted: boolean): KernelChange {
  const m = /^\d+: (\S+)\s+(inet6?) (\S+?)(?: peer (\S+?))?(?:\/(\d+))?(?:\s|$)(.*)$/.exec(body);
  if (m === null) return { kind: 'unreadable' };
  if (m[2] === 'inet6') return { kind: 'elsewhere' };
  const rest = m[6]!.split(/\s+/);
  const address: ObservedAddress = {
    local: m[3]!,
    prefixlen: m[5] === undefined ? 32 : Number(m[5]),
    scope: numberAfter(rest, 'scope') ?? 0,
  };
  if (m[4] !== undefined) address.peer = m[4];
  return { kind: 'address', deleted, dev: m[1]!, address };
}

/** A `[ROUTE]` line: "[TYPE ]DST [via G ]dev D [table T ]proto P scope S ..."; multipath nexthops have no single dev. */
function parseRoute(body: string, deleted: boolean): KernelChange {
  const tokens = body.split(/\s+/).filter((t) => t !== '' && t !== '\\');
  let type = 1;
  if (tokens.length > 1 && (/^\d+$/.test(tokens[0]!) || ROUTE_TYPE_NAMES[tokens[0]!] !== undefined)) {
    type = ROUTE_TYPE_NAMES[tokens[0]!] ?? Number(tokens[0]);
    tokens.shift();
  }
  const dst = tokens[0];
  if (dst === undefined) return { kind: 'unreadable' };
  if (dst.includes(':')) return { kind: 'elsewhere' };
  if ((numberAfter(tokens, 'table') ?? MAIN_TABLE) !== MAIN_TABLE) return { kind: 'elsewhere' };
  let prefix: string;
  try {
    prefix = normalizePrefix(dst === 'default' ? '0.0.0.0/0' : dst);
  } catch {
    return { kind: 'unreadable' };
  }
  const route: ObservedRoute = {
    dst: prefix,
    protocol: numberAfter(tokens, 'proto') ?? 0,
    metric: numberAfter(tokens, 'metric') ?? 0,
    scope: numberAfter(tokens, 'scope') ?? 0,
    type,
  };
  if (!tokens.includes('nexthop')) {
    const dev = after(tokens, 'dev');
    if (dev !== undefined) route.dev = dev;
    const gateway = after(tokens, 'via');
    if (gateway !== undefined) route.gateway = gateway;
  }
  if (tokens.includes('onlink')) route.onlink = true;
  return { kind: 'route', deleted, route };
}

/**
 * What one line of `ip -d -N -o monitor label link address route` says changed. Pure. A
 * line it cannot read is `unreadable`, never guessed at: the agent then reads the kernel.
 */
export function parseMonitorLine(line: string): KernelChange {
  const m = /^\[(LINK|ADDR|ROUTE)\](Deleted )?(.*)$/.exec(line);
  if (m === null) return { kind: 'unreadable' };
  const deleted = m[2] !== undefined;
  const body = m[3]!.trim();
  switch (m[1]) {
    case 'LINK':
      return parseLink(body, deleted);
    case 'ADDR':
      return parseAddress(body, deleted);
    default:
      return parseRoute(body, deleted);
  }
}
