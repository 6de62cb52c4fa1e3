// resolve: tunnels + what is known of the nodes + this node's name -> the desired kernel
// state of this node, per tunnel, or the reason there is none. Pure and synchronous.

import { effectiveSpec, validateTunnel } from '../api/validate.ts';
import type { EffectiveSpec, EndpointSpec, IpipTunnel } from '../api/types.ts';
import type { DesiredRoute, DesiredRules, DesiredTunnel } from '../model/desired.ts';
import { SCOPE_GLOBAL } from '../model/kernel.ts';
import type { KernelState, ObservedLink, ObservedRoute } from '../model/kernel.ts';
import { linkOwnersOf, routeOwner } from '../model/ownership.ts';
import type { TunnelProblem, TunnelResolution } from '../model/problem.ts';
import { TUNNEL_OVERHEAD, underlayPair } from '../model/tunnel.ts';
import { outermostPrefixes } from '../net/ipv4.ts';
import type { TunnelAttrs } from '../model/tunnel.ts';
import { harmTo, hostPaths } from './underlay.ts';
import type { HostPaths, UnderlayAddress } from './underlay.ts';
/** The underlay MTU assumed when the kernel is not read (plan --from-scratch). */
export const ASSUMED_UNDERLAY_MTU = 1500;

export interface ResolveInput {
  nodeName: string;
  tunnels: readonly IpipTunnel[];
  /** This node's kernel (its interfaces, MTUs, addresses); undefined when not read (plan --from-scratch). */
  kernel: KernelState | undefined;
  /** Nodes' InternalIP by node name, from the API server; empty in standalone mode. */
  nodeAddresses: ReadonlyMap<string, string>;
  /**
   * The underlay address a node's agent resolved for a tunnel and published (cluster mode);
   * undefined when none is known. Absent: nothing is published (standalone).
   */
  published?: PublishedUnderlay;
}

/** (tunnel name, node name) -> the underlay address that node's agent published for the tunnel. */
export type PublishedUnderlay = (tunnel: string, node: string) => string | undefined;

/**
 * This node's kernel, indexed once per resolve: interfaces by name and by the addresses
 * on them, the owners of the agent's links, and the agent's routes by link and destination.
 */
interface NodeIndex {
  byName: ReadonlyMap<string, ObservedLink>;
  byAddress: ReadonlyMap<string, ObservedLink>;
  owners: ReadonlyMap<string, string>;
  ownRoutes: ReadonlyMap<string, ReadonlyMap<string, ObservedRoute>>;
}

function indexNode(kernel: KernelState): NodeIndex {
  const byAddress = new Map<string, ObservedLink>();
  for (const l of kernel.links) for (const a of l.addresses) if (!byAddress.has(a.local)) byAddress.set(a.local, l);
  const owners = linkOwnersOf(kernel);
  const ownRoutes = new Map<string, Map<string, ObservedRoute>>();
  for (const r of kernel.routes) {
    if (routeOwner(r, (name) => owners.get(name)) === undefined) continue;
    const onLink = ownRoutes.get(r.dev!) ?? new Map<string, ObservedRoute>();
    ownRoutes.set(r.dev!, onLink.set(r.dst, r));
  }
  return { byName: new Map(kernel.links.map((l) => [l.name, l])), byAddress, owners, ownRoutes };
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
      return problem(
        'error',
        'LocalUnderlayUnknown',
        `planning from scratch needs ${field}.address for node ${endpoint.nodeName}`,
        `${field}.address`,
      );
    }
    return wantedDevice === undefined
      ? { address: wantedAddress, mtu: ASSUMED_UNDERLAY_MTU }
      : { address: wantedAddress, device: wantedDevice, mtu: ASSUMED_UNDERLAY_MTU };
  }
  let device: ObservedLink | undefined;
  if (wantedDevice !== undefined) {
    device = node.byName.get(wantedDevice);
    if (device === undefined) {
      return problem(
        'error',
        'UnderlayInterfaceNotFound',
        `interface ${wantedDevice} does not exist on node ${input.nodeName}`,
        `${field}.interface`,
      );
    }
  }
  let address = wantedAddress;
  if (address !== undefined) {
    const holder = node.byAddress.get(address);
    if (holder === undefined) {
      return problem(
        'error',
        'UnderlayAddressNotLocal',
        `${address} is not an address of node ${input.nodeName}`,
        `${field}.address`,
      );
    }
    device ??= holder;
  } else if (device !== undefined) {
    address = firstGlobalAddress(device);
    if (address === undefined) {
      return problem(
        'error',
        'UnderlayInterfaceHasNoAddress',
        `interface ${device.name} on node ${input.nodeName} has no global IPv4 address`,
        `${field}.interface`,
      );
    }
  } else {
    address = input.nodeAddresses.get(input.nodeName);
    if (address === undefined) {
      return problem(
        'error',
        'LocalUnderlayUnknown',
        `node ${input.nodeName} has no InternalIP known; set ${field}.address or ${field}.interface`,
        field,
      );
    }
    device = node.byAddress.get(address);
    if (device === undefined) {
      return problem(
        'error',
        'UnderlayAddressNotLocal',
        `InternalIP ${address} of node ${input.nodeName} is not an address of this node`,
        field,
      );
    }
  }
  return { address, device: device.name, mtu: device.mtu };
}

/**
 * How a remote endpoint's underlay is found: address, else the address its own agent
 * resolved from its interface and published, else its Node's InternalIP.
 */
function remoteUnderlay(
  tunnel: IpipTunnel,
  endpoint: EndpointSpec,
  index: number,
  input: ResolveInput,
): string | Problem {
  if (endpoint.underlay?.address !== undefined) return endpoint.underlay.address;
  if (endpoint.underlay?.interface !== undefined) {
    const published = input.published?.(tunnel.metadata.name, endpoint.nodeName);
    if (published !== undefined) return published;
    return problem(
      'waiting',
      'RemoteUnderlayUnknown',
      `waiting for node ${endpoint.nodeName} to publish the address of its ${endpoint.underlay.interface} ` +
        `(without an API server, set spec.endpoints[${index}].underlay.address)`,
      `spec.endpoints[${index}].underlay`,
    );
  }
  const internal = input.nodeAddresses.get(endpoint.nodeName);
  if (internal !== undefined) return internal;
  return problem(
    'waiting',
    'RemoteUnderlayUnknown',
    `waiting for the InternalIP of node ${endpoint.nodeName} (without an API server, set spec.endpoints[${index}].underlay.address)`,
    `spec.endpoints[${index}].underlay`,
  );
}

/**
 * What a tunnel holds exclusively on a node, by which two tunnels of the agent's conflict:
 * "name X" (a link name), "pair ipip L R" (an underlay address pair: the kernel gives one
 * flow to one device), "route P" (a prefix routed into a tunnel).
 */
type Claim = { key: string; reason: 'LinkNameInUse' | 'UnderlayPairInUse' | 'RouteInUse'; field: string; what: string };

interface Resolved {
  resolution: TunnelResolution;
  /** What the spec claims; for a desired tunnel, all it will hold. */
  claims: Claim[];
}

const nameClaim = (linkName: string): Claim => ({
  key: `name ${linkName}`,
  reason: 'LinkNameInUse',
  field: 'spec.linkName',
  what: `link name ${linkName}`,
});
const pairClaim = (t: TunnelAttrs, field: string): Claim | undefined => {
  const pair = underlayPair(t);
  return pair === undefined
    ? undefined
    : { key: `pair ${pair}`, reason: 'UnderlayPairInUse', field, what: `the underlay pair ${pair}` };
};
const routeClaim = (dst: string, field: string): Claim => ({
  key: `route ${dst}`,
  reason: 'RouteInUse',
  field,
  what: `route ${dst}`,
});

/**
 * validateTunnel, once per object: the sources give the same object again while a tunnel
 * is unchanged (the informer's cache, the manifest's parser), and tunnels are never
 * changed in place, so a pass re-validates only what changed.
 */
const validations = new WeakMap<IpipTunnel, ReturnType<typeof validateTunnel>>();
function validated(tunnel: IpipTunnel): ReturnType<typeof validateTunnel> {
  let errors = validations.get(tunnel);
  if (errors === undefined) {
    errors = validateTunnel(tunnel);
    validations.set(tunnel, errors);
  }
  return errors;
}

function resolveOne(tunnel: IpipTunnel, input: ResolveInput, node: NodeIndex | undefined): Resolved {
  const name = tunnel.metadata.name;
  const endpoints = Array.isArray(tunnel.spec?.endpoints) ? tunnel.spec.endpoints : [];
  const selfIndex = endpoints.findIndex((e) => e?.nodeName === input.nodeName);
  if (selfIndex < 0) return { resolution: { tunnel: name, outcome: 'absent' }, claims: [] };

  const invalid = validated(tunnel);
  if (invalid.length > 0) {
    const first = invalid[0]!;
    const more = invalid.length > 1 ? ` (and ${invalid.length - 1} more)` : '';
    return {
      resolution: {
        tunnel: name,
        ...problem('error', 'InvalidSpec', `${first.field}: ${first.message}${more}`, first.field),
      },
      claims: [],
    };
  }
  const spec: EffectiveSpec = effectiveSpec(tunnel);
  const linkName = spec.linkName;
  if (spec.endpoints.length > 2) return resolveMesh(tunnel, spec, selfIndex, input, node);
  const self = spec.endpoints[selfIndex]!;
  const remoteIndex = selfIndex === 0 ? 1 : 0;
  const remote = spec.endpoints[remoteIndex]!;

  // spec.routes and the remote endpoint's networks, into the link, each with its field.
  const fields = new Map<string, string>();
  spec.routes.forEach((dst, i) => {
    fields.set(dst, `spec.routes[${i}]`);
  });
  (remote.networks ?? []).forEach((dst, i) => {
    if (!fields.has(dst)) fields.set(dst, `spec.endpoints[${remoteIndex}].networks[${i}]`);
  });
  const routes = [...fields.keys()].sort().map((dst) => ({ dst, dev: linkName, field: fields.get(dst)! }));
  const claims = [nameClaim(linkName), ...routes.map((r) => routeClaim(r.dst, r.field))];

  const local = localUnderlay(self, selfIndex, input, node);
  if (isProblem(local)) return { resolution: { tunnel: name, ...local }, claims };
  const remoteAddress = remoteUnderlay(tunnel, remote, remoteIndex, input);
  if (typeof remoteAddress !== 'string')
    return { resolution: { tunnel: name, ...remoteAddress, underlayAddress: local.address }, claims };

  const desired: DesiredTunnel = {
    tunnel: name,
    link: {
      name: linkName,
      mtu: spec.mtu ?? local.mtu - TUNNEL_OVERHEAD[spec.mode],
      tunnel: {
        mode: spec.mode,
        local: local.address,
        remote: remoteAddress,
        ttl: spec.ttl,
        underlayDevice: local.device,
      },
    },
    // This node's overlay address, as a /32 with the remote overlay address as its peer.
    addresses: [
      {
        dev: linkName,
        local: self.overlayAddress,
        prefixlen: 32,
        peer: remote.overlayAddress,
        field: `spec.endpoints[${selfIndex}].overlayAddress`,
        peerField: `spec.endpoints[${remoteIndex}].overlayAddress`,
      },
    ],
    routes,
  };
  const rules = rulesOf(name, self, linkName, [remote], undefined);
  if (rules !== undefined) desired.rules = rules;
  claims.push(pairClaim(desired.link.tunnel, `spec.endpoints[${remoteIndex}].underlay`)!);
  const caveats = forwardingCaveat(self, selfIndex, input.kernel);
  return {
    resolution: { tunnel: name, outcome: 'desired', desired, underlayAddress: local.address, ...caveats },
    claims,
  };
}

/**
 * Whether a tunnel can want any part of the agent's nftables table on some node: a mesh
 * (three endpoints or more) that drops foreign IPIP, or an endpoint that masquerades.
 * When no tunnel can, the table is not read at every pass (dataplane.observe's hint).
 */
export function mayWantRules(tunnel: IpipTunnel): boolean {
  const { endpoints, dropForeignIpip } = tunnel.spec;
  return (endpoints.length > 2 && dropForeignIpip !== false) || endpoints.some((e) => e.masquerade === true);
}

/**
 * This tunnel's part of the agent's nftables table on this node, or undefined when it
 * needs none: masquerade of what the other endpoints send (their overlay addresses and
 * networks) when this endpoint asks for it; for a mesh (`peerFilter` given), the drop of
 * IPIP from anyone but its peers. resolve() adds the remotes of the node's other IPIP
 * devices on the same address to `allowed`.
 */
function rulesOf(
  tunnel: string,
  self: EndpointSpec,
  linkName: string,
  others: readonly EndpointSpec[],
  peerFilter: DesiredRules['peerFilter'],
): DesiredRules | undefined {
  const rules: DesiredRules = { tunnel };
  if (peerFilter !== undefined) rules.peerFilter = peerFilter;
  if (self.masquerade === true) {
    const sources = others.flatMap((e) => [`${e.overlayAddress}/32`, ...(e.networks ?? [])]);
    rules.masquerade = { link: linkName, sources: outermostPrefixes(sources) };
  }
  return rules.peerFilter === undefined && rules.masquerade === undefined ? undefined : rules;
}

/**
 * Networks behind this endpoint, and masquerade for the others, need a node that
 * forwards: a caveat when it does not (sysctls are not ours to set).
 */
function forwardingCaveat(
  self: EndpointSpec,
  selfIndex: number,
  kernel: KernelState | undefined,
): { caveats?: Array<Omit<TunnelProblem, 'tunnel'>> } {
  const networks = self.networks ?? [];
  if ((networks.length === 0 && self.masquerade !== true) || kernel?.ipv4Forwarding !== false) return {};
  const carries =
    networks.length === 0
      ? 'masquerades for the other endpoints'
      : `carries ${networks.join(', ')} for the tunnel${self.masquerade === true ? ' and masquerades for it' : ''}`;
  return {
    caveats: [
      {
        reason: 'ForwardingDisabled',
        field: `spec.endpoints[${selfIndex}].${networks.length === 0 ? 'masquerade' : 'networks'}`,
        message:
          `this node ${carries} but does not forward packets ` +
          '(net.ipv4.ip_forward is 0): the tunnel is up, nothing beyond this node is reached through it; ' +
          'turn forwarding on (sysctl -w net.ipv4.ip_forward=1), the agent does not change sysctls',
      },
    ],
  };
}

/**
 * A full mesh (three or more endpoints): one any-remote link bound to this node's
 * underlay, its overlay address as a /32, and per peer a route to the peer's overlay
 * address and to its networks via the peer's underlay address, onlink. A peer whose
 * underlay is not known yet keeps whatever routes of ours it has and the others are
 * programmed meanwhile; the tunnel is not ready until every peer is known.
 */
function resolveMesh(
  tunnel: IpipTunnel,
  spec: EffectiveSpec,
  selfIndex: number,
  input: ResolveInput,
  node: NodeIndex | undefined,
): Resolved {
  const name = tunnel.metadata.name;
  const linkName = spec.linkName;
  const self = spec.endpoints[selfIndex]!;
  const claims: Claim[] = [nameClaim(linkName)];
  const local = localUnderlay(self, selfIndex, input, node);
  // What a mesh will route is known from the spec alone: it claims it while it cannot program it.
  spec.endpoints.forEach((peer, i) => {
    if (i === selfIndex) return;
    claims.push(routeClaim(`${peer.overlayAddress}/32`, `spec.endpoints[${i}].overlayAddress`));
    (peer.networks ?? []).forEach((dst, j) => {
      claims.push(routeClaim(dst, `spec.endpoints[${i}].networks[${j}]`));
    });
  });
  if (isProblem(local)) return { resolution: { tunnel: name, ...local }, claims };

  const attrs: TunnelAttrs = {
    mode: spec.mode,
    local: local.address,
    remote: undefined,
    ttl: spec.ttl,
    underlayDevice: local.device,
  };
  claims.push(pairClaim(attrs, `spec.endpoints[${selfIndex}].underlay`)!);
  // This tunnel's routes on its link now, by destination.
  const kept = node?.owners.get(linkName) === name ? node.ownRoutes.get(linkName) : undefined;
  const routes: DesiredRoute[] = [];
  let waiting = false;
  const peers: string[] = [];
  const allowed: string[] = [];
  spec.endpoints.forEach((peer, i) => {
    if (i === selfIndex) return;
    const dsts = [
      { dst: `${peer.overlayAddress}/32`, field: `spec.endpoints[${i}].overlayAddress` },
      ...(peer.networks ?? []).map((dst, j) => ({ dst, field: `spec.endpoints[${i}].networks[${j}]` })),
    ];
    const underlay = remoteUnderlay(tunnel, peer, i, input);
    if (typeof underlay !== 'string') {
      waiting = true;
      // Not known now does not mean gone: what was programmed for the peer stays, and
      // its IPIP is still taken from the address its routes go to.
      for (const { dst, field } of dsts) {
        const have = kept?.get(dst);
        if (have === undefined) continue;
        routes.push(keptRoute(have, field));
        if (have.gateway !== undefined) allowed.push(have.gateway);
      }
      return;
    }
    claims.push(pairClaim({ ...attrs, remote: underlay }, `spec.endpoints[${i}].underlay`)!);
    peers.push(underlay);
    for (const { dst, field } of dsts) routes.push({ dst, dev: linkName, via: underlay, onlink: true, field });
  });
  routes.sort((a, b) => (a.dst < b.dst ? -1 : a.dst > b.dst ? 1 : 0));

  const desired: DesiredTunnel = {
    tunnel: name,
    link: {
      name: linkName,
      mtu: spec.mtu ?? local.mtu - TUNNEL_OVERHEAD[spec.mode],
      tunnel: attrs,
      peers: [...new Set(peers)].sort(),
    },
    addresses: [
      {
        dev: linkName,
        local: self.overlayAddress,
        prefixlen: 32,
        field: `spec.endpoints[${selfIndex}].overlayAddress`,
      },
    ],
    routes,
  };
  const filter = spec.dropForeignIpip
    ? { local: local.address, allowed: [...new Set([...peers, ...allowed])].sort() }
    : undefined;
  const rules = rulesOf(
    name,
    self,
    linkName,
    spec.endpoints.filter((_, i) => i !== selfIndex),
    filter,
  );
  if (rules !== undefined) desired.rules = rules;
  const caveats = forwardingCaveat(self, selfIndex, input.kernel).caveats ?? [];
  if (waiting) {
    // The same words however many peers are missing: every change of this node's report
    // is a watch event for every agent, and peers arriving one by one must not each make one.
    caveats.unshift({
      reason: 'RemoteUnderlayUnknown',
      field: 'spec.endpoints',
      message: 'waiting for peers to publish their underlay addresses; the routes to the known ones are programmed',
    });
  }
  return {
    resolution: {
      tunnel: name,
      outcome: 'desired',
      desired,
      underlayAddress: local.address,
      ...(caveats.length > 0 ? { caveats } : {}),
    },
    claims,
  };
}

/** A route as the kernel has it, wanted as it is. */
function keptRoute(have: ObservedRoute, field: string): DesiredRoute {
  const route: DesiredRoute = { dst: have.dst, dev: have.dev!, field };
  if (have.gateway !== undefined) route.via = have.gateway;
  if (have.onlink === true) route.onlink = true;
  return route;
}

/** What each tunnel holds in the kernel now, by tunnel: its links (name, pair) and its routes on them. */
function heldClaims(kernel: KernelState, node: NodeIndex): Map<string, Claim[]> {
  const held = new Map<string, Claim[]>();
  const add = (tunnel: string, claim: Claim | undefined) => {
    if (claim === undefined) return;
    const list = held.get(tunnel);
    if (list === undefined) held.set(tunnel, [claim]);
    else list.push(claim);
  };
  for (const l of kernel.links) {
    const tunnel = node.owners.get(l.name);
    if (tunnel === undefined || l.tunnel === undefined) continue;
    add(tunnel, nameClaim(l.name));
    add(tunnel, pairClaim(l.tunnel, 'spec.endpoints'));
  }
  for (const [link, routes] of node.ownRoutes) {
    const tunnel = node.owners.get(link)!;
    const t = node.byName.get(link)?.tunnel;
    for (const r of routes.values()) {
      add(tunnel, routeClaim(r.dst, 'spec.routes'));
      // A mesh link's route via a peer holds that peer's pair.
      if (t !== undefined && t.remote === undefined && r.gateway !== undefined)
        add(tunnel, pairClaim({ ...t, remote: r.gateway }, 'spec.endpoints'));
    }
  }
  return held;
}

/** The first object of a desired tunnel whose /32 or route would take the host's path to an underlay address. */
function harmOf(desired: DesiredTunnel, paths: HostPaths): TunnelProblem | undefined {
  const candidates: Array<{ prefix: string; field: string; what: string }> = [];
  for (const a of desired.addresses) {
    candidates.push({
      prefix: `${a.local}/32`,
      field: a.field ?? 'spec.endpoints',
      what: `overlay address ${a.local}`,
    });
    // The kernel routes the peer of a point-to-point address into the link.
    if (a.peer !== undefined)
      candidates.push({
        prefix: `${a.peer}/32`,
        field: a.peerField ?? 'spec.endpoints',
        what: `the route the kernel adds for the peer ${a.peer}`,
      });
  }
  for (const r of desired.routes)
    candidates.push({ prefix: r.dst, field: r.field ?? 'spec.routes', what: `route ${r.dst}` });
  for (const c of candidates) {
    const harm = harmTo(paths, c.prefix);
    if (harm !== undefined) {
      return {
        tunnel: desired.tunnel,
        reason: 'RouteHarmsUnderlay',
        field: c.field,
        message: `${c.what}: ${harm}; refused`,
      };
    }
  }
  return undefined;
}

/** The node names a tunnel's spec lists as endpoints (tolerant: the cache holds whatever the server has). */
function endpointNodes(tunnel: IpipTunnel): string[] {
  const endpoints: unknown = tunnel.spec?.endpoints;
  if (!Array.isArray(endpoints)) return [];
  return endpoints
    .map((e: { nodeName?: unknown } | null) => e?.nodeName)
    .filter((n): n is string => typeof n === 'string');
}

/**
 * Whether a tunnel (one side of a change: before or after) can change what a node
 * programs or reports: the node is one of its endpoints. resolve() of that node gives the
 * same answer for every other tunnel, so a change that concerns the node on neither side
 * needs no reconcile of it (a tunnel that stops naming it named it before the change).
 */
export function concernsNode(tunnel: IpipTunnel | undefined, nodeName: string): boolean {
  return tunnel !== undefined && endpointNodes(tunnel).includes(nodeName);
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

/**
 * The published underlay addresses resolve() of this node reads, as peer node -> the
 * tunnels it reads that peer's address for: a peer of one of its tunnels whose underlay
 * names an interface and no address. Any other report of any node changes nothing here.
 */
export function publishedReadBy(tunnels: readonly IpipTunnel[], nodeName: string): Map<string, Set<string>> {
  const read = new Map<string, Set<string>>();
  for (const tunnel of tunnels) {
    if (!endpointNodes(tunnel).includes(nodeName)) continue;
    for (const e of tunnel.spec.endpoints) {
      if (e.nodeName === nodeName || e.underlay?.address !== undefined || e.underlay?.interface === undefined) continue;
      const names = read.get(e.nodeName) ?? new Set<string>();
      names.add(tunnel.metadata.name);
      read.set(e.nodeName, names);
    }
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
 * Resolves every tunnel for one node. A tunnel is refused, and keeps what it has, when a
 * route or overlay address of it would change the path to an underlay address in use on
 * the node. Two tunnels may not hold one link name, one underlay address pair or one
 * route prefix on a node: the older keeps it, always (also while it is waiting or in
 * error, and whatever the kernel holds now), the newer gets an error and changes nothing.
 * The result is sorted by tunnel name.
 */
export function resolve(input: ResolveInput): TunnelResolution[] {
  const node = input.kernel === undefined ? undefined : indexNode(input.kernel);
  const resolved = [...input.tunnels].sort(byAge).map((tunnel) => resolveOne(tunnel, input, node));
  const paths = input.kernel === undefined ? undefined : hostPaths(input.kernel, node!.owners, underlaysOf(resolved));
  const held = input.kernel === undefined ? new Map<string, Claim[]>() : heldClaims(input.kernel, node!);
  const holders = new Map<string, string>();
  const results: TunnelResolution[] = [];
  for (const { resolution, claims } of resolved) {
    let result = resolution;
    if (result.outcome === 'absent') {
      results.push(result);
      continue;
    }
    if (result.outcome === 'desired' && paths !== undefined) {
      const harm = harmOf(result.desired, paths);
      if (harm !== undefined) result = { ...harm, outcome: 'error', underlayAddress: result.underlayAddress };
    }
    if (result.outcome === 'desired') {
      const clash = claims.find((c) => holders.has(c.key));
      if (clash !== undefined) {
        result = {
          tunnel: result.tunnel,
          ...problem(
            'error',
            clash.reason,
            `${clash.what} is already held by tunnel ${holders.get(clash.key)} on node ${input.nodeName}`,
            clash.field,
          ),
          underlayAddress: result.underlayAddress,
        };
      }
    }
    // A desired tunnel holds what it claims; one that is not holds what its spec claims
    // and what it has in the kernel, so a newer tunnel cannot take it meanwhile.
    const holds = result.outcome === 'desired' ? claims : [...claims, ...(held.get(result.tunnel) ?? [])];
    for (const c of holds) if (!holders.has(c.key)) holders.set(c.key, result.tunnel);
    results.push(result);
  }
  return allowOtherDevices(results, input.kernel).sort((a, b) =>
    a.tunnel < b.tunnel ? -1 : a.tunnel > b.tunnel ? 1 : 0,
  );
}

/**
 * A mesh's peer filter must not break anybody else's IPIP on its address: the remotes of
 * the node's other IPIP devices that take packets to that address (their local is the
 * same or any; foreign devices too) and of this node's other desired tunnels from it are
 * allowed as well. The sets are sorted, so the answer does not depend on the order found.
 */
function allowOtherDevices(results: TunnelResolution[], kernel: KernelState | undefined): TunnelResolution[] {
  const filtered = results.filter((r) => r.outcome === 'desired' && r.desired.rules?.peerFilter !== undefined);
  if (filtered.length === 0) return results;
  const devices: Array<{ name: string; local: string | undefined; remote: string }> = [];
  for (const l of kernel?.links ?? []) {
    if (l.tunnel?.mode === 'ipip' && l.tunnel.remote !== undefined)
      devices.push({ name: l.name, local: l.tunnel.local, remote: l.tunnel.remote });
  }
  for (const r of results) {
    const t = r.outcome === 'desired' ? r.desired.link.tunnel : undefined;
    if (r.outcome === 'desired' && t?.remote !== undefined)
      devices.push({ name: r.desired.link.name, local: t.local, remote: t.remote });
  }
  return results.map((r) => {
    if (r.outcome !== 'desired' || r.desired.rules?.peerFilter === undefined) return r;
    const { local, allowed } = r.desired.rules.peerFilter;
    const others = devices
      .filter((d) => d.name !== r.desired.link.name && (d.local === undefined || d.local === local))
      .map((d) => d.remote);
    if (others.every((a) => allowed.includes(a))) return r;
    const peerFilter = { local, allowed: [...new Set([...allowed, ...others])].sort() };
    return { ...r, desired: { ...r.desired, rules: { ...r.desired.rules, peerFilter } } };
  });
}

/** The underlay addresses the resolved tunnels use, local and remote. */
function underlaysOf(resolved: readonly Resolved[]): UnderlayAddress[] {
  const found: UnderlayAddress[] = [];
  for (const { resolution: r } of resolved) {
    if (r.outcome !== 'desired') continue;
    const t = r.desired.link.tunnel;
    if (t.local !== undefined)
      found.push({ address: t.local, role: `the local underlay address of tunnel ${r.tunnel}` });
    if (t.remote !== undefined)
      found.push({ address: t.remote, role: `the remote underlay address of tunnel ${r.tunnel}` });
    // A mesh's peers: the next hops of its routes.
    for (const route of r.desired.routes) {
      if (route.via !== undefined && route.onlink === true)
        found.push({ address: route.via, role: `the underlay address of a peer of tunnel ${r.tunnel}` });
    }
  }
  return found;
}
