// N point-to-point tunnels from node-a (192.168.40.2 on eth1) to distinct remotes, each
// with its own link, overlay /32 pair and routed prefix: the load for the benchmarks.

import type { IpipTunnel } from '../src/api/types.ts';

/** The i-th of a run of distinct host addresses: a.b.x.y with y in 1..250. */
function host(prefix: string, i: number): string {
  return `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

export function manyTunnels(n: number): IpipTunnel[] {
  return Array.from({ length: n }, (_, i) => ({
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    kind: 'IpipTunnel',
    metadata: { name: `t${i}` },
    spec: {
      linkName: `bench${i}`,
      endpoints: [
        {
          nodeName: 'node-a',
          underlay: { address: '192.168.40.2', interface: 'eth1' },
          overlayAddress: host('172.16', i),
        },
        { nodeName: `peer-${i}`, underlay: { address: host('10.200', i) }, overlayAddress: host('172.17', i) },
      ],
      routes: [`10.${100 + Math.floor(i / 250)}.${i % 250}.0/24`],
    },
  }));
}

/** Peers per mesh: the CRD's limit is 200 endpoints (its CEL rules compare them pairwise), node-a is one. */
export const PEERS_PER_MESH = 199;

/** node-a's underlay address in mesh k: one per mesh, since two any-remote links cannot share a local address. */
export function meshLocal(k: number): string {
  return `192.168.${50 + k}.2`;
}

/**
 * `peers` mesh peers of node-a, in meshes of at most 200 endpoints (node-a and 199
 * others): mesh k has its link meshK on node-a's address meshLocal(k) on eth1, and every
 * peer an underlay address of its own, so each needs a route and a place in the filter.
 */
export function meshTunnels(peers: number): IpipTunnel[] {
  const meshes: IpipTunnel[] = [];
  for (let k = 0, first = 0; first < peers; k++, first += PEERS_PER_MESH) {
    const count = Math.min(PEERS_PER_MESH, peers - first);
    meshes.push({
      apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
      kind: 'IpipTunnel',
      metadata: { name: `mesh${k}` },
      spec: {
        linkName: `mesh${k}`,
        endpoints: [
          {
            nodeName: 'node-a',
            underlay: { address: meshLocal(k), interface: 'eth1' },
            overlayAddress: `172.${20 + k}.255.1`,
          },
          ...Array.from({ length: count }, (_, j) => ({
            nodeName: `peer-${k}-${j}`,
            underlay: { address: host(`10.${210 + k}`, j) },
            overlayAddress: host(`172.${20 + k}`, j),
          })),
        ],
      },
    });
  }
  return meshes;
}

/**
 * N point-to-point IpipTunnels between cluster nodes (bench/cluster-scale.ts, bench/pod-memory.ts),
 * spread evenly over every pair of `nodes`. The kernel gives one IPIP device per (local,
 * remote) pair, so each node gets `perNode` extra underlay addresses on eth1 (10.81.K.1-M/16,
 * node K) and the tunnels of a pair of nodes use distinct pairs of them (M*M >= the
 * tunnels of a pair). Tunnel t is the pair t mod P, and within it the (t div P)-th pair
 * of underlay addresses.
 */
export function clusterScale(n: number, nodes: readonly string[]) {
  const pairs: Array<[number, number]> = [];
  for (let a = 0; a < nodes.length; a++) for (let b = a + 1; b < nodes.length; b++) pairs.push([a, b]);
  const perNode = Math.ceil(Math.sqrt(Math.ceil(n / pairs.length)));
  if (perNode > 250) throw new Error(`${n} tunnels need ${perNode} underlay addresses per node; at most 250`);
  const underlay = (node: number, j: number) => `10.81.${node}.${j + 1}`;
  const tunnel = (t: number): IpipTunnel => {
    const [a, b] = pairs[t % pairs.length]!;
    const q = Math.floor(t / pairs.length);
    const overlay = (k: number) => `10.100.${Math.floor(t / 125)}.${(t % 125) * 2 + k}`;
    return {
      apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
      kind: 'IpipTunnel',
      metadata: { name: `s${t}` },
      spec: {
        linkName: `ips${t}`,
        endpoints: [
          { nodeName: nodes[a]!, underlay: { address: underlay(a, q % perNode) }, overlayAddress: overlay(1) },
          {
            nodeName: nodes[b]!,
            underlay: { address: underlay(b, Math.floor(q / perNode)) },
            overlayAddress: overlay(2),
          },
        ],
      },
    };
  };
  /** The commands (for `ip -batch -`) that give node K its underlay addresses. */
  const underlayCommands = (k: number) =>
    Array.from({ length: perNode }, (_, j) => `address add ${underlay(k, j)}/16 dev eth1`).join('\n');
  return { pairs, perNode, tunnel, tunnels: () => Array.from({ length: n }, (_, t) => tunnel(t)), underlayCommands };
}
