// Small builders for unit tests: the example tunnel, and node kernels.

import type { KernelState, ObservedLink, ObservedRoute } from '../../src/model/kernel.ts';

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
