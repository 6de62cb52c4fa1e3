// resolve: tunnels + what is known of the nodes + this node's name -> the desired kernel
// state of this node, per tunnel, or the reason there is none. Pure and synchronous.

import { effectiveSpec, validateTunnel } from '../api/validate.ts';
import type { EffectiveSpec, EndpointSpec, IpipTunnel } from '../api/types.ts';
import type { DesiredTunnel } from '../model/desired.ts';
import { SCOPE_GLOBAL } from '../model/kernel.ts';
import type { KernelState, ObservedLink } from '../model/kernel.ts';
import type { TunnelProblem, TunnelResolution } from '../model/problem.ts';
import { TUNNEL_OVERHEAD } from '../model/tunnel.ts';
/** The underlay MTU assumed when the kernel is not read (plan --from-scratch). */
export const ASSUMED_UNDERLAY_MTU = 1500;

export interface ResolveInput {
  nodeName: string;
  tunnels: readonly IpipTunnel[];
  /** This node's kernel (its interfaces, MTUs, addresses); undefined when not read (plan --from-scratch). */
  kernel: KernelState | undefined;
  /** Nodes' InternalIP by node name, from the API server; empty in standalone mode. */
  nodeAddresses: ReadonlyMap<string, string>;
}

/** This node's interfaces, indexed once per resolve: by name, and by the addresses on them. */
interface NodeIndex {
  byName: ReadonlyMap<string, ObservedLink>;
  byAddress: ReadonlyMap<string, ObservedLink>;
}

function indexNode(kernel: KernelState): NodeIndex {
  const byAddress = new Map<string, ObservedLink>();
  for (const l of kernel.links) for (const a of l.addresses) if (!byAddress.has(a.local)) byAddress.set(a.local, l);
  return { byName: new Map(kernel.links.map((l) => [l.name, l])), byAddress };
}

interface LocalUnderlay {
  address: string;
  device?: string;
  mtu: number;
}

type Problem = Omit<TunnelProblem, 'tunnel'> & { outcome: 'waiting' | 'error' };

function problem(outcome: 'waiting' | 'error', reason: Problem['reason'], message: string, field?: string): Problem {
  return field === undefined ? { outcome, reason, message } : { outcome, reason, message, field };
}

function isProblem(v: object): v is Problem {
  return 'reason' in v;
}

function firstGlobalAddress(link: ObservedLink): string | undefined {
  return link.addresses.find((a) => a.scope === SCOPE_GLOBAL && a.peer === undefined)?.local;
}

/** How this node's own underlay is found: address, else interface, else the Node's InternalIP. */
function localUnderlay(
  endpoint: EndpointSpec,
  index: number,
  input: ResolveInput,
  node: NodeIndex | undefined,
): LocalUnderlay | Problem {
  const field = `spec.endpoints[${index}].underlay`;
  const wantedAddress = endpoint.underlay?.address;
  const wantedDevice = endpoint.underlay?.interface;
  if (node === undefined) {
    // plan --from-scratch: nothing is read, so trust the spec and assume a common MTU.
    if (wantedAddress === undefined) {
      return problem('error', 'LocalUnderlayUnknown', `planning from scratch needs ${field}.address for node ${endpoint.nodeName}`, `${field}.address`);
    }
    return wantedDevice === undefined
      ? { address: wantedAddress, mtu: ASSUMED_UNDERLAY_MTU }
      : { address: wantedAddress, device: wantedDevice, mtu: ASSUMED_UNDERLAY_MTU };
  }
  let device: ObservedLink | undefined;
  if (wantedDevice !== undefined) {
    device = node.byName.get(wantedDevice);
    if (device === undefined) {
      return problem('error', 'UnderlayInterfaceNotFound', `interface ${wantedDevice} does not exist on node ${input.nodeName}`, `${field}.interface`);
    }
  }
  let address = wantedAddress;
  if (address !== undefined) {
    const holder = node.byAddress.get(address);
    if (holder === undefined) {
      return problem('error', 'UnderlayAddressNotLocal', `${address} is not an address of node ${input.nodeName}`, `${field}.address`);
    }
    device ??= holder;
  } else if (device !== undefined) {
    address = firstGlobalAddress(device);
    if (address === undefined) {
      return problem('error', 'UnderlayInterfaceHasNoAddress', `interface ${device.name} on node ${input.nodeName} has no global IPv4 address`, `${field}.interface`);
    }
  } else {
    address = input.nodeAddresses.get(input.nodeName);
    if (address === undefined) {
      return problem('error', 'LocalUnderlayUnknown', `node ${input.nodeName} has no InternalIP known; set ${field}.address or ${field}.interface`, field);
    }
    device = node.byAddress.get(address);
    if (device === undefined) {
      return problem('error', 'UnderlayAddressNotLocal', `InternalIP ${address} of node ${input.nodeName} is not an address of this node`, field);
    }
  }
  return { address, device: device.name, mtu: device.mtu };
}

/**
 * How a remote endpoint's underlay is found: address, else the address its own agent
 * resolved from its interface and published in status, else its Node's InternalIP.
 */
function remoteUnderlay(
  tunnel: IpipTunnel,
  endpoint: EndpointSpec,
  index: number,
  input: ResolveInput,
): string | Problem {
  if (endpoint.underlay?.address !== undefined) return endpoint.underlay.address;
  if (endpoint.underlay?.interface !== undefined) {
    const published = tunnel.status?.endpoints?.find((s) => s.nodeName === endpoint.nodeName)?.underlayAddress;
    if (published !== undefined) return published;
    return problem('waiting', 'RemoteUnderlayUnknown',
      `waiting for node ${endpoint.nodeName} to publish the address of its ${endpoint.underlay.interface} (without an API server, set spec.endpoints[${index}].underlay.address)`,
      `spec.endpoints[${index}].underlay`);
  }
  const internal = input.nodeAddresses.get(endpoint.nodeName);
  if (internal !== undefined) return internal;
  return problem('waiting', 'RemoteUnderlayUnknown',
    `waiting for the InternalIP of node ${endpoint.nodeName} (without an API server, set spec.endpoints[${index}].underlay.address)`,
    `spec.endpoints[${index}].underlay`);
}

function resolveOne(tunnel: IpipTunnel, input: ResolveInput, node: NodeIndex | undefined): TunnelResolution {
  const name = tunnel.metadata.name;
  const endpoints = Array.isArray(tunnel.spec?.endpoints) ? tunnel.spec.endpoints : [];
  const selfIndex = endpoints.findIndex((e) => e?.nodeName === input.nodeName);
  if (selfIndex < 0) return { tunnel: name, outcome: 'absent' };

  const invalid = validateTunnel(tunnel);
  if (invalid.length > 0) {
    const first = invalid[0]!;
    const more = invalid.length > 1 ? ` (and ${invalid.length - 1} more)` : '';
    return { tunnel: name, ...problem('error', 'InvalidSpec', `${first.field}: ${first.message}${more}`, first.field) };
  }
  const spec: EffectiveSpec = effectiveSpec(tunnel);
  if (spec.endpoints.length > 2) {
    return { tunnel: name, ...problem('error', 'MeshNotSupported', `${spec.endpoints.length} endpoints make a full mesh, which this version cannot program yet; use point-to-point tunnels of 2 endpoints`, 'spec.endpoints') };
  }
  const self = spec.endpoints[selfIndex]!;
  const remoteIndex = selfIndex === 0 ? 1 : 0;
  const remote = spec.endpoints[remoteIndex]!;

  const local = localUnderlay(self, selfIndex, input, node);
  if (isProblem(local)) return { tunnel: name, ...local };
  const remoteAddress = remoteUnderlay(tunnel, remote, remoteIndex, input);
  if (typeof remoteAddress !== 'string') return { tunnel: name, ...remoteAddress, underlayAddress: local.address };

  const prefixes = [...new Set([...spec.routes, ...(remote.networks ?? [])])].sort();
  const linkName = spec.linkName;
  const desired: DesiredTunnel = {
    tunnel: name,
    link: {
      name: linkName,
      mtu: spec.mtu ?? local.mtu - TUNNEL_OVERHEAD[spec.mode],
      tunnel: { mode: spec.mode, local: local.address, remote: remoteAddress, ttl: spec.ttl, underlayDevice: local.device },
    },
    // This node's overlay address, as a /32 with the remote overlay address as its peer.
    addresses: [{ dev: linkName, local: self.overlayAddress, prefixlen: 32, peer: remote.overlayAddress }],
    // spec.routes and the remote endpoint's networks, into the link.
    routes: prefixes.map((dst) => ({ dst, dev: linkName })),
  };
  return { tunnel: name, outcome: 'desired', desired, underlayAddress: local.address };
}

/** The node names a tunnel's spec lists as endpoints (tolerant: the cache holds whatever the server has). */
function endpointNodes(tunnel: IpipTunnel): string[] {
  const endpoints: unknown = tunnel.spec?.endpoints;
  if (!Array.isArray(endpoints)) return [];
  return endpoints.map((e: { nodeName?: unknown } | null) => e?.nodeName).filter((n): n is string => typeof n === 'string');
}

/**
 * Whether a tunnel (one side of a change: before or after) can change what a node
 * programs or reports: the node is one of its endpoints, or it still has a status entry
 * there to remove. resolve() of that node gives the same answer for every other tunnel,
 * so a change that concerns the node on neither side needs no reconcile of it.
 */
export function concernsNode(tunnel: IpipTunnel | undefined, nodeName: string): boolean {
  if (tunnel === undefined) return false;
  return endpointNodes(tunnel).includes(nodeName) || (tunnel.status?.endpoints?.some((e) => e.nodeName === nodeName) ?? false);
}

/**
 * The Nodes whose InternalIP resolve() of this node reads: itself (its own underlay) and
 * the peers of its tunnels. An InternalIP change of any other Node changes nothing here.
 */
export function nodesReadBy(tunnels: readonly IpipTunnel[], nodeName: string): Set<string> {
  const read = new Set([nodeName]);
  for (const tunnel of tunnels) {
    const names = endpointNodes(tunnel);
    if (names.includes(nodeName)) for (const name of names) read.add(name);
  }
  return read;
}

/** Older tunnels keep what they claimed: creation time first, then name, so any order of input gives one answer. */
function byAge(a: IpipTunnel, b: IpipTunnel): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

/**
 * Resolves every tunnel for one node. Two tunnels may not claim one link name or one route
 * prefix on a node: the older keeps it, the newer gets an error and changes nothing.
 * The result is sorted by tunnel name.
 */
export function resolve(input: ResolveInput): TunnelResolution[] {
  const linkOwners = new Map<string, string>();
  const routeOwners = new Map<string, string>();
  const results: TunnelResolution[] = [];
  const node = input.kernel === undefined ? undefined : indexNode(input.kernel);
  for (const tunnel of [...input.tunnels].sort(byAge)) {
    let result = resolveOne(tunnel, input, node);
    if (result.outcome === 'desired') {
      const { desired } = result;
      const linkOwner = linkOwners.get(desired.link.name);
      const routeClash = desired.routes.map((r) => r.dst).find((dst) => routeOwners.has(dst));
      if (linkOwner !== undefined) {
        result = { tunnel: desired.tunnel, ...problem('error', 'LinkNameInUse', `link name ${desired.link.name} is already used by tunnel ${linkOwner} on node ${input.nodeName}`, 'spec.linkName') };
      } else if (routeClash !== undefined) {
        result = { tunnel: desired.tunnel, ...problem('error', 'RouteInUse', `route ${routeClash} is already routed into tunnel ${routeOwners.get(routeClash)} on node ${input.nodeName}`, 'spec.routes') };
      } else {
        linkOwners.set(desired.link.name, desired.tunnel);
        for (const r of desired.routes) routeOwners.set(r.dst, desired.tunnel);
      }
    }
    results.push(result);
  }
  return results.sort((a, b) => (a.tunnel < b.tunnel ? -1 : a.tunnel > b.tunnel ? 1 : 0));
}
