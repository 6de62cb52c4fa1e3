// The lab with three nodes, end to end, as `./scripts/lab.sh --nodes 3` builds it
// (test/harness/full-lab.ts): node-a, node-b and node-c on real Linux kernels with strict
// rp_filter, node-c forwarding for a LAN 10.30.0.0/24 behind it (a network namespace with
// one host), the chart, an agent per node. `kubectl apply -f examples/mesh.yaml` makes a
// full mesh; then node-c leaves it with a `kubectl apply` of the manifest without it.
// Observed only as a user sees it: the READY column of `kubectl get ipt`, ping, tcpdump
// and `ip` in the nodes (not status.endpoints, whose shape is not promised).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { MESH_LAN, startFullLab } from '../harness/full-lab.ts';
import type { FullLab } from '../harness/full-lab.ts';
import { link as linkOf, ping as pingFrom, startIpipCapture } from '../harness/probes.ts';
import { MESH_EXAMPLE, meshExample } from '../harness/repo.ts';
import { eventually as waitUntil, StartedByTest } from '../harness/support.ts';
import { namespaceShell } from '../harness/uml.ts';

const NODES = ['node-a', 'node-b', 'node-c'] as const;
type Node = (typeof NODES)[number];
const ADDRESS: Record<Node, string> = { 'node-a': '192.168.40.2', 'node-b': '192.168.40.3', 'node-c': '192.168.40.4' };
const OVERLAY: Record<Node, string> = { 'node-a': '172.0.1.2', 'node-b': '172.0.1.3', 'node-c': '172.0.1.4' };
const LINK = 'ipipmesh';
const TUNNEL = 'mesh';

describe('the lab with three nodes: a full mesh with kubectl, every pair pings, an endpoint leaves', {
  timeout: 600_000,
}, () => {
  const started = new StartedByTest<FullLab>('lab');
  const L = (): FullLab => started.get();

  after(async () => {
    await started.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => L().kubectl(args, input);
  const apply = (t: IpipTunnel): Promise<string> => kubectl(['apply', '-f', '-'], JSON.stringify(t));
  const eventually = <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> =>
    waitUntil(what, check, { timeoutMs, context: () => L().agentLogTails() });
  const sh = (node: Node, cmd: string) => L().cluster.guest(node).sh(cmd);
  const ok = (node: Node, cmd: string) => L().cluster.guest(node).ok(cmd);
  const link = (node: Node) => linkOf(L().cluster.guest(node), LINK);
  const ping = (from: Node, to: string, count = 2) => pingFrom(L().cluster.guest(from), to, count);
  /** The LAN host behind node-c: the namespace `lan` in node-c's guest. */
  const lanHost = () => namespaceShell(L().cluster.guest(MESH_LAN.node), MESH_LAN.netns);

  /** `kubectl get ipt mesh` as printed, and its READY column (status.readySummary). */
  async function getIpt(): Promise<{ printed: string; ready: string | undefined }> {
    const printed = await kubectl(['get', 'ipt', TUNNEL]);
    const row = printed.split('\n').find((line) => line.startsWith(`${TUNNEL} `));
    return { printed, ready: row?.trim().split(/\s+/)[2] };
  }
  async function waitReady(want: string): Promise<string> {
    const { printed } = await eventually(
      `kubectl get ipt ${TUNNEL}: READY ${want}`,
      async () => {
        const r = await getIpt();
        return r.ready === want ? r : undefined;
      },
      90_000,
    );
    return printed;
  }

  /** Every route of the node other than the kernel's own, as "DST via GATEWAY dev DEV" (or "DST dev DEV"), sorted. */
  async function routes(node: Node): Promise<string[]> {
    const all = JSON.parse(await ok(node, 'ip -j route show')) as Array<{
      dst: string;
      gateway?: string;
      dev: string;
      protocol?: string;
    }>;
    return all
      .filter((r) => r.protocol !== 'kernel')
      .map((r) => `${r.dst}${r.gateway === undefined ? '' : ` via ${r.gateway}`} dev ${r.dev}`)
      .sort();
  }
  /** The IPv4 addresses on the node's mesh link, as "ADDRESS/PREFIX". */
  async function meshAddresses(node: Node): Promise<string[]> {
    const r = await sh(node, `ip -j -4 addr show dev ${LINK}`);
    if (r.code !== 0) return [];
    const [dev] = JSON.parse(r.stdout) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
    return (dev?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  }
  /** The mesh's routes on a node: to each peer's overlay address and network, via its underlay, onlink. */
  function meshRoutes(node: Node): string[] {
    const peers = NODES.filter((p) => p !== node);
    return peers
      .flatMap((p) => [
        `${OVERLAY[p]} via ${ADDRESS[p]} dev ${LINK}`,
        ...(p === MESH_LAN.node ? [`${MESH_LAN.network} via ${ADDRESS[p]} dev ${LINK}`] : []),
      ])
      .sort();
  }
  /** The routes each node had before the mesh (the lab's own: none but the kernel's). */
  const routesBefore: Partial<Record<Node, string[]>> = {};

  test('lab up with three nodes: strict rp_filter everywhere, node-c forwards, its LAN host answers it', async () => {
    await started.start(() => startFullLab(undefined, { nodes: 3 }));
    assert.deepEqual(L().nodes, [...NODES]);
    for (const node of NODES) {
      assert.equal(
        (await ok(node, 'sysctl -n net.ipv4.conf.all.rp_filter')).trim(),
        '1',
        `strict rp_filter on ${node}`,
      );
      assert.equal((await ok(node, 'ip -4 -o addr show dev eth1')).match(/inet (\S+)\//)?.[1], ADDRESS[node]);
      routesBefore[node] = await routes(node);
    }
    assert.equal((await ok('node-c', 'sysctl -n net.ipv4.ip_forward')).trim(), '1', 'node-c forwards');
    assert.ok(await pingFrom(lanHost(), MESH_LAN.gateway, 1), 'the LAN host reaches node-c (its gateway)');
    assert.deepEqual(await L().prometheus.targetHealth(), { 'node-a': 'up', 'node-b': 'up', 'node-c': 'up' });
  });

  test('kubectl apply -f examples/mesh.yaml -> READY 3/3; each node: one any-remote link, its /32, a route per peer', async () => {
    await kubectl(['apply', '-f', MESH_EXAMPLE]);
    assert.match(await waitReady('3/3'), /^mesh\s+ipip\s+3\/3\s/m);
    for (const node of NODES) {
      const l = await link(node);
      assert.equal(l?.linkinfo?.info_kind, 'ipip', `${node}: an ipip link ${LINK}`);
      assert.equal(l?.linkinfo?.info_data?.local, ADDRESS[node], `${node}: local is its underlay`);
      assert.equal(l?.linkinfo?.info_data?.remote, 'any', `${node}: it takes IPIP from any peer`);
      assert.ok(l?.flags?.includes('UP'), `${node}: the link is up`);
      assert.equal(l?.ifalias, `ipip-operator/${TUNNEL}`);
      assert.deepEqual(await meshAddresses(node), [`${OVERLAY[node]}/32`], `${node}: its overlay address`);
      assert.deepEqual(
        await routes(node),
        [...routesBefore[node]!, ...meshRoutes(node)].sort(),
        `${node}: a route per peer (and node-c's LAN) via the peer's underlay, and nothing else added`,
      );
    }
  });

  test('every pair pings over the overlay with strict rp_filter; node-a and node-b reach the LAN host behind node-c', async () => {
    for (const from of NODES) {
      for (const to of NODES) {
        if (to !== from) assert.ok(await ping(from, OVERLAY[to]), `${from} pings ${to} (${OVERLAY[to]})`);
      }
    }
    // The LAN: encapsulated from node-a to node-c (seen on node-c's eth1), forwarded there.
    const capture = await startIpipCapture(L().cluster.guest(MESH_LAN.node));
    assert.ok(await ping('node-a', MESH_LAN.host, 3), 'node-a pings the LAN host through node-c');
    const out = (await capture.done).stdout;
    assert.match(out, /proto IPIP \(4\)|ipip-proto-4/, out);
    assert.match(
      out,
      /192\.168\.40\.2 > 192\.168\.40\.4: IP .*\n\s+172\.0\.1\.2 > 10\.30\.0\.10: ICMP echo request/,
      out,
    );
    assert.ok(await ping('node-b', MESH_LAN.host), 'node-b pings the LAN host through node-c');
    assert.ok(await pingFrom(lanHost(), OVERLAY['node-a'], 2), 'the LAN host pings node-a back through node-c');
  });

  test('kubectl apply without node-c -> its routes gone on node-a and node-b, its link gone on node-c, READY 2/2', async () => {
    // What is to go, there before the apply.
    for (const node of ['node-a', 'node-b'] as const) {
      const now = await routes(node);
      assert.ok(
        now.includes(`${OVERLAY['node-c']} via ${ADDRESS['node-c']} dev ${LINK}`),
        `${node}: ${now.join('; ')}`,
      );
      assert.ok(now.includes(`${MESH_LAN.network} via ${ADDRESS['node-c']} dev ${LINK}`), `${node}: ${now.join('; ')}`);
    }
    assert.ok((await link('node-c')) !== undefined, 'node-c has its mesh link');

    await apply(
      meshExample((t) => {
        t.spec.endpoints = t.spec.endpoints.filter((e) => e.nodeName !== 'node-c');
      }),
    );
    assert.match(await waitReady('2/2'), /^mesh\s+ipip\s+2\/2\s/m);

    await eventually('node-c: its mesh link gone', async () => (await link('node-c')) === undefined);
    const ipipLinks = JSON.parse(await ok('node-c', 'ip -j -d link show type ipip')) as Array<{
      ifname: string;
      ifalias?: string;
    }>;
    assert.deepEqual(
      ipipLinks.filter((l) => l.ifalias?.startsWith('ipip-operator/') === true).map((l) => l.ifname),
      [],
      'no link of the agent left on node-c',
    );
    assert.deepEqual(await routes('node-c'), routesBefore['node-c'], 'node-c: its routes as before the mesh');
    assert.doesNotMatch(await ok('node-c', 'ip -4 -o addr show'), /172\.0\.1\.4/, 'node-c: its overlay address gone');

    for (const node of ['node-a', 'node-b'] as const) {
      const gone = await eventually(`${node}: no route to node-c or its LAN`, async () => {
        const now = await routes(node);
        return now.every((r) => !r.startsWith(`${OVERLAY['node-c']} `) && !r.startsWith(`${MESH_LAN.network} `))
          ? now
          : undefined;
      });
      assert.ok(
        gone.every((r) => !r.includes(ADDRESS['node-c'])),
        `${node}: nothing routed via node-c: ${gone.join('; ')}`,
      );
      assert.ok((await link(node))?.flags?.includes('UP'), `${node}: its link of the tunnel is still up`);
    }
    assert.ok(await ping('node-a', OVERLAY['node-b']), 'node-a still pings node-b');
    assert.ok(await ping('node-b', OVERLAY['node-a']), 'node-b still pings node-a');
  });

  test('kubectl delete the tunnel -> nothing of it left on any node', async () => {
    await kubectl(['delete', 'ipiptunnel', TUNNEL, '--wait=true']);
    for (const node of NODES) {
      await eventually(`${LINK} gone from ${node}`, async () => (await link(node)) === undefined);
      assert.deepEqual(await routes(node), routesBefore[node], `${node}: its routes as before the mesh`);
    }
  });
});
