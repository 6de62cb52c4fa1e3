// The one nft renderer: the agent's whole table as one `nft -f` transaction, for apply,
// for the `plan` CLI and for golden tests alike. Every token is checked here, last, against
// the one form it may take (a tunnel name, a link name, an address, a prefix, a counter), so
// that nothing a user wrote can become nft syntax: no second statement, no other table.

import type { ObservedRules, RuleCounter } from '../../model/kernel.ts';
import { NFT_FAMILY, NFT_TABLE } from '../../model/ownership.ts';
import { isIPv4, isIPv4Prefix } from '../../net/ipv4.ts';

/** `table ip ipip-operator`, as every statement about the table names it. */
export const NFT_TABLE_SPEC = `${NFT_FAMILY} ${NFT_TABLE}`;

/** Shown by `nft list table`; the kernel keeps it (NFTA_TABLE_USERDATA, 5.10 and later). */
export const NFT_TABLE_COMMENT = 'managed by ipip-operator; every change replaces the whole table';

/** The set of a tunnel's peer filter: the addresses IPIP to its local address may come from. */
export const PEERS_SET_PREFIX = 'peers-';
/** The set of a tunnel's masquerade: the source prefixes that are masqueraded. */
export const MASQ_SET_PREFIX = 'masq-';

/** Base chains: raw priority, so IPIP from strangers is dropped before it creates a conntrack entry. */
export const PREROUTING_CHAIN = 'prerouting';
export const POSTROUTING_CHAIN = 'postrouting';
/** What `nft -j` prints for the two base chains (type, hook, priority as a number, policy). */
export const BASE_CHAINS = {
  [PREROUTING_CHAIN]: { type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' },
  [POSTROUTING_CHAIN]: { type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' },
} as const;

/** The IP protocol number of IPIP (nft names it "ipencap" after /etc/protocols). */
export const IPIP_PROTOCOL = 4;

/** Kubernetes object names (api/names.ts), as tunnel names are: lowercase DNS subdomains of at most 63. */
const TUNNEL_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** Link names as the API validates them (architecture.md, invariant 4). */
const LINK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MAX_COUNTER = 2n ** 64n - 1n;

function refuse(what: string, token: unknown): never {
  throw new Error(`refusing to pass ${JSON.stringify(token)} to nft: not a ${what}`);
}

/** Whether a name is a tunnel's: the parser asks too, to tell the agent's set names and comments from others. */
export function isTunnelName(name: string): boolean {
  return name.length <= 63 && TUNNEL_NAME.test(name);
}

function tunnelName(name: string): string {
  return isTunnelName(name) ? name : refuse('tunnel name (a lowercase DNS subdomain of at most 63)', name);
}

function linkName(name: string): string {
  return name.length <= 15 && LINK_NAME.test(name) ? name : refuse('link name', name);
}

function address(text: string): string {
  return isIPv4(text) ? text : refuse('IPv4 address', text);
}

function prefix(text: string): string {
  return isIPv4Prefix(text) ? text : refuse('IPv4 prefix with a length', text);
}

/** A counter's value in digits (never "1e+21"), from 0 to 2^64 - 1 as the kernel keeps it. */
function count(n: number): string {
  if (!Number.isInteger(n) || n < 0 || BigInt(n) > MAX_COUNTER) refuse('counter value', n);
  return BigInt(n).toString();
}

/** `counter packets P bytes B`: a rewrite of the table starts each rule from the counts it had. */
function counter(c: RuleCounter | undefined): string {
  return `counter packets ${count(c?.packets ?? 0)} bytes ${count(c?.bytes ?? 0)}`;
}

function set(name: string, flags: string | undefined, elements: readonly string[]): string[] {
  return [
    `\tset ${name} {`,
    '\t\ttype ipv4_addr',
    ...(flags === undefined ? [] : [`\t\tflags ${flags}`]),
    // nft refuses an empty `elements = { }`: an empty set has no elements line.
    ...(elements.length === 0 ? [] : [`\t\telements = { ${elements.join(', ')} }`]),
    '\t}',
  ];
}

function chain(name: keyof typeof BASE_CHAINS, header: string, rules: readonly string[]): string[] {
  return rules.length === 0 ? [] : [`\tchain ${name} {`, `\t\t${header}`, ...rules.map((r) => `\t\t${r}`), '\t}'];
}

/**
 * The transaction that makes the agent's table exactly `table` (every tunnel's rules,
 * sorted by tunnel): create-if-missing, delete, and the whole table anew, so a repeat
 * never duplicates a rule and nothing a person added survives; for an empty `table`,
 * create-if-missing and delete (so too when no tunnel's part has a peer filter or a
 * masquerade: an empty table is not left behind). nft applies a file all or nothing, so the kernel never
 * holds a table without the rules.
 */
export function nftScript(table: readonly ObservedRules[]): string[] {
  const head = [`table ${NFT_TABLE_SPEC}`, `delete table ${NFT_TABLE_SPEC}`];
  const sets: string[] = [];
  const prerouting: string[] = [];
  const postrouting: string[] = [];
  for (const r of table) {
    const tunnel = tunnelName(r.tunnel);
    const f = r.peerFilter;
    if (f !== undefined) {
      const peers = `${PEERS_SET_PREFIX}${tunnel}`;
      sets.push(...set(peers, undefined, f.allowed.map(address)));
      prerouting.push(
        `ip protocol ${IPIP_PROTOCOL} ip daddr ${address(f.local)} ip saddr != @${peers} ${counter(r.dropped)} drop comment "${tunnel}"`,
      );
    }
    const m = r.masquerade;
    if (m !== undefined) {
      const masq = `${MASQ_SET_PREFIX}${tunnel}`;
      sets.push(...set(masq, 'interval', m.sources.map(prefix)));
      postrouting.push(
        `ip saddr @${masq} oifname != "${linkName(m.link)}" ${counter(r.masqueraded)} masquerade comment "${tunnel}"`,
      );
    }
  }
  // Every part makes a set: without one, no tunnel needs anything, and the table goes.
  if (sets.length === 0) return head;
  return [
    ...head,
    `table ${NFT_TABLE_SPEC} {`,
    `\tcomment "${NFT_TABLE_COMMENT}"`,
    ...sets,
    ...chain(PREROUTING_CHAIN, 'type filter hook prerouting priority raw; policy accept;', prerouting),
    ...chain(POSTROUTING_CHAIN, 'type nat hook postrouting priority srcnat; policy accept;', postrouting),
    '}',
  ];
}
