// A full mesh on a real kernel (User-Mode Linux, the lab kernel), the standalone agent on
// each host: node-a, node-b, node-c and later node-d are network namespaces on one bridge
// (192.168.40.0/24), strict rp_filter on every one, and a LAN 10.30.0.0/24 behind node-c
// (one host, in namespace lan-c, that routes the overlay back through node-c, which
// forwards). examples/mesh.yaml comes up and every pair pings over the overlay; the LAN
// is reached through node-c's networks; IPIP goes between the underlay addresses; a
// second pass changes nothing; a foreign device to a peer is refused; an endpoint joins
// and one leaves, touching only their own routes and links; networks behind a node that
// does not forward are programmed and reported; someone else's tunnel and routes are
// never touched.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { foreignTunnelCommands } from '../harness/foreign.ts';
import { link as linkOf, ping as pingFrom, startIpipCapture } from '../harness/probes.ts';
import { meshExample } from '../harness/repo.ts';
import { StartedByTest } from '../harness/support.ts';
import {
  agentOnceOnEach,
  assertSaid,
  hostNetns,
  hostShell,
  setSysctls,
  setUpHosts,
  setUpLan,
} from '../harness/two-hosts.ts';
import type { Lan, OnceResult as Once } from '../harness/two-hosts.ts';
import { Guest, namespaceShell, shOk } from '../harness/uml.ts';

const UNDERLAY = {
  'node-a': '192.168.40.2',
  'node-b': '192.168.40.3',
  'node-c': '192.168.40.4',
  'node-d': '192.168.40.5',
} as const;
type Node = keyof typeof UNDERLAY;
const NODES = Object.keys(UNDERLAY) as Node[];
const OVERLAY: Record<Node, string> = {
  'node-a': '172.0.1.2',
  'node-b': '172.0.1.3',
  'node-c': '172.0.1.4',
  'node-d': '172.0.1.5',
};
const LINK = 'ipipmesh';
/** node-c's networks in examples/mesh.yaml, and the one host on it. */
const NETWORK = '10.30.0.0/24';
const LAN_HOST = '10.30.0.5';
const LAN: Lan = {
  node: 'node-c',
  netns: 'lan-c',
  router: '10.30.0.1/24',
  address: `${LAN_HOST}/24`,
  routes: ['172.0.1.0/24'],
};
const STRICT_RP_FILTER = ['net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1'];

/** examples/mesh.yaml with these endpoints; node-d is written like the others. */
function mesh(nodes: readonly Node[]): IpipTunnel {
  return meshExample((t) => {
    const given = new Map(t.spec.endpoints.map((e) => [e.nodeName, e]));
    t.spec.endpoints = nodes.map(
      (n) =>
        given.get(n) ?? {
          nodeName: n,
          underlay: { address: UNDERLAY[n], interface: 'eth1' },
          overlayAddress: OVERLAY[n],
        },
    );
  });
}

const started = new StartedByTest<Guest>('lab guest');
const guest = () => started.get();
const shell = (node: Node) => hostShell(guest(), node);
const link = (node: Node) => linkOf(shell(node), LINK);
const ping = (from: Node, to: string) => pingFrom(shell(from), to);

/** The hosts, the LAN behind node-c, strict rp_filter everywhere, and what is not the agent's on node-a and node-c. */
async function startLab(): Promise<Guest> {
  const g = await Guest.boot({ memMB: 1024 });
  try {
    await setUpHosts(g, UNDERLAY);
    await setUpLan(g, LAN);
    for (const ns of [...NODES.map(hostNetns), LAN.netns]) await setSysctls(g, ns, STRICT_RP_FILTER);
    await setSysctls(g, hostNetns('node-c'), ['net.ipv4.ip_forward=1']);
    await g.ok(
      [
        // Someone else's ipip tunnel on node-a, on a second address of its underlay: it
        // does not meet the mesh (the kernel matches the local address first).
        'ip -n host-a addr add 192.168.40.12/24 dev eth1',
        ...foreignTunnelCommands('ip -n host-a', { local: '192.168.40.12', remote: '192.168.40.7' }),
        // A routing daemon's route on node-a, a static one on node-c.
        'ip -n host-a route add 10.9.0.0/16 via 192.168.40.3 dev eth1 proto bird metric 50',
        'ip -n host-c route add 10.40.0.0/16 via 192.168.40.2 dev eth1 proto static',
      ].join(' && '),
    );
  } catch (error) {
    await g.stop();
    throw error;
  }
  return g;
}

/** `agent --once` on each of these nodes at the same time, each with these tunnels. */
const onEach = (nodes: readonly Node[], tunnels: IpipTunnel[]) => agentOnceOnEach(guest(), nodes, tunnels);

/** The agent ran (its summary counts every kind of object) and changed nothing. */
function assertRanAndChangedNothing(runs: Map<Node, Once>): void {
  for (const [n, r] of runs) {
    assert.equal(r.code, 0, `${n}: ${r.stderr}`);
    assert.deepEqual(
      Object.keys(r.summary.changes).sort(),
      ['address', 'link', 'route', 'rules'],
      `${n} reported every kind`,
    );
    for (const counts of Object.values(r.summary.changes))
      assert.deepEqual(counts, { create: 0, update: 0, delete: 0 }, n);
  }
}

/** The agent's routes on a node (protocol 203), as `ip route` shows them. */
async function meshRoutes(node: Node): Promise<string[]> {
  const routes = JSON.parse(await shOk(shell(node), 'ip -j route show proto 203')) as Array<{
    dst: string;
    gateway?: string;
    dev: string;
    flags?: string[];
  }>;
  return routes
    .map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.dev}${r.flags?.includes('onlink') === true ? ' onlink' : ''}`)
    .sort();
}

/** The routes a node of a mesh of these nodes must have: each peer's overlay address, and node-c's network, via the peer's underlay. */
function routesOf(node: Node, nodes: readonly Node[]): string[] {
  return nodes
    .filter((p) => p !== node)
    .flatMap((p) =>
      [OVERLAY[p], ...(p === 'node-c' ? [NETWORK] : [])].map((dst) => `${dst} via ${UNDERLAY[p]} dev ${LINK} onlink`),
    )
    .sort();
}

/** Pings every ordered pair of these nodes over the overlay (one at a time: a loaded guest is slow to answer many). */
async function assertEveryPairPings(nodes: readonly Node[]): Promise<void> {
  const pairs = nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => [a, b] as const));
  const results: string[] = [];
  for (const [a, b] of pairs)
    results.push(`${a} -> ${OVERLAY[b]} (${b}): ${(await ping(a, OVERLAY[b])) ? 'answers' : 'no answer'}`);
  assert.deepEqual(
    results,
    pairs.map(([a, b]) => `${a} -> ${OVERLAY[b]} (${b}): answers`),
  );
}

/** The mesh link's ifindex and packet counters on a node. */
async function counters(node: Node): Promise<{ ifindex: number; rx: number; tx: number }> {
  const l = await link(node);
  assert.ok(l !== undefined, `${node} has ${LINK}`);
  return { ifindex: l.ifindex, rx: l.stats64.rx.packets, tx: l.stats64.tx.packets };
}

/** A node's links (no counters), IPv4 addresses and routes of every table, as text. */
const hostState = (node: Node) => {
  const ip = `ip -n ${hostNetns(node)}`;
  return guest().ok(`${ip} -d link show; ${ip} -4 addr show; ${ip} route show table all`);
};

/** Everything on node-a and node-c that is not the agent's, as text to compare. */
const foreignSnapshot = () =>
  guest().ok(
    [
      'ip -n host-a -d link show dev foreign0',
      'ip -n host-a -4 addr show dev foreign0',
      'ip -n host-a -4 addr show dev eth1',
      'ip -n host-a route show 10.9.0.0/16',
      'ip -n host-a route show 10.99.0.0/16',
      ...NODES.map((n) => `ip -n ${hostNetns(n)} -d link show dev tunl0`),
      'ip -n host-c route show 10.40.0.0/16',
      'ip -n host-c -4 addr show dev lan0',
    ].join('; '),
  );

describe('a full mesh on a real kernel, the standalone agent on each host', { timeout: 600_000 }, () => {
  after(async () => {
    await started.started?.stop();
  });

  let foreignBefore: string;
  const ifindex = new Map<Node, number>();
  const THREE: Node[] = ['node-a', 'node-b', 'node-c'];

  test('examples/mesh.yaml on three hosts: one any-remote link each, its /32, a route per peer; every pair pings, strict rp_filter on', async () => {
    await started.start(startLab);
    foreignBefore = await foreignSnapshot();
    assert.deepEqual(mesh(THREE), meshExample(), 'the manifest is the example');
    const runs = await onEach(THREE, [meshExample()]);
    assertSaid(runs, {
      // rules: each node's part of the agent's nftables table (the peer filter; node-c's masquerade too).
      'node-a': 'exit 0 link/create=1 address/create=1 route/create=3 rules/create=1',
      'node-b': 'exit 0 link/create=1 address/create=1 route/create=3 rules/create=1',
      'node-c': 'exit 0 link/create=1 address/create=1 route/create=2 rules/create=1',
    });
    for (const node of THREE) {
      const l = (await link(node))!;
      assert.deepEqual(
        {
          kind: l.linkinfo.info_kind,
          local: l.linkinfo.info_data.local,
          remote: l.linkinfo.info_data.remote,
          dev: l.link,
          ttl: l.linkinfo.info_data.ttl,
          mtu: l.mtu,
          up: l.flags.includes('UP'),
          alias: l.ifalias,
          group: l.group,
        },
        {
          kind: 'ipip',
          local: UNDERLAY[node],
          remote: 'any',
          dev: 'eth1',
          ttl: 64,
          mtu: 1480,
          up: true,
          alias: 'ipip-operator/mesh',
          group: '203',
        },
        node,
      );
      ifindex.set(node, l.ifindex);
      assert.match(
        await shOk(shell(node), `ip -4 -o addr show dev ${LINK}`),
        new RegExp(`inet ${OVERLAY[node].replaceAll('.', '\\.')}/32 scope global ${LINK}`),
        `${node}: its overlay address as a /32, no peer`,
      );
      assert.deepEqual(
        await meshRoutes(node),
        routesOf(node, THREE),
        `${node}: a route per peer, onlink via its underlay`,
      );
      // Strict everywhere: the kernel uses the larger of all and the device's value.
      assert.equal(
        (await shOk(shell(node), `sysctl -n net.ipv4.conf.all.rp_filter net.ipv4.conf.${LINK}.rp_filter`)).trim(),
        '1\n1',
        `${node}: strict rp_filter`,
      );
    }
    await assertEveryPairPings(THREE);
    assert.equal(await foreignSnapshot(), foreignBefore, "someone else's tunnel and routes are untouched");
  });

  test("the LAN behind node-c is reached from node-a and node-b through node-c's networks", async () => {
    assert.equal((await shOk(shell('node-c'), 'sysctl -n net.ipv4.ip_forward')).trim(), '1');
    for (const from of ['node-a', 'node-b'] as const) {
      assert.match(
        await shOk(shell(from), `ip route get ${LAN_HOST}`),
        new RegExp(`${LAN_HOST} via 192\\.168\\.40\\.4 dev ${LINK} src ${OVERLAY[from].replaceAll('.', '\\.')}`),
      );
      assert.ok(await ping(from, LAN_HOST), `${from} -> ${LAN_HOST} answers`);
    }
    assert.ok(
      await pingFrom(namespaceShell(guest(), LAN.netns), OVERLAY['node-a']),
      'the LAN host reaches node-a through node-c',
    );
  });

  test('IPIP (IP protocol 4) goes between the underlay addresses, networks included', async () => {
    const atC = await startIpipCapture(shell('node-c'));
    assert.ok(await ping('node-a', OVERLAY['node-c']));
    const c = (await atC.done).stdout;
    assert.match(c, /proto IPIP \(4\)/, c);
    assert.match(c, /192\.168\.40\.2 > 192\.168\.40\.4: .*\n?.*172\.0\.1\.2 > 172\.0\.1\.4: ICMP echo request/, c);
    assert.match(c, /192\.168\.40\.4 > 192\.168\.40\.2: .*\n?.*172\.0\.1\.4 > 172\.0\.1\.2: ICMP echo reply/, c);

    const atA = await startIpipCapture(shell('node-a'));
    assert.ok(await ping('node-a', LAN_HOST));
    const a = (await atA.done).stdout;
    assert.match(a, /192\.168\.40\.2 > 192\.168\.40\.4: .*\n?.*172\.0\.1\.2 > 10\.30\.0\.5: ICMP echo request/, a);
    assert.match(a, /192\.168\.40\.4 > 192\.168\.40\.2: .*\n?.*10\.30\.0\.5 > 172\.0\.1\.2: ICMP echo reply/, a);
  });

  test('a second pass on every host changes nothing', async () => {
    const routesBefore = await Promise.all(THREE.map(meshRoutes));
    assertRanAndChangedNothing(await onEach(THREE, [meshExample()]));
    for (const node of THREE) assert.equal((await link(node))!.ifindex, ifindex.get(node), `${node}: the same link`);
    assert.deepEqual(await Promise.all(THREE.map(meshRoutes)), routesBefore);
  });

  test('a foreign device from node-a to a peer is refused (UnderlayPairTaken): nothing of the tunnel changes', async () => {
    // To node-d's underlay address, not yet a peer: the running mesh does not meet it.
    await guest().ok(
      'ip -n host-a link add foreignp type ipip local 192.168.40.2 remote 192.168.40.5 && ip -n host-a link set foreignp up',
    );
    const before = await hostState('node-a');
    // node-d joining would add its route here: the refusal keeps it out.
    const runs = await onEach(['node-a'], [mesh(NODES)]);
    assertSaid(runs, { 'node-a': 'exit 2 !mesh:UnderlayPairTaken' });
    assert.match(
      runs.get('node-a')!.summary.errors[0]!.message,
      /^foreignp, .* from 192\.168\.40\.2 to 192\.168\.40\.5, a peer of the mesh;/,
    );
    assert.equal(await hostState('node-a'), before, "node-a's links, addresses and routes are as they were");
    await assertEveryPairPings(THREE);
    await guest().ok('ip -n host-a link del foreignp');
  });

  test("a fourth endpoint: the others keep their links and counters and get only its route; it gets everyone's", async () => {
    const before = new Map(await Promise.all(THREE.map(async (n) => [n, await counters(n)] as const)));
    const runs = await onEach(NODES, [mesh(NODES)]);
    assertSaid(runs, {
      // Every filter lets node-d in; node-c masquerades for it too.
      'node-a': 'exit 0 route/create=1 rules/update=1',
      'node-b': 'exit 0 route/create=1 rules/update=1',
      'node-c': 'exit 0 route/create=1 rules/update=1',
      'node-d': 'exit 0 link/create=1 address/create=1 route/create=4 rules/create=1',
    });
    for (const node of THREE) {
      const now = await counters(node);
      const was = before.get(node)!;
      assert.equal(now.ifindex, was.ifindex, `${node}: the same link`);
      assert.ok(now.rx >= was.rx && now.tx >= was.tx, `${node}: counters kept (${JSON.stringify({ was, now })})`);
    }
    for (const node of NODES) assert.deepEqual(await meshRoutes(node), routesOf(node, NODES), node);
    ifindex.set('node-d', (await link('node-d'))!.ifindex);
    await assertEveryPairPings(NODES);
    assert.ok(await ping('node-d', LAN_HOST), 'node-d reaches the LAN through node-c');
    for (const node of THREE) {
      const now = await counters(node);
      const was = before.get(node)!;
      assert.ok(
        now.rx > was.rx && now.tx > was.tx,
        `${node}: the same counters, grown (${JSON.stringify({ was, now })})`,
      );
    }
    assert.equal(await foreignSnapshot(), foreignBefore);
  });

  test('an endpoint leaves: the others lose only its route, it loses its link; the rest still ping', async () => {
    const rest: Node[] = ['node-a', 'node-c', 'node-d'];
    const runs = await onEach(NODES, [mesh(rest)]);
    assertSaid(runs, {
      'node-a': 'exit 0 route/delete=1 rules/update=1',
      'node-b': 'exit 0 link/delete=1 rules/delete=1',
      'node-c': 'exit 0 route/delete=1 rules/update=1',
      'node-d': 'exit 0 route/delete=1 rules/update=1',
    });
    for (const node of rest) {
      assert.deepEqual(await meshRoutes(node), routesOf(node, rest), node);
      assert.equal((await link(node))!.ifindex, ifindex.get(node), `${node}: the same link`);
    }
    assert.equal(await link('node-b'), undefined, "node-b's link is gone");
    assert.deepEqual(await meshRoutes('node-b'), [], 'and its routes with it');
    assert.equal((await shOk(shell('node-b'), 'ip -4 -o addr show')).includes(OVERLAY['node-b']), false);
    await assertEveryPairPings(rest);
    assert.ok(await ping('node-a', LAN_HOST));
    assert.equal(await foreignSnapshot(), foreignBefore);
  });

  test('node-c not forwarding: the mesh is programmed all the same and ForwardingDisabled reported (exit 2)', async () => {
    const rest: Node[] = ['node-a', 'node-c', 'node-d'];
    await setSysctls(guest(), hostNetns('node-c'), ['net.ipv4.ip_forward=0']);
    // As after a reboot: the kernel has none of the agent's objects.
    await guest().ok(`ip -n host-c link del ${LINK}`);
    const off = await onEach(['node-c'], [mesh(rest)]);
    assertSaid(off, { 'node-c': 'exit 2 !mesh:ForwardingDisabled link/create=1 address/create=1 route/create=2' });
    const problem = off.get('node-c')!.summary.errors[0]!;
    assert.match(problem.message, /carries 10\.30\.0\.0\/24 .*net\.ipv4\.ip_forward is 0/);
    assert.deepEqual(await meshRoutes('node-c'), routesOf('node-c', rest));
    await assertEveryPairPings(rest);
    assert.equal(await ping('node-a', LAN_HOST), false, 'what it said: the LAN is not reached');

    await setSysctls(guest(), hostNetns('node-c'), ['net.ipv4.ip_forward=1']);
    const on = await onEach(['node-c'], [mesh(rest)]);
    assertRanAndChangedNothing(on);
    assert.deepEqual(on.get('node-c')!.summary.errors, []);
    assert.ok(await ping('node-a', LAN_HOST), 'forwarding on: the LAN is reached');
  });

  test("removing the mesh removes every link and route of the agent's, and nothing else", async () => {
    const runs = await onEach(NODES, []);
    assertSaid(runs, {
      'node-a': 'exit 0 link/delete=1 rules/delete=1',
      'node-b': 'exit 0',
      'node-c': 'exit 0 link/delete=1 rules/delete=1',
      'node-d': 'exit 0 link/delete=1 rules/delete=1',
    });
    for (const node of NODES) {
      assert.equal(await link(node), undefined, `${node}: no ${LINK}`);
      assert.deepEqual(await meshRoutes(node), [], `${node}: no route of the agent's`);
    }
    assert.equal(
      await foreignSnapshot(),
      foreignBefore,
      "someone else's tunnel and routes, tunl0 and the LAN are untouched",
    );
  });
});
