// What resolve decides for one node: per tunnel, the kernel objects it wants, or why not.

export interface DesiredLink {
  name: string;
  mode: 'ipip';
  /** Outer source and destination addresses. */
  local: string;
  remote: string;
  ttl: number;
  mtu: number;
  /** The underlay device the tunnel is bound to (`dev` of `ip tunnel`); unknown only in --from-scratch plans. */
  underlay?: string;
}

export interface DesiredTunnel {
  tunnel: string;
  link: DesiredLink;
  /** This node's overlay address, as a /32 with the remote overlay address as its peer. */
  address: { local: string; peer: string };
  /** Prefixes routed into the link: spec.routes and the other endpoints' networks. */
  routes: string[];
}

/** Why a tunnel has no desired state on this node; a stable CamelCase word, as Kubernetes reasons are. */
export type Reason =
  | 'InvalidSpec'
  | 'MeshNotSupported'
  | 'UnderlayInterfaceNotFound'
  | 'UnderlayInterfaceHasNoAddress'
  | 'UnderlayAddressNotLocal'
  | 'LocalUnderlayUnknown'
  | 'RemoteUnderlayUnknown'
  | 'LinkNameInUse'
  | 'RouteInUse'
  | 'LinkNameTaken'
  | 'RouteTaken'
  | 'KernelError';

export interface TunnelProblem {
  tunnel: string;
  reason: Reason;
  message: string;
  /** The spec field at fault, when there is one. */
  field?: string;
}

/**
 * - desired: this node is an endpoint and everything needed is known.
 * - waiting: an endpoint but something outside this node is not known yet (a remote
 *   underlay address another agent will publish); what exists stays as it is. Its own
 *   underlayAddress is still given when known: the peer may be waiting for it.
 * - error: an endpoint but the spec cannot be honoured here; what exists stays as it is.
 * - absent: this node is not an endpoint; whatever it owns for the tunnel goes.
 */
export type TunnelResolution =
  | { tunnel: string; outcome: 'desired'; desired: DesiredTunnel; underlayAddress: string }
  | ({ outcome: 'waiting' | 'error'; underlayAddress?: string } & TunnelProblem)
  | { tunnel: string; outcome: 'absent' };
