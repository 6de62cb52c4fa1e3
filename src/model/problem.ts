// Why a tunnel is not as its spec asks on a node, and what resolve decided for each tunnel.

import type { DesiredTunnel } from './desired.ts';

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

/** The tunnels that are waiting or in error on this node, as problems to report. */
export function problemsOf(resolutions: readonly TunnelResolution[]): TunnelProblem[] {
  const problems: TunnelProblem[] = [];
  for (const r of resolutions) {
    if (r.outcome === 'error' || r.outcome === 'waiting') {
      const { outcome: _outcome, underlayAddress: _address, ...problem } = r;
      problems.push(problem);
    }
  }
  return problems;
}
