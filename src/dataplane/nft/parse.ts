// Turns `nft -j -p list table ip ipip-operator` into each tunnel's part of the agent's
// table. Pure, so it is tested on output captured from a real kernel (test/unit/fixtures/).
// A part is recognised only in exactly the form render.ts writes; anything else of a
// tunnel leaves that part out, so the planner sees a difference and rewrites the table.
// -p prints protocol 4 as a number ("ipencap" without it, after /etc/protocols).

import type { ObservedRules, RuleCounter } from '../../model/kernel.ts';
import { NFT_FAMILY, NFT_TABLE, NO_TUNNEL } from '../../model/ownership.ts';
import { isIPv4, isIPv4Prefix, parsePrefix } from '../../net/ipv4.ts';
import {
  BASE_CHAINS,
  IPIP_PROTOCOL,
  isTunnelName,
  MASQ_SET_PREFIX,
  PEERS_SET_PREFIX,
  POSTROUTING_CHAIN,
  PREROUTING_CHAIN,
} from './render.ts';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The one key of `{ kind: {...} }`, as every object of `nft -j` output and every expression is. */
function single(value: unknown): [string, unknown] | undefined {
  if (!isObject(value)) return undefined;
  const keys = Object.keys(value);
  return keys.length === 1 ? [keys[0]!, value[keys[0]!]] : undefined;
}

/** `{ match: { op, left: { payload: { protocol: 'ip', field } }, right } }` -> right, or undefined. */
function ipMatch(expr: unknown, op: '==' | '!=', field: string): unknown {
  const [kind, m] = single(expr) ?? [];
  if (kind !== 'match' || !isObject(m) || m.op !== op) return undefined;
  const [leftKind, payload] = single(m.left) ?? [];
  if (leftKind !== 'payload' || !isObject(payload) || payload.protocol !== 'ip' || payload.field !== field)
    return undefined;
  return m.right;
}

function oifnameNot(expr: unknown): unknown {
  const [kind, m] = single(expr) ?? [];
  if (kind !== 'match' || !isObject(m) || m.op !== '!=') return undefined;
  const [leftKind, meta] = single(m.left) ?? [];
  return leftKind === 'meta' && isObject(meta) && meta.key === 'oifname' ? m.right : undefined;
}

function counterOf(expr: unknown): RuleCounter | undefined {
  const [kind, c] = single(expr) ?? [];
  if (kind !== 'counter' || !isObject(c)) return undefined;
  return typeof c.packets === 'number' && typeof c.bytes === 'number'
    ? { packets: c.packets, bytes: c.bytes }
    : undefined;
}

/** A verdict or statement without arguments: `{ drop: null }`, `{ masquerade: null }`. */
function isBare(expr: unknown, name: string): boolean {
  const [kind, value] = single(expr) ?? [];
  return kind === name && value === null;
}

/** The set a `@name` reference names. */
function setReference(right: unknown): string | undefined {
  return typeof right === 'string' && right.startsWith('@') ? right.slice(1) : undefined;
}

interface PeerRule {
  local: string;
  set: string;
  counter: RuleCounter;
}

interface MasqueradeRule {
  link: string;
  set: string;
  counter: RuleCounter;
}

/** `ip protocol 4 ip daddr L ip saddr != @peers-T counter drop`: L, the set and the counter. */
function peerRule(expr: readonly unknown[]): PeerRule | undefined {
  if (expr.length !== 5) return undefined;
  const protocol = ipMatch(expr[0], '==', 'protocol');
  const local = ipMatch(expr[1], '==', 'daddr');
  const set = setReference(ipMatch(expr[2], '!=', 'saddr'));
  const counter = counterOf(expr[3]);
  if (protocol !== IPIP_PROTOCOL && protocol !== 'ipencap') return undefined;
  if (typeof local !== 'string' || !isIPv4(local) || set === undefined || counter === undefined) return undefined;
  return isBare(expr[4], 'drop') ? { local, set, counter } : undefined;
}

/** `ip saddr @masq-T oifname != "LINK" counter masquerade`: the link, the set and the counter. */
function masqueradeRule(expr: readonly unknown[]): MasqueradeRule | undefined {
  if (expr.length !== 4) return undefined;
  const set = setReference(ipMatch(expr[0], '==', 'saddr'));
  const link = oifnameNot(expr[1]);
  const counter = counterOf(expr[2]);
  if (set === undefined || typeof link !== 'string' || link === '' || counter === undefined) return undefined;
  return isBare(expr[3], 'masquerade') ? { link, set, counter } : undefined;
}

/** A set's elements: plain addresses, or prefixes ({ prefix: { addr, len } }); undefined for any other form. */
function elements(set: Json): string[] | undefined {
  if (set.elem === undefined) return [];
  const list = Array.isArray(set.elem) ? set.elem : [set.elem];
  const out: string[] = [];
  for (const e of list) {
    if (typeof e === 'string' && isIPv4(e)) out.push(`${e}/32`);
    else {
      const [kind, p] = single(e) ?? [];
      const text = kind === 'prefix' && isObject(p) ? `${String(p.addr)}/${String(p.len)}` : '';
      if (!isIPv4Prefix(text)) return undefined;
      out.push(text);
    }
  }
  return out;
}

function sameFlags(flags: unknown, want: readonly string[]): boolean {
  const list = flags === undefined ? [] : Array.isArray(flags) ? flags : [flags];
  return list.length === want.length && want.every((f) => list.includes(f));
}

/** The addresses of a peers set (sorted as resolve sorts them), if it is one as render.ts makes it. */
function peerAddresses(set: Json | undefined): string[] | undefined {
  if (set === undefined || set.type !== 'ipv4_addr' || !sameFlags(set.flags, []) || set.timeout !== undefined)
    return undefined;
  const list = elements(set);
  if (list === undefined || !list.every((p) => p.endsWith('/32'))) return undefined;
  return list.map((p) => p.slice(0, -'/32'.length)).sort();
}

/** The prefixes of a masquerade set, "a.b.c.d/len", sorted by address then length (as resolve sorts them). */
function masqueradePrefixes(set: Json | undefined): string[] | undefined {
  if (set === undefined || set.type !== 'ipv4_addr' || !sameFlags(set.flags, ['interval']) || set.timeout !== undefined)
    return undefined;
  const list = elements(set);
  if (list === undefined) return undefined;
  const key = (p: string) => parsePrefix(p);
  return list.sort((a, b) => key(a).network - key(b).network || key(a).length - key(b).length);
}

/** The tunnel a set is named after, and which of its sets it is. */
function setOwner(name: string): { tunnel: string; purpose: 'peersSet' | 'masqSet' } | undefined {
  for (const [prefix, purpose] of [
    [PEERS_SET_PREFIX, 'peersSet'],
    [MASQ_SET_PREFIX, 'masqSet'],
  ] as const) {
    const tunnel = name.slice(prefix.length);
    if (name.startsWith(prefix) && isTunnelName(tunnel)) return { tunnel, purpose };
  }
  return undefined;
}

function isBaseChain(chain: Json): chain is Json & { name: keyof typeof BASE_CHAINS } {
  const want = BASE_CHAINS[chain.name as keyof typeof BASE_CHAINS] as Json | undefined;
  return want !== undefined && Object.entries(want).every(([k, v]) => chain[k] === v);
}

/** One tunnel's objects, as found, before deciding what of them is recognised. */
interface TunnelObjects {
  peersSet?: Json;
  masqSet?: Json;
  peerRules: (PeerRule & { chain: string })[];
  masqueradeRules: (MasqueradeRule & { chain: string })[];
  /** Rules with the tunnel's comment in neither form. */
  others: number;
}

/**
 * Each tunnel's part of the agent's table (`nftables` of `nft -j -p list table ip
 * ipip-operator`), sorted by tunnel. A tunnel is named by its sets (peers-T, masq-T) and
 * its rules' comments. A peer filter counts only as one rule of exactly render.ts's form
 * in the prerouting base chain with its set; a masquerade likewise in postrouting. Objects
 * that no recognised part explains (a chain, set or rule a person added, a leftover set
 * whose rule is gone, a duplicate rule, table flags such as dormant) make an entry
 * NO_TUNNEL without fields, so that the planner rewrites the table without them; an
 * existing table with no tunnel's objects at all is that entry alone (the planner removes
 * the table).
 */
export function parseNftTable(nftables: unknown): ObservedRules[] {
  const objects = Array.isArray(nftables) ? nftables : [];
  const tunnels = new Map<string, TunnelObjects>();
  const of = (tunnel: string) => {
    const t = tunnels.get(tunnel) ?? { peerRules: [], masqueradeRules: [], others: 0 };
    tunnels.set(tunnel, t);
    return t;
  };
  let strays = 0;
  const chainsUsed = new Map<string, boolean>();
  for (const o of objects) {
    const [kind, body] = single(o) ?? [];
    if (kind === 'metainfo') continue;
    if (!isObject(body)) {
      strays++;
      continue;
    }
    // Only the agent's table is listed; its objects are checked all the same.
    const ours = body.family === NFT_FAMILY && (kind === 'table' ? body.name : body.table) === NFT_TABLE;
    if (!ours) continue;
    switch (kind) {
      case 'table':
        if (!sameFlags(body.flags, [])) strays++;
        break;
      case 'set': {
        const named = setOwner(String(body.name));
        if (named === undefined) strays++;
        else of(named.tunnel)[named.purpose] = body;
        break;
      }
      case 'chain':
        if (isBaseChain(body)) chainsUsed.set(body.name, false);
        else strays++;
        break;
      case 'rule': {
        const tunnel = typeof body.comment === 'string' && isTunnelName(body.comment) ? body.comment : undefined;
        if (tunnel === undefined) {
          strays++;
          break;
        }
        const t = of(tunnel);
        const expr = Array.isArray(body.expr) ? body.expr : [];
        const chain = String(body.chain);
        const peer = peerRule(expr);
        const masquerade = masqueradeRule(expr);
        if (peer !== undefined) t.peerRules.push({ ...peer, chain });
        else if (masquerade !== undefined) t.masqueradeRules.push({ ...masquerade, chain });
        else t.others++;
        break;
      }
      default:
        // A map, a flowtable, a named counter...: render.ts makes none of them.
        strays++;
    }
  }

  const parts: ObservedRules[] = [];
  for (const [tunnel, t] of [...tunnels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const part: ObservedRules = { tunnel };
    let explained = 0;
    const peer = t.peerRules.length === 1 ? t.peerRules[0]! : undefined;
    if (peer !== undefined) {
      // The counter goes on through a rewrite even when the rest is not as written.
      part.dropped = peer.counter;
      const allowed = peerAddresses(t.peersSet);
      if (
        peer.chain === PREROUTING_CHAIN &&
        chainsUsed.has(PREROUTING_CHAIN) &&
        peer.set === `${PEERS_SET_PREFIX}${tunnel}` &&
        allowed !== undefined
      ) {
        part.peerFilter = { local: peer.local, allowed };
        chainsUsed.set(PREROUTING_CHAIN, true);
        explained += 2;
      }
    }
    const masq = t.masqueradeRules.length === 1 ? t.masqueradeRules[0]! : undefined;
    if (masq !== undefined) {
      part.masqueraded = masq.counter;
      const sources = masqueradePrefixes(t.masqSet);
      if (
        masq.chain === POSTROUTING_CHAIN &&
        chainsUsed.has(POSTROUTING_CHAIN) &&
        masq.set === `${MASQ_SET_PREFIX}${tunnel}` &&
        sources !== undefined
      ) {
        part.masquerade = { link: masq.link, sources };
        chainsUsed.set(POSTROUTING_CHAIN, true);
        explained += 2;
      }
    }
    const found =
      t.peerRules.length +
      t.masqueradeRules.length +
      t.others +
      (t.peersSet === undefined ? 0 : 1) +
      (t.masqSet === undefined ? 0 : 1);
    strays += found - explained;
    parts.push(part);
  }
  // A base chain that holds no recognised rule is not one render.ts would write.
  for (const used of chainsUsed.values()) if (!used) strays++;
  if (strays > 0 || parts.length === 0) parts.unshift({ tunnel: NO_TUNNEL });
  return parts;
}

/** `nft -j` output as text -> parseNftTable of its `nftables` array. */
export function parseNftListOutput(stdout: string): ObservedRules[] {
  const json = JSON.parse(stdout) as { nftables?: unknown };
  return parseNftTable(json.nftables);
}
