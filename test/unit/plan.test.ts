// plan, table-driven: for a spec and a kernel, the exact `ip` commands node-a would run.
// Every case is also replanned on the model kernel after its actions: nothing may be left.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import type { KernelState } from '../../src/model/kernel.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { applyModel } from '../harness/kernel-model.ts';
import { meshExample } from '../harness/repo.ts';
import {
  bareKernel,
  dhcpDefaultRoute,
  exampleTunnel,
  foreignTunnel,
  labLink,
  ourRoute,
  programmedKernel,
} from './builders.ts';

interface Case {
  name: string;
  tunnels: IpipTunnel[];
  kernel: KernelState;
  commands: string[];
  conflicts?: string[];
}

const CREATE = [
  'ip link add name ipiptun mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.3 ttl 64 dev eth1',
  'ip link set dev ipiptun alias ipip-operator/lab',
  'ip link set dev ipiptun up',
  'ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
  'ip route replace 172.0.0.0/24 dev ipiptun proto 203',
];

function kernel(edit: (k: KernelState) => void): KernelState {
  const k = programmedKernel();
  edit(k);
  return k;
}

const withForeign = (k: KernelState) => {
  k.links.push(foreignTunnel('192.168.40.7', [{ local: '10.99.0.1', prefixlen: 32, scope: 0 }]));
  k.routes.push({
    dst: '10.9.0.0/16',
    dev: 'eth1',
    gateway: '192.168.40.1',
    protocol: 3,
    metric: 0,
    scope: 0,
    type: 1,
  });
  k.routes.push({ dst: '10.99.0.0/16', dev: 'foreign0', protocol: 4, metric: 0, scope: 253, type: 1 });
};

const cases: Case[] = [
  {
    name: 'creates the example tunnel on a bare kernel',
    tunnels: [exampleTunnel()],
    kernel: bareKernel(),
    commands: CREATE,
  },
  {
    name: 'does nothing when the kernel is already right',
    tunnels: [exampleTunnel()],
    kernel: programmedKernel(),
    commands: [],
  },
  {
    name: 'changes ttl in place',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.ttl = 32;
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link set dev ipiptun type ipip local 192.168.40.2 remote 192.168.40.3 ttl 32 dev eth1'],
  },
  {
    name: 'inherits ttl with 0',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.ttl = 0;
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link set dev ipiptun type ipip local 192.168.40.2 remote 192.168.40.3 ttl 0 dev eth1'],
  },
  {
    name: 'changes the remote in place',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[1]!.underlay!.address = '192.168.40.9';
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link set dev ipiptun type ipip local 192.168.40.2 remote 192.168.40.9 ttl 64 dev eth1'],
  },
  {
    name: 'changes the local underlay in place',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.underlay!.address = '192.168.40.12';
      }),
    ],
    kernel: kernel((k) => {
      k.links.find((l) => l.name === 'eth1')!.addresses.push({ local: '192.168.40.12', prefixlen: 24, scope: 0 });
    }),
    commands: ['ip link set dev ipiptun type ipip local 192.168.40.12 remote 192.168.40.3 ttl 64 dev eth1'],
  },
  {
    name: 'replaces the overlay address',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.overlayAddress = '172.0.0.12';
      }),
    ],
    kernel: programmedKernel(),
    commands: [
      'ip address del 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
      'ip address add 172.0.0.12/32 peer 172.0.0.3/32 dev ipiptun',
    ],
  },
  {
    name: 'replaces the peer when the remote overlay changes',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[1]!.overlayAddress = '172.0.0.13';
      }),
    ],
    kernel: programmedKernel(),
    commands: [
      'ip address del 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
      'ip address add 172.0.0.2/32 peer 172.0.0.13/32 dev ipiptun',
    ],
  },
  {
    name: 'sets an explicit mtu',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.mtu = 1400;
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link set dev ipiptun mtu 1400'],
  },
  {
    name: 'follows the underlay mtu when mtu is not set',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.links.find((l) => l.name === 'eth1')!.mtu = 9000;
    }),
    commands: ['ip link set dev ipiptun mtu 8980'],
  },
  {
    name: 'adds a route and the remote networks',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.routes!.push('10.30.0.0/16');
        t.spec.endpoints[1]!.networks = ['10.20.0.0/16'];
      }),
    ],
    kernel: programmedKernel(),
    commands: [
      'ip route replace 10.20.0.0/16 dev ipiptun proto 203',
      'ip route replace 10.30.0.0/16 dev ipiptun proto 203',
    ],
  },
  {
    name: 'does not route its own networks into the tunnel',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.networks = ['10.10.0.0/16'];
      }),
    ],
    kernel: programmedKernel(),
    commands: [],
  },
  {
    name: 'removes a route that left the spec',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.routes = [];
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip route del 172.0.0.0/24 proto 203 dev ipiptun'],
  },
  {
    name: 'renames the link by replacing it',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.linkName = 'lab0';
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link del dev ipiptun', ...CREATE.map((c) => c.replaceAll('ipiptun', 'lab0'))],
  },
  {
    name: 'derives the link name when none is given',
    tunnels: [
      exampleTunnel((t) => {
        delete t.spec.linkName;
      }),
    ],
    kernel: bareKernel(),
    commands: CREATE.map((c) => c.replaceAll('ipiptun', 'ipip-lab')),
  },
  {
    name: 'removes a tunnel gone from the spec, with everything on its link',
    tunnels: [],
    kernel: programmedKernel(),
    commands: ['ip link del dev ipiptun'],
  },
  {
    name: 'removes the tunnel from a node that is no longer an endpoint',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.nodeName = 'node-c';
      }),
    ],
    kernel: programmedKernel(),
    commands: ['ip link del dev ipiptun'],
  },
  {
    name: 'brings a link set down by hand back up, and its routes (the kernel dropped them)',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.links.find((l) => l.name === 'ipiptun')!.up = false;
      k.routes = k.routes.filter((r) => r.dev !== 'ipiptun');
    }),
    commands: ['ip link set dev ipiptun up', 'ip route replace 172.0.0.0/24 dev ipiptun proto 203'],
  },
  {
    name: 'puts back a route deleted by hand',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.routes = k.routes.filter((r) => r.protocol !== 203);
    }),
    commands: ['ip route replace 172.0.0.0/24 dev ipiptun proto 203'],
  },
  {
    name: 'a route with our protocol moved to a device not ours is not ours: a conflict, left alone',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.routes.find((r) => r.protocol === 203)!.dev = 'eth1';
    }),
    commands: [],
    conflicts: ['lab:RouteTaken'],
  },
  {
    name: 'takes back its route moved to another link of its own',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.links.push(
        labLink({
          index: 12,
          name: 'ipipold',
          alias: 'ipip-operator/lab',
          tunnel: { mode: 'ipip', local: '192.168.40.2', remote: '192.168.40.8', ttl: 64, underlayDevice: 'eth1' },
          addresses: [],
        }),
      );
      k.routes.find((r) => r.protocol === 203)!.dev = 'ipipold';
    }),
    commands: ['ip link del dev ipipold', 'ip route replace 172.0.0.0/24 dev ipiptun proto 203'],
  },
  {
    name: 'removes an extra address from its own link',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.links.find((l) => l.name === 'ipiptun')!.addresses.push({ local: '172.0.0.99', prefixlen: 32, scope: 0 });
    }),
    commands: ['ip address del 172.0.0.99/32 dev ipiptun'],
  },
  {
    name: 'a device of another kind carrying our alias is not ours: a conflict, never deleted',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      const l = k.links.find((x) => x.name === 'ipiptun')!;
      l.kind = 'veth';
      delete l.tunnel;
    }),
    commands: [],
    conflicts: ['lab:LinkNameTaken'],
  },
  {
    name: 'nor swept when no tunnel wants it',
    tunnels: [],
    kernel: kernel((k) => {
      const l = k.links.find((x) => x.name === 'ipiptun')!;
      l.kind = 'gre';
      delete l.tunnel;
    }),
    commands: [],
  },
  {
    name: 'leaves a route with our protocol on a device not ours alone',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      k.routes.push(ourRoute('10.77.0.0/16', 'eth1'));
    }),
    commands: [],
  },
  {
    name: 'adopts a link it created but was killed before marking with the alias (the group marks it)',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      const l = k.links.find((x) => x.name === 'ipiptun')!;
      delete l.alias;
      l.up = false;
      l.addresses = [];
      k.routes = k.routes.filter((r) => r.dev !== 'ipiptun');
    }),
    commands: [
      'ip link set dev ipiptun alias ipip-operator/lab',
      'ip link set dev ipiptun up',
      'ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
      'ip route replace 172.0.0.0/24 dev ipiptun proto 203',
    ],
  },
  {
    name: 'removes such a link when no tunnel wants its name',
    tunnels: [],
    kernel: kernel((k) => {
      delete k.links.find((x) => x.name === 'ipiptun')!.alias;
    }),
    commands: ['ip link del dev ipiptun'],
  },
  {
    name: 'a link without our group or alias is foreign, whatever it looks like',
    tunnels: [exampleTunnel()],
    kernel: kernel((k) => {
      const l = k.links.find((x) => x.name === 'ipiptun')!;
      delete l.alias;
      l.group = 0;
    }),
    commands: [],
    conflicts: ['lab:LinkNameTaken'],
  },
  {
    name: 'leaves foreign links, their addresses, foreign routes and tunl0 alone',
    tunnels: [exampleTunnel()],
    kernel: kernel(withForeign),
    commands: [],
  },
  {
    name: 'leaves foreign objects alone while removing its own',
    tunnels: [],
    kernel: kernel(withForeign),
    commands: ['ip link del dev ipiptun'],
  },
  {
    name: 'reports a foreign link holding the wanted name and changes nothing',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.linkName = 'foreign0';
      }),
    ],
    kernel: kernel(withForeign),
    commands: [],
    conflicts: ['lab:LinkNameTaken'],
  },
  {
    name: 'never takes a foreign link of the wanted name, even one of its own kind (an ipip device down like tunl0)',
    tunnels: [exampleTunnel()],
    kernel: (() => {
      const k = bareKernel();
      k.links.find((l) => l.name === 'tunl0')!.name = 'ipiptun';
      return k;
    })(),
    commands: [],
    conflicts: ['lab:LinkNameTaken'],
  },
  {
    name: 'reports a foreign route to a wanted prefix and changes nothing',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.routes = ['10.9.0.0/16'];
      }),
    ],
    kernel: kernel(withForeign),
    commands: [],
    conflicts: ['lab:RouteTaken'],
  },
  {
    name: 'a foreign route at any metric is a conflict: ours at metric 0 would outrank it',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.routes = ['10.9.0.0/16'];
      }),
    ],
    kernel: kernel((k) => {
      k.routes = k.routes.filter((r) => r.protocol !== 203);
      k.routes.push({
        dst: '10.9.0.0/16',
        dev: 'eth1',
        gateway: '192.168.40.1',
        protocol: 3,
        metric: 100,
        scope: 0,
        type: 1,
      });
    }),
    commands: [],
    conflicts: ['lab:RouteTaken'],
  },
  {
    name: "the host's DHCP default route, with a metric, is never outranked",
    tunnels: [
      exampleTunnel((t) => {
        t.spec.routes = ['0.0.0.0/0'];
      }),
    ],
    kernel: kernel((k) => {
      k.routes.push(dhcpDefaultRoute());
    }),
    commands: [],
    conflicts: ['lab:RouteTaken'],
  },
  {
    name: 'an overlay address a foreign device holds is a conflict: nothing is added',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.overlayAddress = '10.99.0.1';
      }),
    ],
    kernel: kernel(withForeign),
    commands: [],
    conflicts: ['lab:AddressTaken'],
  },
  {
    name: 'a foreign ipip device on the same underlay pair is a conflict',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[1]!.underlay!.address = '192.168.40.7';
      }),
    ],
    kernel: kernel(withForeign),
    commands: [],
    conflicts: ['lab:UnderlayPairTaken'],
  },
  {
    name: 'keeps a working tunnel whose new spec is invalid',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.ttl = 300;
      }),
    ],
    kernel: programmedKernel(),
    commands: [],
  },
  {
    name: 'keeps a working tunnel whose underlay interface went away',
    tunnels: [
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.underlay!.interface = 'eth7';
      }),
    ],
    kernel: programmedKernel(),
    commands: [],
  },
  {
    name: 'gives the older of two tunnels a shared link name',
    kernel: bareKernel(),
    tunnels: [
      exampleTunnel((t) => {
        t.metadata = { name: 'newer', creationTimestamp: '2026-11-02T00:00:00Z' };
        t.spec.routes = [];
      }),
      exampleTunnel((t) => {
        t.metadata = { name: 'older', creationTimestamp: '2026-11-01T00:00:00Z' };
        t.spec.routes = [];
        t.spec.endpoints[1]!.underlay!.address = '192.168.40.4';
      }),
    ],
    commands: [
      'ip link add name ipiptun mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.4 ttl 64 dev eth1',
      'ip link set dev ipiptun alias ipip-operator/older',
      'ip link set dev ipiptun up',
      'ip address add 172.0.0.2/32 peer 172.0.0.3/32 dev ipiptun',
    ],
  },
];

function planFor(tunnels: IpipTunnel[], k: KernelState) {
  const resolutions = resolve({ nodeName: 'node-a', tunnels, kernel: k, nodeAddresses: new Map() });
  return plan(resolutions, k);
}

describe('plan', () => {
  for (const c of cases) {
    test(c.name, () => {
      const result = planFor(c.tunnels, c.kernel);
      assert.deepEqual(renderPlan(result.actions), c.commands);
      assert.deepEqual(
        result.conflicts.map((x) => `${x.tunnel}:${x.reason}`),
        c.conflicts ?? [],
      );
      const after = applyModel(c.kernel, result.actions);
      assert.deepEqual(
        renderPlan(planFor(c.tunnels, after).actions),
        [],
        'planning again after applying must find nothing to do',
      );
    });
  }

  test('touches only links with our mark and routes with our protocol', () => {
    const k = kernel(withForeign);
    for (const c of cases) {
      const { actions } = planFor(c.tunnels, k);
      for (const line of renderPlan(actions)) {
        // eth1 may appear only as a tunnel's underlay (`... type ipip ... dev eth1`).
        assert.doesNotMatch(
          line,
          /foreign0|tunl0|^ip link (set|del) dev eth1|^ip address .* dev eth1|10\.9\.0\.0|10\.99\./,
          `${c.name}: ${line}`,
        );
      }
    }
  });

  test('UnderlayPairTaken names the pair the foreign device holds: for a mesh, the pair to the peer', () => {
    const message = (tunnel: IpipTunnel, remote: string) => {
      const k = bareKernel();
      k.links.push(foreignTunnel(remote));
      const { actions, conflicts } = planFor([tunnel], k);
      assert.deepEqual(actions, []);
      assert.deepEqual(
        conflicts.map((x) => `${x.tunnel}:${x.reason}`),
        [`${tunnel.metadata.name}:UnderlayPairTaken`],
      );
      return conflicts[0]!.message;
    };
    // Seen on a real kernel: the message said "from 192.168.40.2 to any", the mesh link's own pair.
    assert.match(
      message(meshExample(), '192.168.40.3'),
      /^foreign0, .* already carries ipip from 192\.168\.40\.2 to 192\.168\.40\.3, a peer of the mesh;/,
    );
    const p2p = exampleTunnel((t) => {
      t.spec.endpoints[1]!.underlay!.address = '192.168.40.7';
    });
    assert.match(message(p2p, '192.168.40.7'), /already carries ipip from 192\.168\.40\.2 to 192\.168\.40\.7;/);
  });

  test('reaches the same plan whatever order the tunnels come in', () => {
    const tunnels = cases.find((c) => c.name.startsWith('gives the older'))!.tunnels;
    assert.deepEqual(
      renderPlan(planFor(tunnels, bareKernel()).actions),
      renderPlan(planFor([...tunnels].reverse(), bareKernel()).actions),
    );
  });
});
