// Small builders for unit tests: the example tunnel, and node kernels.

import type { KernelState, LinkStats, ObservedLink, ObservedRoute } from '../../src/model/kernel.ts';
import type { TunnelMetrics } from '../../src/report/metrics.ts';

/** The example tunnel of examples/tunnel.yaml (node-a <-> node-b), changed by `mutate`. */
export { exampleTunnel } from '../harness/repo.ts';

/** node-a before the operator: lo, eth1 (192.168.40.2/24, MTU 1500) and the kernel's tunl0. */
export function bareKernel(): KernelState {
  return {
    links: [
      {
        index: 1,
        name: 'lo',
        group: 0,
        up: true,
        mtu: 65536,
        addresses: [{ local: '127.0.0.1', prefixlen: 8, scope: 254 }],
      },
      {
        index: 2,
        name: 'tunl0',
        kind: 'ipip',
        group: 0,
        up: false,
        mtu: 1480,
        tunnel: { mode: 'ipip', local: undefined, remote: undefined, ttl: 0, underlayDevice: undefined },
        addresses: [],
      },
      {
        index: 3,
        name: 'eth1',
        kind: 'veth',
        group: 0,
        up: true,
        mtu: 1500,
        addresses: [{ local: '192.168.40.2', prefixlen: 24, scope: 0 }],
      },
    ],
    routes: [{ dst: '192.168.40.0/24', dev: 'eth1', protocol: 2, metric: 0, scope: 253, type: 1 }],
  };
}

export function labLink(overrides: Partial<ObservedLink> = {}): ObservedLink {
  return {
    index: 9,
    name: 'ipiptun',
    kind: 'ipip',
    alias: 'ipip-operator/lab',
    group: 203,
    up: true,
    mtu: 1480,
    tunnel: { mode: 'ipip', local: '192.168.40.2', remote: '192.168.40.3', ttl: 64, underlayDevice: 'eth1' },
    addresses: [{ local: '172.0.0.2', peer: '172.0.0.3', prefixlen: 32, scope: 0 }],
    ...overrides,
  };
}

export function ourRoute(dst: string, dev = 'ipiptun'): ObservedRoute {
  return { dst, dev, protocol: 203, metric: 0, scope: 253, type: 1 };
}

/** node-a with the example tunnel fully programmed. */
export function programmedKernel(): KernelState {
  const k = bareKernel();
  k.links.push(labLink());
  k.routes.push(ourRoute('172.0.0.0/24'), {
    dst: '172.0.0.3/32',
    dev: 'ipiptun',
    protocol: 2,
    metric: 0,
    scope: 253,
    type: 1,
  });
  return k;
}

/** A link's kernel counters, each a different number so a mix-up shows. */
export const STATS: LinkStats = {
  rxBytes: 1234,
  rxPackets: 12,
  rxErrors: 1,
  rxDropped: 2,
  txBytes: 5678,
  txPackets: 34,
  txErrors: 3,
  txDropped: 4,
};

/** A host's default route from DHCP: via the bridge, protocol dhcp (16), metric 100. */
export function dhcpDefaultRoute(): ObservedRoute {
  return { dst: '0.0.0.0/0', dev: 'eth1', gateway: '192.168.40.1', protocol: 16, metric: 100, scope: 0, type: 1 };
}

/** Someone else's ipip tunnel on node-a (no alias, group 0), to the remote given. */
export function foreignTunnel(remote: string, addresses: ObservedLink['addresses'] = []): ObservedLink {
  return {
    index: 20,
    name: 'foreign0',
    kind: 'ipip',
    group: 0,
    up: true,
    mtu: 1480,
    tunnel: { mode: 'ipip', local: '192.168.40.2', remote, ttl: 0, underlayDevice: undefined },
    addresses,
  };
}

/** The example tunnel on node-a as the metrics show it. */
export const LAB_METRICS: TunnelMetrics = {
  tunnel: 'lab',
  link: 'ipiptun',
  mode: 'ipip',
  local: '192.168.40.2',
  remote: '192.168.40.3',
  up: true,
  stats: STATS,
};
