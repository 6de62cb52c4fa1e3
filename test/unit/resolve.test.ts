// resolve: where each endpoint's underlay comes from, the MTU, and every reason a tunnel
// gets no desired state on a node.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { concernsNode, nodesReadBy, publishedReadBy, resolve } from '../../src/resolve/resolve.ts';
import type { ResolveInput } from '../../src/resolve/resolve.ts';
import type { TunnelResolution } from '../../src/model/problem.ts';
import { bareKernel, dhcpDefaultRoute, exampleTunnel, foreignTunnel, programmedKernel } from './builders.ts';

function one(t: IpipTunnel, extra: Partial<ResolveInput> = {}): TunnelResolution {
  return resolve({ nodeName: 'node-a', tunnels: [t], kernel: bareKernel(), nodeAddresses: new Map(), ...extra })[0]!;
}

function outcome(r: TunnelResolution): string {
  if (r.outcome === 'desired') {
    const t = r.desired.link.tunnel;
    return `desired local=${t.local} remote=${t.remote} dev=${t.underlayDevice} mtu=${r.desired.link.mtu}`;
  }
  if (r.outcome === 'absent') return 'absent';
  return `${r.outcome} ${r.reason} ${r.field ?? ''}`.trim();
}

const noUnderlay = (i: number) => (t: IpipTunnel) => {
  delete t.spec.endpoints[i]!.underlay;
};
const onlyInterface = (i: number) => (t: IpipTunnel) => {
  t.spec.endpoints[i]!.underlay = { interface: 'eth1' };
};
const internalIPs = new Map([
  ['node-a', '192.168.40.2'],
  ['node-b', '192.168.40.3'],
]);

const cases: Array<{ name: string; tunnel: IpipTunnel; extra?: Partial<ResolveInput>; want: string }> = [
  {
    name: 'explicit addresses',
    tunnel: exampleTunnel(),
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
  },
  {
    name: 'local address finds its device',
    tunnel: exampleTunnel((t) => {
      delete t.spec.endpoints[0]!.underlay!.interface;
    }),
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
  },
  {
    name: 'local interface gives its first global address',
    tunnel: exampleTunnel(onlyInterface(0)),
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
  },
  {
    name: 'explicit mtu wins',
    tunnel: exampleTunnel((t) => {
      t.spec.mtu = 1400;
    }),
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1400',
  },
  {
    name: 'neither: the Node InternalIPs',
    tunnel: exampleTunnel((t) => {
      noUnderlay(0)(t);
      noUnderlay(1)(t);
    }),
    extra: { nodeAddresses: internalIPs },
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
  },
  {
    name: 'remote interface: the address its agent published',
    tunnel: exampleTunnel((t) => {
      onlyInterface(1)(t);
    }),
    extra: { published: (tunnel, node) => (tunnel === 'lab' && node === 'node-b' ? '192.168.40.33' : undefined) },
    want: 'desired local=192.168.40.2 remote=192.168.40.33 dev=eth1 mtu=1480',
  },
  {
    name: 'remote interface not published yet: waiting',
    tunnel: exampleTunnel(onlyInterface(1)),
    want: 'waiting RemoteUnderlayUnknown spec.endpoints[1].underlay',
  },
  {
    name: 'remote with no InternalIP known: waiting',
    tunnel: exampleTunnel(noUnderlay(1)),
    want: 'waiting RemoteUnderlayUnknown spec.endpoints[1].underlay',
  },
  {
    name: 'local interface missing',
    tunnel: exampleTunnel((t) => {
      t.spec.endpoints[0]!.underlay!.interface = 'eth9';
    }),
    want: 'error UnderlayInterfaceNotFound spec.endpoints[0].underlay.interface',
  },
  {
    name: 'local address not on this node',
    tunnel: exampleTunnel((t) => {
      t.spec.endpoints[0]!.underlay!.address = '192.168.40.99';
    }),
    want: 'error UnderlayAddressNotLocal spec.endpoints[0].underlay.address',
  },
  {
    name: 'local interface without an address',
    tunnel: exampleTunnel((t) => {
      t.spec.endpoints[0]!.underlay = { interface: 'tunl0' };
    }),
    want: 'error UnderlayInterfaceHasNoAddress spec.endpoints[0].underlay.interface',
  },
  {
    name: 'local with nothing to go on',
    tunnel: exampleTunnel(noUnderlay(0)),
    want: 'error LocalUnderlayUnknown spec.endpoints[0].underlay',
  },
  {
    name: 'InternalIP that is not local',
    tunnel: exampleTunnel(noUnderlay(0)),
    extra: { nodeAddresses: new Map([['node-a', '10.1.1.1']]) },
    want: 'error UnderlayAddressNotLocal spec.endpoints[0].underlay',
  },
  {
    name: 'invalid spec',
    tunnel: exampleTunnel((t) => {
      t.spec.routes = ['172.0.0.1/24'];
    }),
    want: 'error InvalidSpec spec.routes[0]',
  },
  {
    name: 'three endpoints with spec.routes: a mesh cannot say where they go',
    tunnel: exampleTunnel((t) => {
      t.spec.endpoints.push({ nodeName: 'node-c', overlayAddress: '172.0.0.4' });
    }),
    want: 'error InvalidSpec spec.routes',
  },
  { name: 'not an endpoint', tunnel: exampleTunnel(), extra: { nodeName: 'node-c' }, want: 'absent' },
  {
    name: 'from scratch: the spec is trusted, MTU 1500 assumed',
    tunnel: exampleTunnel(),
    extra: { kernel: undefined },
    want: 'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
  },
  {
    name: 'from scratch needs a local address',
    tunnel: exampleTunnel(onlyInterface(0)),
    extra: { kernel: undefined },
    want: 'error LocalUnderlayUnknown spec.endpoints[0].underlay.address',
  },
];

describe('resolve', () => {
  for (const c of cases) test(c.name, () => assert.equal(outcome(one(c.tunnel, c.extra)), c.want));

  test("routes are spec.routes plus the remote endpoint's networks, sorted and unique", () => {
    const r = one(
      exampleTunnel((t) => {
        t.spec.routes = ['172.0.0.0/24', '10.20.0.0/16'];
        t.spec.endpoints[1]!.networks = ['10.20.0.0/16', '10.3.0.0/16'];
        t.spec.endpoints[0]!.networks = ['10.1.0.0/16'];
      }),
    );
    assert.equal(r.outcome, 'desired');
    if (r.outcome === 'desired')
      assert.deepEqual(
        r.desired.routes.map((x) => x.dst),
        ['10.20.0.0/16', '10.3.0.0/16', '172.0.0.0/24'],
      );
  });

  test('a second tunnel routing the same prefix gets RouteInUse; the older keeps it', () => {
    const older = exampleTunnel((t) => {
      t.metadata = { name: 'b-older', creationTimestamp: '2026-01-01T00:00:00Z' };
    });
    const newer = exampleTunnel((t) => {
      t.metadata = { name: 'a-newer', creationTimestamp: '2026-02-01T00:00:00Z' };
      t.spec.linkName = 'other';
    });
    const results = resolve({
      nodeName: 'node-a',
      tunnels: [newer, older],
      kernel: bareKernel(),
      nodeAddresses: new Map(),
    });
    assert.deepEqual(results.map(outcome), [
      'error RouteInUse spec.routes[0]',
      'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
    ]);
  });

  test('the same tunnels in any order resolve the same', () => {
    const ts = ['c', 'a', 'b'].map((name) =>
      exampleTunnel((t) => {
        t.metadata.name = name;
      }),
    );
    const a = resolve({ nodeName: 'node-a', tunnels: ts, kernel: bareKernel(), nodeAddresses: new Map() });
    const b = resolve({
      nodeName: 'node-a',
      tunnels: [...ts].reverse(),
      kernel: bareKernel(),
      nodeAddresses: new Map(),
    });
    assert.deepEqual(a, b);
    assert.deepEqual(a.map(outcome), [
      'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
      'error LinkNameInUse spec.linkName',
      'error LinkNameInUse spec.linkName',
    ]);
  });

  // The agent skips reconciling on changes that concern the node on neither side; these
  // prove that resolve() of the node cannot differ for them.
  test('a tunnel that does not concern a node changes nothing resolve gives it, even with the same link name and routes, and older', () => {
    const mine = exampleTunnel((t) => {
      t.metadata = { name: 'mine', creationTimestamp: '2026-02-01T00:00:00Z' };
    });
    const elsewhere = exampleTunnel((t) => {
      t.metadata = { name: 'elsewhere', creationTimestamp: '2026-01-01T00:00:00Z' };
      t.spec.endpoints[0]!.nodeName = 'node-c';
      t.spec.endpoints[1]!.nodeName = 'node-d';
    });
    assert.equal(concernsNode(mine, 'node-a'), true);
    assert.equal(concernsNode(elsewhere, 'node-a'), false);
    assert.equal(concernsNode(undefined, 'node-a'), false, 'the missing side of an add or a delete');
    const input = { nodeName: 'node-a', kernel: bareKernel(), nodeAddresses: internalIPs };
    const without = resolve({ ...input, tunnels: [mine] });
    const withIt = resolve({ ...input, tunnels: [mine, elsewhere] });
    assert.deepEqual(
      withIt.filter((r) => r.tunnel !== 'elsewhere'),
      without,
    );
    assert.deepEqual(
      withIt.find((r) => r.tunnel === 'elsewhere'),
      { tunnel: 'elsewhere', outcome: 'absent' },
    );
  });

  test('a malformed spec concerns no node, and is not an error here', () => {
    assert.equal(
      concernsNode(
        exampleTunnel((t) => {
          t.spec = {} as IpipTunnel['spec'];
        }),
        'node-a',
      ),
      false,
      'a malformed spec is not an error here',
    );
  });

  test("the Nodes whose InternalIP a node reads are itself and its peers; other Nodes' addresses change nothing", () => {
    const viaInternalIP = exampleTunnel((t) => {
      noUnderlay(0)(t);
      noUnderlay(1)(t);
    });
    const elsewhere = exampleTunnel((t) => {
      t.metadata.name = 'elsewhere';
      t.spec.endpoints[0]!.nodeName = 'node-c';
      t.spec.endpoints[1]!.nodeName = 'node-d';
    });
    assert.deepEqual([...nodesReadBy([viaInternalIP, elsewhere], 'node-a')].sort(), ['node-a', 'node-b']);
    assert.deepEqual([...nodesReadBy([elsewhere], 'node-a')], ['node-a']);
    const at = (addresses: Array<[string, string]>) =>
      resolve({
        nodeName: 'node-a',
        tunnels: [viaInternalIP, elsewhere],
        kernel: bareKernel(),
        nodeAddresses: new Map(addresses),
      });
    const base: Array<[string, string]> = [
      ['node-a', '192.168.40.2'],
      ['node-b', '192.168.40.3'],
      ['node-c', '10.0.0.3'],
    ];
    assert.deepEqual(at([...base.slice(0, 2), ['node-c', '10.0.0.99'], ['node-d', '10.0.0.4']]), at(base));
    assert.notDeepEqual(
      at([base[0]!, ['node-b', '192.168.40.33'], base[2]!]),
      at(base),
      "a peer's address does change it",
    );
  });
});

describe('never harm the host: the path to every underlay address stays as it is', () => {
  /** node-a with a default route via the bridge (a DHCP one, with a metric) and a remote peer beyond it. */
  function routedKernel() {
    const k = bareKernel();
    k.routes.push(dhcpDefaultRoute());
    return k;
  }
  const far = (mutate: (t: IpipTunnel) => void = () => {}) =>
    exampleTunnel((t) => {
      t.spec.endpoints[1]!.underlay = { address: '10.1.1.1' };
      mutate(t);
    });
  const verdict = (t: IpipTunnel, kernel = bareKernel()) =>
    outcome(resolve({ nodeName: 'node-a', tunnels: [t], kernel, nodeAddresses: new Map() })[0]!);

  const cases: Array<[string, IpipTunnel, string, ReturnType<typeof bareKernel>?]> = [
    [
      'a route that would carry the remote underlay address into the tunnel (it goes by the default route now)',
      far((t) => {
        t.spec.routes = ['10.0.0.0/8'];
      }),
      'error RouteHarmsUnderlay spec.routes[0]',
      routedKernel(),
    ],
    [
      'a route inside the underlay subnet',
      exampleTunnel((t) => {
        t.spec.routes = ['192.168.40.128/25'];
      }),
      'error RouteHarmsUnderlay spec.routes[0]',
    ],
    [
      'the remote underlay address itself as a network of the peer',
      exampleTunnel((t) => {
        t.spec.endpoints[1]!.networks = ['192.168.40.3/32'];
      }),
      'error RouteHarmsUnderlay spec.endpoints[1].networks[0]',
    ],
    [
      'a peer overlay address in the underlay subnet (the kernel routes the peer into the link)',
      exampleTunnel((t) => {
        t.spec.endpoints[1]!.overlayAddress = '192.168.40.9';
      }),
      'error RouteHarmsUnderlay spec.endpoints[1].overlayAddress',
    ],
    [
      'a local overlay address in the underlay subnet',
      exampleTunnel((t) => {
        t.spec.endpoints[0]!.overlayAddress = '192.168.40.9';
      }),
      'error RouteHarmsUnderlay spec.endpoints[0].overlayAddress',
    ],
    [
      "a route wider than the underlay subnet is fine: the subnet's own route stays the more specific",
      exampleTunnel((t) => {
        t.spec.routes = ['192.168.0.0/16'];
      }),
      'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
    ],
    [
      'a default route through the tunnel is fine when the underlay is on-link',
      exampleTunnel((t) => {
        t.spec.routes = ['0.0.0.0/0'];
      }),
      'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
    ],
  ];
  for (const [name, t, want, k] of cases) test(name, () => assert.equal(verdict(t, k), want));

  test('the message says what would be taken and how it goes now', () => {
    const r = resolve({
      nodeName: 'node-a',
      tunnels: [
        far((t) => {
          t.spec.routes = ['10.0.0.0/8'];
        }),
      ],
      kernel: routedKernel(),
      nodeAddresses: new Map(),
    })[0]!;
    assert.equal(r.outcome, 'error');
    if (r.outcome === 'error') {
      assert.match(
        r.message,
        new RegExp(
          'route 10\\.0\\.0\\.0/8: 10\\.0\\.0\\.0/8 would take the path to 10\\.1\\.1\\.1, the remote underlay address of tunnel lab ' +
            '\\(it goes by 0\\.0\\.0\\.0/0 via 192\\.168\\.40\\.1 dev eth1 now\\); refused',
        ),
      );
    }
  });

  test("the underlay of someone else's tunnel device on the node is protected too", () => {
    const k = routedKernel();
    k.links.push(foreignTunnel('10.7.7.7'));
    assert.equal(
      verdict(
        exampleTunnel((t) => {
          t.spec.routes = ['10.7.0.0/16'];
        }),
        k,
      ),
      'error RouteHarmsUnderlay spec.routes[0]',
    );
  });
});

describe('claims between the tunnels of a node: the older keeps them, always', () => {
  const older = (mutate: (t: IpipTunnel) => void = () => {}) =>
    exampleTunnel((t) => {
      t.metadata = { name: 'b-older', creationTimestamp: '2026-01-01T00:00:00Z' };
      mutate(t);
    });
  const newer = (mutate: (t: IpipTunnel) => void = () => {}) =>
    exampleTunnel((t) => {
      t.metadata = { name: 'a-newer', creationTimestamp: '2026-02-01T00:00:00Z' };
      t.spec.linkName = 'other';
      t.spec.routes = ['10.5.0.0/16'];
      t.spec.endpoints[0]!.overlayAddress = '172.0.5.2';
      t.spec.endpoints[1]!.overlayAddress = '172.0.5.3';
      mutate(t);
    });
  const run = (tunnels: IpipTunnel[], kernel = bareKernel()) =>
    resolve({ nodeName: 'node-a', tunnels, kernel, nodeAddresses: new Map() }).map(outcome);

  test('two tunnels on one underlay address pair: the newer gets UnderlayPairInUse, in any order', () => {
    const want = [
      'error UnderlayPairInUse spec.endpoints[1].underlay',
      'desired local=192.168.40.2 remote=192.168.40.3 dev=eth1 mtu=1480',
    ];
    assert.deepEqual(run([newer(), older()]), want);
    assert.deepEqual(run([older(), newer()]), want);
  });

  test('while the older is in error it still holds its link name, so the newer cannot take it', () => {
    const broken = older((t) => {
      t.spec.endpoints[0]!.underlay!.interface = 'eth9';
    });
    const sameName = newer((t) => {
      t.spec.linkName = 'ipiptun';
      t.spec.endpoints[1]!.underlay!.address = '192.168.40.4';
    });
    assert.deepEqual(run([broken, sameName]), [
      'error LinkNameInUse spec.linkName',
      'error UnderlayInterfaceNotFound spec.endpoints[0].underlay.interface',
    ]);
  });

  test('while the older is in error, what it holds in the kernel stays its own: its pair and its routes', () => {
    const broken = older((t) => {
      t.spec = { ...t.spec, ttl: 999 };
    }); // invalid: claims nothing from its spec
    const samePair = newer();
    const sameRoute = newer((t) => {
      t.metadata.name = 'c-newer';
      t.spec.linkName = 'third';
      t.spec.routes = ['172.0.0.0/24'];
      t.spec.endpoints[1]!.underlay!.address = '192.168.40.5';
    });
    const kernel = programmedKernel();
    kernel.links.find((l) => l.name === 'ipiptun')!.alias = 'ipip-operator/b-older';
    const results = run([broken, samePair, sameRoute], kernel);
    assert.deepEqual(results, [
      'error UnderlayPairInUse spec.endpoints[1].underlay',
      'error InvalidSpec spec.ttl',
      'error RouteInUse spec.routes[0]',
    ]);
  });

  test("the published addresses a node reads: its peers' whose underlay names an interface and no address", () => {
    const byInterface = exampleTunnel((t) => {
      t.metadata.name = 'by-interface';
      onlyInterface(0)(t);
      onlyInterface(1)(t);
    });
    const elsewhere = exampleTunnel((t) => {
      t.metadata.name = 'elsewhere';
      t.spec.endpoints[0]!.nodeName = 'node-c';
      onlyInterface(1)(t);
    });
    const read = publishedReadBy([exampleTunnel(), byInterface, elsewhere], 'node-a');
    assert.deepEqual(
      [...read].map(([node, tunnels]) => [node, [...tunnels]]),
      [['node-b', ['by-interface']]],
    );
    // What resolve reads indeed: node-b's published address for by-interface is the remote.
    const r = resolve({
      nodeName: 'node-a',
      tunnels: [byInterface],
      kernel: bareKernel(),
      nodeAddresses: new Map(),
      published: (tunnel, node) => (tunnel === 'by-interface' && node === 'node-b' ? '192.168.40.9' : undefined),
    })[0]!;
    assert.ok(r.outcome === 'desired' && r.desired.link.tunnel.remote === '192.168.40.9');
  });
});
