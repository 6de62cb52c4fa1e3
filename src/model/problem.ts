// Why a tunnel is not as its spec asks on a node, and what resolve decided for each tunnel.

import type { DesiredTunnel } from './desired.ts';

/**
 * What a problem means for the loop and the status:
 * - waiting: something another agent will publish is not known yet; not Ready, not
 *   Degraded, no Warning Event (it is normal convergence);
 * - refused: the spec cannot be honoured on this node as things are; Degraded, a Warning
 *   Event, and no retry until the spec, the kernel or the cluster changes (each wakes the
 *   agent anyway);
 * - degraded: programmed all the same (nothing is harmed by it), but a person must act
 *   for the tunnel to do all it should; Degraded, a Warning Event, no retry;
 * - transient: the kernel said no to a command; retried with backoff.
 */
export type ProblemClass = 'waiting' | 'refused' | 'degraded' | 'transient';

/** Every reason a tunnel is not programmed on a node: the README's "What it refuses" table. */
export const REASONS = {
  InvalidSpec: {
    class: 'refused',
    cause:
      'the spec breaks a schema rule (only a spec that bypassed the API server: a standalone manifest, an old object)',
    fix: 'correct the field the message names',
  },
  UnderlayInterfaceNotFound: {
    class: 'refused',
    cause: "this node has no interface of the name in the endpoint's underlay.interface",
    fix: 'name an interface the node has',
  },
  UnderlayInterfaceHasNoAddress: {
    class: 'refused',
    cause: 'the underlay interface has no global IPv4 address',
    fix: 'give it an address, or set underlay.address',
  },
  UnderlayAddressNotLocal: {
    class: 'refused',
    cause: "the endpoint's underlay.address (or its Node's InternalIP) is not an address of this node",
    fix: 'set the address this node really has',
  },
  LocalUnderlayUnknown: {
    class: 'refused',
    cause: "nothing says which address is this node's underlay (no underlay given, no InternalIP)",
    fix: 'set underlay.address or underlay.interface',
  },
  RemoteUnderlayUnknown: {
    class: 'waiting',
    cause: "the peer's underlay address is not known yet (its agent has not published it, its Node has no InternalIP)",
    fix: 'nothing, normally: it resolves once the peer reports; standalone, set the remote underlay.address',
  },
  LinkNameInUse: {
    class: 'refused',
    cause: 'an older tunnel of this node has the same link name',
    fix: 'choose another spec.linkName',
  },
  UnderlayPairInUse: {
    class: 'refused',
    cause:
      'an older tunnel of this node joins the same local and remote underlay addresses: a point-to-point ' +
      "tunnel to a peer of a mesh on the same local address would take that peer's mesh traffic, and two meshes " +
      'cannot share a local address',
    fix: 'one tunnel per pair of underlay addresses: merge them, or use other addresses',
  },
  RouteInUse: {
    class: 'refused',
    cause: 'an older tunnel of this node routes the same prefix',
    fix: 'route each prefix into one tunnel',
  },
  RouteHarmsUnderlay: {
    class: 'refused',
    cause:
      'a route, a network or an overlay address would change the path to an underlay address in use ' +
      "on this node (its own, a peer's, or one of its underlay subnets): the tunnel would carry its " +
      'own outer packets, or cut the node off',
    fix: 'choose overlay addresses, routes and networks outside the underlay',
  },
  LinkNameTaken: {
    class: 'refused',
    cause: 'a link that ipip-operator did not create has the wanted name (tunl0 included)',
    fix: 'choose another spec.linkName, or remove that link',
  },
  UnderlayPairTaken: {
    class: 'refused',
    cause:
      'a tunnel device that ipip-operator did not create already joins the same underlay addresses, or (for a ' +
      "mesh) would take a peer's traffic from the mesh link or lose its own traffic to it (the kernel's lookup " +
      'prefers exact pairs and devices bound to the underlay interface)',
    fix: 'remove that device, or use other addresses',
  },
  AddressTaken: {
    class: 'refused',
    cause: 'a device that ipip-operator did not create already has the overlay address',
    fix: 'choose another overlayAddress, or remove the address there',
  },
  RouteTaken: {
    class: 'refused',
    cause:
      "a route that ipip-operator did not create goes to a wanted prefix, at any metric (a DHCP default route, a routing daemon's route)",
    fix: 'route another prefix, or remove that route',
  },
  ForwardingDisabled: {
    class: 'degraded',
    cause:
      'this endpoint has networks behind it or masquerades for the others, but the node does not forward packets ' +
      '(net.ipv4.ip_forward is 0): the tunnel is programmed, nothing beyond the node is reached through it',
    fix: 'turn forwarding on (sysctl -w net.ipv4.ip_forward=1); the agent never changes sysctls',
  },
  NftablesUnavailable: {
    class: 'refused',
    cause:
      'the tunnel needs rules in nftables on this node (a mesh drops IPIP from strangers by default; masquerade) ' +
      'but the node cannot hold them: no nft program, or a kernel without nf_tables for IPv4 or without NAT',
    fix: 'install nftables (the image has it) on a kernel with nf_tables, or set spec.dropForeignIpip: false and no masquerade',
  },
  KernelError: {
    class: 'transient',
    cause: 'the kernel refused a command',
    fix: 'read the message; the agent retries with backoff',
  },
} as const satisfies Record<string, { class: ProblemClass; cause: string; fix: string }>;

/** Why a tunnel has no desired state on this node; a stable CamelCase word, as Kubernetes reasons are. */
export type Reason = keyof typeof REASONS;

export function problemClass(reason: string): ProblemClass {
  return (REASONS as Record<string, { class: ProblemClass }>)[reason]?.class ?? 'refused';
}

export interface TunnelProblem {
  tunnel: string;
  reason: Reason;
  message: string;
  /** The spec field at fault, when there is one. */
  field?: string;
}

/**
 * - desired: this node is an endpoint and everything needed is known (in a mesh: for
 *   the peers that are known; see caveats).
 * - waiting: an endpoint but something outside this node is not known yet (a remote
 *   underlay address another agent will publish); what exists stays as it is. Its own
 *   underlayAddress is still given when known: the peer may be waiting for it.
 * - error: an endpoint but the spec cannot be honoured here; what exists stays as it is.
 * - absent: this node is not an endpoint; whatever it owns for the tunnel goes.
 */
export type TunnelResolution =
  | {
      tunnel: string;
      outcome: 'desired';
      desired: DesiredTunnel;
      underlayAddress: string;
      /**
       * Problems that do not stop the tunnel being programmed, and keep it from being
       * ready: mesh peers whose underlay is not known yet (their routes wait, the others
       * are programmed), networks behind a node that does not forward.
       */
      caveats?: Array<Omit<TunnelProblem, 'tunnel'>>;
    }
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
    if (r.outcome === 'desired') for (const c of r.caveats ?? []) problems.push({ tunnel: r.tunnel, ...c });
  }
  return problems;
}
