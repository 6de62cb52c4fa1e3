// A full mesh (three or more endpoints) as node-a resolves and plans it: one any-remote
// link, its overlay /32, a route per peer via the peer's underlay onlink, networks behind
// endpoints; growing and shrinking by one peer touches only that peer's routes; every
// conflict the kernel's IPIP lookup makes possible is refused, never programmed.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import type { Action, NftAction } from '../../src/model/action.ts';
import type { KernelState, ObservedLink } from '../../src/model/kernel.ts';
import type { TunnelResolution } from '../../src/model/problem.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import type { ResolveInput } from '../../src/resolve/resolve.ts';
import { applyModel } from '../harness/kernel-model.ts';
import { meshExample } from '../harness/repo.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

/** A mesh of n endpoints: node-a (this node, 192.168.40.2) first, then peer i at 192.168.40.(2+i). */
function mesh(n: number, mutate: (t: IpipTunnel) => void = () => {}): IpipTunnel {
  const t = meshExample((m) => {
    m.spec.endpoints = Array.from({ length: n }, (_, i) => ({
      nodeName: i === 0 ? 'node-a' : `node-${i}`,
      underlay: { address: `192.168.40.${2 + i}` },
      overlayAddress: `172.0.1.${2 + i}`,
    }));
  });
  mutate(t);
  return t;
}

function resolveOn(kernel: KernelState, tunnels: IpipTunnel[], extra: Partial<ResolveInput> = {}) {
  return resolve({ nodeName: 'node-a', tunnels, kernel, nodeAddresses: new Map(), ...extra });
}

function planOn(kernel: KernelState, tunnels: IpipTunnel[], extra: Partial<ResolveInput> = {}) {
  const resolutions = resolveOn(kernel, tunnels, extra);
  return { resolutions, ...plan(resolutions, kernel) };
}

/** The kernel after node-a applied the plan for these tunnels; the plan of it again must be empty. */
function programmed(tunnels: IpipTunnel[], kernel = bareKernel()): KernelState {
  const first = planOn(kernel, tunnels);
  assert.deepEqual(first.conflicts, []);
  const after = applyModel(kernel, first.actions);
  assert.deepEqual(renderPlan(planOn(after, tunnels).actions), [], 'a second plan is empty');
  return after;
}

/** The `ip` part of a plan: links, addresses and routes (the nftables part is checked on its own). */
const ipPlan = (actions: readonly Action[]) => renderPlan(actions.filter((a) => a.tool === 'ip'));

/** The nftables part of a plan, as "verb tunnel" and the peers the filter allows after it. */
const rulesPlan = (actions: readonly Action[]) =>
  actions
    .filter((a): a is NftAction => a.tool === 'nft')
    .map((a) => `${a.verb} ${a.tunnel}${a.rules?.peerFilter ? ` allowing ${a.rules.peerFilter.allowed.length}` : ''}`);

const outcomeOf = (r: TunnelResolution | undefined) =>
  r === undefined ? 'none' : r.outcome === 'error' || r.outcome === 'waiting' ? `${r.outcome} ${r.reason}` : r.outcome;

describe('mesh: what node-a programs', () => {
  test('examples/mesh.yaml: one any-remote link bound to eth1, its /32, a route per peer and to the network behind node-c', () => {
    const { actions, conflicts } = planOn(bareKernel(), [meshExample()]);
    assert.deepEqual(conflicts, []);
    assert.deepEqual(renderPlan(actions), [
      // First, the filter: IPIP to this node's underlay address only from the two peers.
      "nft -f - <<'EOF'",
      'table ip ipip-operator',
      'delete table ip ipip-operator',
      'table ip ipip-operator {',
      '\tcomment "managed by ipip-operator; every change replaces the whole table"',
      '\tset peers-mesh {',
      '\t\ttype ipv4_addr',
      '\t\telements = { 192.168.40.3, 192.168.40.4 }',
      '\t}',
      '\tchain prerouting {',
      '\t\ttype filter hook prerouting priority raw; policy accept;',
      '\t\tip protocol 4 ip daddr 192.168.40.2 ip saddr != @peers-mesh counter packets 0 bytes 0 drop comment "mesh"',
      '\t}',
      '}',
      'EOF',
      'ip link add name ipipmesh mtu 1480 group 203 type ipip local 192.168.40.2 ttl 64 dev eth1',
      'ip link set dev ipipmesh alias ipip-operator/mesh',
      'ip link set dev ipipmesh up',
      'ip address add 172.0.1.2/32 dev ipipmesh',
      'ip route replace 10.30.0.0/24 via 192.168.40.4 dev ipipmesh onlink proto 203',
      'ip route replace 172.0.1.3/32 via 192.168.40.3 dev ipipmesh onlink proto 203',
      'ip route replace 172.0.1.4/32 via 192.168.40.4 dev ipipmesh onlink proto 203',
    ]);
    programmed([meshExample()]);
  });

  test('node-c, which carries the network, routes only to the other two; its own network is not routed into the mesh', () => {
    const kernel = bareKernel();
    kernel.links.find((l) => l.name === 'eth1')!.addresses[0]!.local = '192.168.40.4';
    const r = resolve({ nodeName: 'node-c', tunnels: [meshExample()], kernel, nodeAddresses: new Map() })[0]!;
    assert.equal(r.outcome, 'desired');
    assert.deepEqual(
      r.desired.routes.map((x) => `${x.dst} via ${x.via}`),
      ['172.0.1.2/32 via 192.168.40.2', '172.0.1.3/32 via 192.168.40.3'],
    );
  });

  test('an explicit mtu is the link MTU; without one, the underlay MTU minus 20', () => {
    const kernel = bareKernel();
    kernel.links.find((l) => l.name === 'eth1')!.mtu = 9000;
    const auto = resolveOn(kernel, [mesh(3)])[0]!;
    const fixed = resolveOn(kernel, [mesh(3, (t) => (t.spec.mtu = 1400))])[0]!;
    assert.ok(auto.outcome === 'desired' && fixed.outcome === 'desired');
    assert.equal(auto.desired.link.mtu, 8980);
    assert.equal(fixed.desired.link.mtu, 1400);
  });

  for (const n of [3, 4, 200]) {
    test(`${n} endpoints: one link, one address, ${n - 1} routes, and a second plan is empty`, () => {
      const { actions } = planOn(bareKernel(), [mesh(n)]);
      const count = (kind: string) => actions.filter((a) => a.kind === kind).length;
      assert.deepEqual([count('link'), count('address'), count('route')], [1, 1, n - 1]);
      programmed([mesh(n)]);
    });
  }

  test('the same plan whatever the order of the endpoints and of the tunnels', () => {
    const other = exampleTunnel((t) => {
      t.metadata.name = 'other';
      t.spec.linkName = 'other';
      t.spec.endpoints[1]!.underlay = { address: '192.168.40.250' };
      t.spec.endpoints[0]!.overlayAddress = '172.0.9.2';
      t.spec.endpoints[1]!.overlayAddress = '172.0.9.3';
      t.spec.routes = ['172.0.9.0/24'];
    });
    const forward = mesh(40, (t) => (t.spec.endpoints[7]!.networks = ['10.7.0.0/16']));
    const backward = mesh(40, (t) => {
      t.spec.endpoints[7]!.networks = ['10.7.0.0/16'];
      t.spec.endpoints.reverse();
    });
    const a = planOn(bareKernel(), [forward, other]).actions;
    const b = planOn(bareKernel(), [other, backward]).actions;
    // The mesh: a link (3 lines), an address, 39 peers and a network; the other: a link, an address, a route.
    assert.equal(ipPlan(a).length, 3 + 1 + 39 + 1 + (3 + 1 + 1));
    // 39 peers and the other tunnel's remote, from the same local address.
    assert.deepEqual(rulesPlan(a), ['create mesh allowing 40']);
    assert.deepEqual(renderPlan(b), renderPlan(a));
  });
});

describe('mesh: one endpoint more or less changes only that peer', () => {
  test('adding one endpoint to 199: one route added, the link and every other route left as they are', () => {
    const kernel = programmed([mesh(199)]);
    const { actions } = planOn(kernel, [mesh(200)]);
    assert.deepEqual(ipPlan(actions), [
      'ip route replace 172.0.1.201/32 via 192.168.40.201 dev ipipmesh onlink proto 203',
    ]);
    // The filter lets the new peer in: one rewrite of the table.
    assert.deepEqual(rulesPlan(actions), ['update mesh allowing 199']);
  });

  test('removing one endpoint of 200 (and its network): its two routes go, nothing else', () => {
    const withNetwork = mesh(200, (t) => (t.spec.endpoints[100]!.networks = ['10.100.0.0/16']));
    const kernel = programmed([withNetwork]);
    const { actions } = planOn(kernel, [
      mesh(200, (t) => {
        t.spec.endpoints.splice(100, 1);
      }),
    ]);
    assert.deepEqual(ipPlan(actions), [
      'ip route del 10.100.0.0/16 proto 203 dev ipipmesh',
      'ip route del 172.0.1.102/32 proto 203 dev ipipmesh',
    ]);
    assert.deepEqual(rulesPlan(actions), ['update mesh allowing 198']);
  });

  test('a peer whose underlay moved: only its routes are replaced', () => {
    const kernel = programmed([mesh(5)]);
    const { actions } = planOn(kernel, [
      mesh(5, (t) => (t.spec.endpoints[3]!.underlay = { address: '192.168.40.99' })),
    ]);
    assert.deepEqual(ipPlan(actions), [
      'ip route replace 172.0.1.5/32 via 192.168.40.99 dev ipipmesh onlink proto 203',
    ]);
    assert.deepEqual(rulesPlan(actions), ['update mesh allowing 4']);
  });

  test('a mesh of 3 down to 2 endpoints: the link is made anew as point-to-point (the kernel cannot change that in place)', () => {
    const kernel = programmed([mesh(3)]);
    const two = mesh(3, (t) => t.spec.endpoints.pop());
    const { actions, conflicts } = planOn(kernel, [two]);
    assert.deepEqual(conflicts, []);
    // A point-to-point link needs no filter (the kernel takes only its remote's packets): the table goes, after the link.
    assert.deepEqual(rulesPlan(actions), ['delete mesh']);
    assert.equal(actions.at(-1)?.tool, 'nft');
    assert.deepEqual(ipPlan(actions), [
      'ip link del dev ipipmesh',
      'ip link add name ipipmesh mtu 1480 group 203 type ipip local 192.168.40.2 remote 192.168.40.3 ttl 64 dev eth1',
      'ip link set dev ipipmesh alias ipip-operator/mesh',
      'ip link set dev ipipmesh up',
      'ip address add 172.0.1.2/32 peer 172.0.1.3/32 dev ipipmesh',
    ]);
    programmed([two], kernel);
  });

  test("2 endpoints grown to 3: the kernel's route to the old peer is no conflict, and the link is made anew as a mesh", () => {
    const two = mesh(3, (t) => t.spec.endpoints.pop());
    const kernel = programmed([two]);
    assert.ok(
      kernel.routes.some((r) => r.dst === '172.0.1.3/32' && r.protocol === 2),
      "the kernel's own route to the peer",
    );
    const { actions, conflicts } = planOn(kernel, [mesh(3)]);
    assert.deepEqual(conflicts, []);
    assert.deepEqual(ipPlan(actions).slice(0, 2), [
      'ip link del dev ipipmesh',
      'ip link add name ipipmesh mtu 1480 group 203 type ipip local 192.168.40.2 ttl 64 dev eth1',
    ]);
    assert.deepEqual(rulesPlan(actions), ['create mesh allowing 2']);
    assert.equal(actions[0]?.tool, 'nft', 'the filter is in place before the mesh link exists');
    programmed([mesh(3)], kernel);
  });

  test('this node leaving the mesh: its link goes, and the routes with it', () => {
    const kernel = programmed([mesh(4)]);
    const { actions } = planOn(kernel, [mesh(4, (t) => t.spec.endpoints.shift())]);
    assert.deepEqual(ipPlan(actions), ['ip link del dev ipipmesh']);
    assert.deepEqual(rulesPlan(actions), ['delete mesh']);
  });
});

describe('mesh: peers not known yet', () => {
  const byInterface = (t: IpipTunnel) => {
    t.spec.endpoints[2]!.underlay = { interface: 'eth1' };
  };

  test('the known peers are programmed at once; the tunnel waits for the rest', () => {
    const r = resolveOn(bareKernel(), [mesh(4, byInterface)])[0]!;
    assert.equal(r.outcome, 'desired');
    assert.deepEqual(
      r.desired.routes.map((x) => x.dst),
      ['172.0.1.3/32', '172.0.1.5/32'],
    );
    assert.deepEqual(
      r.caveats?.map((c) => c.reason),
      ['RemoteUnderlayUnknown'],
    );
    // The same words however many are missing: a report that changed with every peer would wake every agent each time.
    assert.match(r.caveats![0]!.message, /^waiting for peers to publish their underlay addresses/);
  });

  test('once published, the peer gets its route; until then a route it had stays', () => {
    const published = (tunnel: string, node: string) =>
      tunnel === 'mesh' && node === 'node-2' ? '192.168.40.4' : undefined;
    const kernel = programmed([mesh(4, byInterface)]);
    const known = planOn(kernel, [mesh(4, byInterface)], { published });
    assert.deepEqual(ipPlan(known.actions), [
      'ip route replace 172.0.1.4/32 via 192.168.40.4 dev ipipmesh onlink proto 203',
    ]);
    assert.deepEqual(rulesPlan(known.actions), ['update mesh allowing 3']);
    // Its address unknown again (its agent's report gone): the route is kept, not torn down.
    const after = applyModel(kernel, known.actions);
    const again = planOn(after, [mesh(4, byInterface)]);
    assert.deepEqual(renderPlan(again.actions), []);
    assert.equal(again.resolutions[0]!.outcome, 'desired');
  });
});

describe('mesh: networks and forwarding', () => {
  const withNetwork = (t: IpipTunnel) => {
    t.spec.endpoints[0]!.networks = ['10.50.0.0/16'];
  };

  test('networks behind this node with forwarding off: programmed all the same, and ForwardingDisabled said', () => {
    const kernel = { ...bareKernel(), ipv4Forwarding: false };
    const { resolutions, actions } = planOn(kernel, [mesh(3, withNetwork)]);
    const r = resolutions[0]!;
    assert.equal(r.outcome, 'desired');
    assert.deepEqual(
      r.caveats?.map((c) => `${c.reason} ${c.field}`),
      ['ForwardingDisabled spec.endpoints[0].networks'],
    );
    assert.match(r.caveats![0]!.message, /net\.ipv4\.ip_forward is 0/);
    assert.ok(actions.some((a) => a.kind === 'link' && a.verb === 'create'));
  });

  test('forwarding on, or no networks behind this node: nothing to say', () => {
    for (const [kernel, tunnel] of [
      [{ ...bareKernel(), ipv4Forwarding: true }, mesh(3, withNetwork)],
      [{ ...bareKernel(), ipv4Forwarding: false }, mesh(3)],
    ] as const) {
      const r = resolveOn(kernel, [tunnel])[0]!;
      assert.ok(r.outcome === 'desired' && r.caveats === undefined, JSON.stringify(r));
    }
  });

  test('point-to-point: the far end reaches networks behind the near one through the link', () => {
    const t = exampleTunnel((x) => (x.spec.endpoints[1]!.networks = ['10.60.0.0/16']));
    const r = resolveOn(bareKernel(), [t])[0]!;
    assert.ok(r.outcome === 'desired');
    assert.deepEqual(
      r.desired.routes.map((x) => `${x.dst} dev ${x.dev}${x.via === undefined ? '' : ` via ${x.via}`}`),
      ['10.60.0.0/16 dev ipiptun', '172.0.0.0/24 dev ipiptun'],
    );
  });

  test('a network that would take the path to a peer underlay address is refused (RouteHarmsUnderlay)', () => {
    const t = mesh(3, (x) => (x.spec.endpoints[1]!.networks = ['192.168.40.4/32']));
    assert.equal(outcomeOf(resolveOn(bareKernel(), [t])[0]), 'error RouteHarmsUnderlay');
  });

  test('a network claimed by two endpoints, or holding an overlay address, is InvalidSpec', () => {
    const twice = mesh(3, (x) => {
      x.spec.endpoints[1]!.networks = ['10.1.0.0/16'];
      x.spec.endpoints[2]!.networks = ['10.1.0.0/16'];
    });
    const overlay = mesh(3, (x) => (x.spec.endpoints[1]!.networks = ['172.0.1.0/24']));
    for (const t of [twice, overlay]) {
      const r = resolveOn(bareKernel(), [t])[0]!;
      assert.equal(outcomeOf(r), 'error InvalidSpec');
      assert.ok(r.outcome === 'error' && r.field?.startsWith('spec.endpoints['), r.outcome);
    }
  });
});

/** A tunnel device on node-a that ipip-operator did not create. */
function foreign(name: string, t: Partial<NonNullable<ObservedLink['tunnel']>>, up = true): ObservedLink {
  return {
    index: 40,
    name,
    kind: 'ipip',
    group: 0,
    up,
    mtu: 1480,
    tunnel: { mode: 'ipip', local: '192.168.40.2', remote: undefined, ttl: 0, underlayDevice: undefined, ...t },
    addresses: [],
  };
}

describe('mesh: conflicts are refused, never programmed', () => {
  const created = (ts: string) => (t: IpipTunnel) => {
    t.metadata.creationTimestamp = ts;
  };

  test('two meshes on one local address: the older keeps it (the kernel would refuse the second link)', () => {
    const older = mesh(3, created('2026-01-01T00:00:00Z'));
    const newer = mesh(3, (t) => {
      created('2026-02-01T00:00:00Z')(t);
      t.metadata.name = 'second';
      t.spec.linkName = 'second';
      t.spec.endpoints.forEach((e, i) => {
        e.overlayAddress = `172.0.2.${2 + i}`;
      });
    });
    const rs = resolveOn(bareKernel(), [newer, older]);
    assert.deepEqual(rs.map(outcomeOf), ['desired', 'error UnderlayPairInUse']);
  });

  test('a point-to-point tunnel to a peer of a mesh on the same local address: the newer of the two is refused', () => {
    const p2p = (ts: string) => exampleTunnel(created(ts));
    for (const [meshAt, p2pAt, want] of [
      ['2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', ['desired', 'error UnderlayPairInUse']],
      ['2026-02-01T00:00:00Z', '2026-01-01T00:00:00Z', ['error UnderlayPairInUse', 'desired']],
    ] as const) {
      const rs = resolveOn(bareKernel(), [p2p(p2pAt), mesh(3, created(meshAt))]);
      assert.deepEqual(
        rs.map((r) => `${r.tunnel} ${outcomeOf(r)}`),
        [`lab ${want[1]}`, `mesh ${want[0]}`],
      );
    }
  });

  test('the mesh wins against a newer point-to-point tunnel already in the kernel: that link goes first', () => {
    const kernel = programmed([exampleTunnel()]);
    const { actions, conflicts } = planOn(kernel, [
      exampleTunnel(created('2026-02-01T00:00:00Z')),
      mesh(3, created('2026-01-01T00:00:00Z')),
    ]);
    assert.deepEqual(conflicts, []);
    assert.equal(ipPlan(actions)[0], 'ip link del dev ipiptun');
  });

  const cases: Array<{ name: string; device: ObservedLink; conflict: boolean }> = [
    {
      name: "a foreign device to a mesh peer (it would take the peer's packets)",
      device: foreign('f0', { remote: '192.168.40.3' }),
      conflict: true,
    },
    {
      name: 'a foreign device to a mesh peer from any local address',
      device: foreign('f0', { local: undefined, remote: '192.168.40.3', underlayDevice: 'eth1' }),
      conflict: true,
    },
    {
      name: 'a foreign any-remote device on the same local address, unbound',
      device: foreign('f0', {}),
      conflict: true,
    },
    {
      name: 'a foreign any-remote device on the same local address, bound elsewhere',
      device: foreign('f0', { underlayDevice: 'eth2' }),
      conflict: true,
    },
    {
      name: 'a foreign unbound point-to-point device from the same local address (the bound mesh link would take its packets)',
      device: foreign('f0', { remote: '10.9.9.9' }),
      conflict: true,
    },
    {
      name: 'a foreign remote-only device not bound to eth1',
      device: foreign('f0', { local: undefined, remote: '10.9.9.9' }),
      conflict: true,
    },
    { name: 'the fallback device tunl0 up', device: foreign('tunl1', { local: undefined }), conflict: true },
    { name: 'the fallback device down', device: foreign('tunl1', { local: undefined }, false), conflict: false },
    {
      name: 'a foreign point-to-point device bound to eth1 to a non-peer (the kernel gives it its own packets first)',
      device: foreign('f0', { remote: '10.9.9.9', underlayDevice: 'eth1' }),
      conflict: false,
    },
    {
      name: 'a foreign device on another local address',
      device: foreign('f0', { local: '10.8.8.8', remote: '192.168.40.3' }),
      conflict: false,
    },
  ];
  for (const c of cases) {
    test(`${c.conflict ? 'refused' : 'not in the way'}: ${c.name}`, () => {
      const kernel = bareKernel();
      kernel.links.push(c.device);
      const { actions, conflicts } = planOn(kernel, [mesh(3)]);
      if (c.conflict) {
        assert.deepEqual(actions, []);
        assert.deepEqual(
          conflicts.map((p) => `${p.tunnel} ${p.reason}`),
          ['mesh UnderlayPairTaken'],
        );
        assert.match(
          conflicts[0]!.message,
          new RegExp(`^${c.device.name}, a ipip link that ipip-operator did not create`),
        );
      } else {
        assert.deepEqual(conflicts, []);
        assert.equal(actions.filter((a) => a.kind === 'route').length, 2);
      }
    });
  }

  test('a prefix of the mesh that another tunnel of this node routes: the older keeps it (RouteInUse)', () => {
    const p2p = exampleTunnel((t) => {
      created('2026-01-01T00:00:00Z')(t);
      t.spec.endpoints[1]!.underlay = { address: '192.168.40.250' };
      t.spec.routes = ['10.30.0.0/24'];
    });
    const rs = resolveOn(bareKernel(), [p2p, meshExample(created('2026-02-01T00:00:00Z'))]);
    assert.deepEqual(rs.map(outcomeOf), ['desired', 'error RouteInUse']);
  });

  test('a foreign route to a network of the mesh: the mesh is refused (RouteTaken), the route left alone', () => {
    const kernel = bareKernel();
    kernel.routes.push({
      dst: '10.30.0.0/24',
      dev: 'eth1',
      gateway: '192.168.40.1',
      protocol: 4,
      metric: 0,
      scope: 0,
      type: 1,
    });
    const { actions, conflicts } = planOn(kernel, [meshExample()]);
    assert.deepEqual(actions, []);
    assert.deepEqual(
      conflicts.map((p) => `${p.reason} ${p.field}`),
      ['RouteTaken spec.endpoints[2].networks[0]'],
    );
  });
});
