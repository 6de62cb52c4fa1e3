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
