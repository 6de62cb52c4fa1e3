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
