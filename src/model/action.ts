// A plan is an ordered list of actions. Each action is one change to one kernel object and
// names the tool that makes it; its operations are in that tool's terms but are not yet
// command text: the tool's renderer in dataplane/ turns them into exact commands, for
// apply, for the `plan` CLI and for golden tests alike.

import type { DesiredAddress, DesiredLink, DesiredRoute } from './desired.ts';
import type { ObservedRules } from './kernel.ts';
import type { TunnelAttrs } from './tunnel.ts';

export type ObjectKind = 'link' | 'address' | 'route' | 'rules';
export type Verb = 'create' | 'update' | 'delete';
export type Tool = 'ip' | 'nft';

export const OBJECT_KINDS: readonly ObjectKind[] = ['link', 'address', 'route', 'rules'];
export const VERBS: readonly Verb[] = ['create', 'update', 'delete'];

/** One `ip` command, by meaning. */
export type IpOperation =
  | { op: 'link-add'; link: DesiredLink; group: number }
  | { op: 'link-set-alias'; name: string; alias: string }
  | { op: 'link-set-tunnel'; name: string; tunnel: TunnelAttrs }
  | { op: 'link-set-mtu'; name: string; mtu: number }
  | { op: 'link-set-up'; name: string }
  | { op: 'link-del'; name: string }
  | { op: 'address-add'; address: DesiredAddress }
  | { op: 'address-del'; address: DesiredAddress }
  | { op: 'route-replace'; route: DesiredRoute; protocol: number }
  | { op: 'route-del'; dst: string; dev: string | undefined; metric: number; protocol: number };

export interface IpAction {
  tool: 'ip';
  kind: ObjectKind;
  verb: Verb;
  /** The tunnel the object belongs to (for orphans: the tunnel named by its mark). */
  tunnel: string;
  /** The link the object is, or is on. */
  link: string;
  /** What changes, for logs and Events: "ttl 64 -> 32", "172.0.0.0/24". */
  detail: string;
  /** Run in this order, one command each. */
  ops: IpOperation[];
}

/**
 * One tunnel's rules in the agent's nftables table, created, changed or removed. nft
 * changes are never applied one by one (loading the same rules twice duplicates them): a
 * pass writes the whole table in one transaction, so every nft action of a plan carries
 * the same `table`, the table as it is to be after the write.
 */
export interface NftAction {
  tool: 'nft';
  kind: 'rules';
  verb: Verb;
  tunnel: string;
  /** The tunnel's link, for logs. */
  link: string;
  detail: string;
  /** This tunnel's rules after the write; undefined: removed. */
  rules: ObservedRules | undefined;
  /**
   * Every tunnel's rules after the write, sorted by tunnel, with the counters read before
   * it (the new rules start from them); empty: the table is deleted.
   */
  table: readonly ObservedRules[];
}

/** Every tool's actions, each with its own driver and renderer. */
export type Action = IpAction | NftAction;

export interface ActionResult {
  action: Action;
  /** undefined when every command of the action succeeded (or a delete found nothing to delete). */
  error?: string;
}
