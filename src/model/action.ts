// A plan is an ordered list of actions. Each action is one change to one kernel object and
// names the tool that makes it; its operations are in that tool's terms but are not yet
// command text: the tool's renderer in dataplane/ turns them into exact commands, for
// apply, for the `plan` CLI and for golden tests alike.

import type { DesiredAddress, DesiredLink, DesiredRoute } from './desired.ts';
import type { TunnelAttrs } from './tunnel.ts';

export type ObjectKind = 'link' | 'address' | 'route';
export type Verb = 'create' | 'update' | 'delete';
export type Tool = 'ip';

export const OBJECT_KINDS: readonly ObjectKind[] = ['link', 'address', 'route'];
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

/** Every tool's actions; a new tool (nft) is a new member, with its own driver and renderer. */
export type Action = IpAction;

export interface ActionResult {
  action: Action;
  /** undefined when every command of the action succeeded (or a delete found nothing to delete). */
  error?: string;
}
