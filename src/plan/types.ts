// A plan is an ordered list of actions; each renders to the exact `ip` commands it runs.

export type ObjectKind = 'link' | 'address' | 'route';
export type Verb = 'create' | 'update' | 'delete';

export const OBJECT_KINDS: readonly ObjectKind[] = ['link', 'address', 'route'];
export const VERBS: readonly Verb[] = ['create', 'update', 'delete'];

export interface Action {
  object: ObjectKind;
  action: Verb;
  /** The tunnel the object belongs to (for orphans: the tunnel named by its mark). */
  tunnel: string;
  /** The link the object is, or is on. */
  link: string;
  /** What changes, for logs and Events: "ttl 64 -> 32", "172.0.0.0/24". */
  detail: string;
  /** `ip` argument vectors, without the leading "ip", run in this order. */
  commands: string[][];
}
