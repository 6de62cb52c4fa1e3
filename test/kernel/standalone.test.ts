// The agent's real code in standalone mode on a real kernel (User-Mode Linux, the lab
// kernel): two network namespaces joined by a veth are the two hosts of
// examples/tunnel.yaml.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import type { IpipTunnel } from '../../src/api/types.ts';
import { foreignTunnelCommands } from '../harness/foreign.ts';
import { link as linkOf, ping as pingFrom, routes as routesOf, startIpipCapture } from '../harness/probes.ts';
import { exampleTunnel as example } from '../harness/repo.ts';
import { eventually } from '../harness/support.ts';
import {
  agentCommand,
  agentOnce as agentOnceIn,
  backgroundAgentReport,
  changed,
  HOSTS,
  hostShell,
  setUpTwoHosts,
  startBackgroundAgent,
  stopBackgroundAgent,
  writeManifest as writeManifestIn,
} from '../harness/two-hosts.ts';
import type { LabNode as Node, OnceResult as Once } from '../harness/two-hosts.ts';
import { Guest } from '../harness/uml.ts';

let guest: Guest;

const agentOnce = (node: Node, tunnels: IpipTunnel[]) => agentOnceIn(guest, node, tunnels);

async function bothOnce(tunnels: IpipTunnel[]): Promise<[Once, Once]> {
  return [await agentOnce('node-a', tunnels), await agentOnce('node-b', tunnels)];
}

// The readers of probes.ts, in a node's host namespace.
const link = (node: Node, name: string) => linkOf(hostShell(guest, node), name);
const routes = (node: Node) => routesOf(hostShell(guest, node));
const ping = (from: Node, to: string) => pingFrom(hostShell(guest, from), to);

/** Everything in a namespace the operator must not touch, as text to compare. */
async function foreignSnapshot(node: Node): Promise<string> {
  const ns = HOSTS[node];
  return guest.ok(
    `ip -n ${ns} -d link show dev foreign0; ip -n ${ns} -d link show dev tunl0; ip -n ${ns} addr ` +
      `show dev foreign0; ip -n ${ns} route show 10.9.0.0/16; ip -n ${ns} route show 10.99.0.0/16`,
  );
}

describe('standalone agent on a real kernel', { timeout: 600_000 }, () => {
  before(async () => {
    guest = await Guest.boot();
    await setUpTwoHosts(guest);
    await guest.ok(
      [
        // Someone else's tunnel, address and routes on node-a: never to be touched.
        ...foreignTunnelCommands('ip -n host-a'),
        'ip -n host-a route add 10.9.0.0/16 via 192.168.40.3 dev eth1',
      ].join(' && '),
    );
  });
  after(async () => {
    await guest?.stop();
  });

  let foreignBefore: string;
  let ifindex: number;

  test('the example tunnel comes up: links, addresses, routes, ping, ipip-proto-4 on the underlay', async () => {
    foreignBefore = await foreignSnapshot('node-a');
    const [a, b] = await bothOnce([example()]);
    for (const once of [a, b]) {
      assert.equal(once.code, 0, once.stderr);
      assert.deepEqual(once.summary.errors, []);
      assert.deepEqual(changed(once), ['link/create=1', 'address/create=1', 'route/create=1']);
    }
    const l = (await link('node-a', 'ipiptun'))!;
    assert.equal(l.linkinfo.info_kind, 'ipip');
    assert.deepEqual(
      [l.linkinfo.info_data.local, l.linkinfo.info_data.remote, l.linkinfo.info_data.ttl, l.link],
      ['192.168.40.2', '192.168.40.3', 64, 'eth1'],
    );
    assert.equal(l.ifalias, 'ipip-operator/lab');
    assert.ok(l.flags.includes('UP'));
    assert.equal(l.mtu, 1480, 'MTU is the underlay 1500 minus 20');
    ifindex = l.ifindex;
    assert.match(await guest.ok('ip -n host-a addr show dev ipiptun'), /inet 172\.0\.0\.2 peer 172\.0\.0\.3\/32/);
    assert.match(await routes('node-a'), /172\.0\.0\.0\/24 dev ipiptun proto 203/);
    assert.match(await routes('node-b'), /172\.0\.0\.0\/24 dev ipiptun proto 203/);

    // Capture on node-b's underlay while node-a pings node-b's overlay address.
    const capture = await startIpipCapture(hostShell(guest, 'node-b'));
    assert.ok(await ping('node-a', '172.0.0.3'), 'ping 172.0.0.3 from node-a answers');
    assert.ok(await ping('node-b', '172.0.0.2'), 'ping 172.0.0.2 from node-b answers');
    const out = (await capture.done).stdout;
    assert.match(out, /ttl 64, .*proto IPIP \(4\)/, out);
    assert.match(out, /192\.168\.40\.2 > 192\.168\.40\.3: .*\n?.*172\.0\.0\.2 > 172\.0\.0\.3: ICMP echo request/, out);
  });

  test('a second reconcile makes zero changes', async () => {
    const [a, b] = await bothOnce([example()]);
    for (const once of [a, b]) {
      assert.equal(once.code, 0);
      assert.deepEqual(changed(once), []);
      for (const counts of Object.values(once.summary.changes))
        assert.deepEqual(counts, { create: 0, update: 0, delete: 0 });
    }
    assert.equal((await link('node-a', 'ipiptun'))!.ifindex, ifindex, 'the link was not recreated');
  });

  test('changing ttl changes only the link, in place', async () => {
    const t = example();
    t.spec.ttl = 32;
    const [a, b] = await bothOnce([t]);
    assert.deepEqual(changed(a), ['link/update=1']);
    assert.deepEqual(changed(b), ['link/update=1']);
    const l = (await link('node-a', 'ipiptun'))!;
    assert.equal(l.linkinfo.info_data.ttl, 32);
    assert.equal(l.ifindex, ifindex);
    assert.ok(await ping('node-a', '172.0.0.3'));
  });

  test('changing the remote address changes only the link, in place', async () => {
    await guest.ok('ip -n host-b addr add 192.168.40.4/24 dev eth1');
    const t = example();
    t.spec.ttl = 32;
    t.spec.endpoints[1]!.underlay!.address = '192.168.40.4';
    const [a, b] = await bothOnce([t]);
    assert.deepEqual(changed(a), ['link/update=1'], 'node-a: new remote');
    assert.deepEqual(changed(b), ['link/update=1'], 'node-b: new local');
    assert.equal((await link('node-a', 'ipiptun'))!.linkinfo.info_data.remote, '192.168.40.4');
    assert.equal((await link('node-b', 'ipiptun'))!.linkinfo.info_data.local, '192.168.40.4');
    assert.equal((await link('node-a', 'ipiptun'))!.ifindex, ifindex);
    assert.ok(await ping('node-a', '172.0.0.3'));
  });

  test('MTU follows the underlay (minus 20) unless set', async () => {
    await guest.ok('ip -n host-a link set eth1 mtu 1400');
    assert.deepEqual(
      changed(await agentOnce('node-a', [example()])).filter((c) => c.startsWith('link')),
      ['link/update=1'],
    );
    assert.equal((await link('node-a', 'ipiptun'))!.mtu, 1380);
    const t = example();
    t.spec.mtu = 1300;
    assert.deepEqual(changed(await agentOnce('node-a', [t])), ['link/update=1']);
    assert.equal((await link('node-a', 'ipiptun'))!.mtu, 1300);
    await guest.ok('ip -n host-a link set eth1 mtu 1500');
    await agentOnce('node-a', [example()]);
    assert.equal((await link('node-a', 'ipiptun'))!.mtu, 1480);
    await agentOnce('node-b', [example()]);
    assert.ok(await ping('node-a', '172.0.0.3'));
  });

  test('a running agent repairs a deleted route and a link set down by hand', async () => {
    // Its own manifest: the --once runs of the other tests write node-a.yaml, which a
    // running agent would follow.
    const manifest = await writeManifestIn(guest, 'background-node-a', [example()]);
    const agent = await startBackgroundAgent(guest, 'node-a', `--manifest ${manifest} --log-format json`);
    const agentLog = () => guest.ok(`cat ${agent.log}`);
    const waitFor = (what: string, check: () => Promise<boolean>, timeoutMs = 20_000) =>
      eventually(what, check, { timeoutMs, intervalMs: 200, context: () => backgroundAgentReport(guest, agent) });
    try {
      // Start-up is Node's and the modules' (about 3 s in these guests; a loaded machine more).
      await waitFor('agent start', async () => (await agentLog()).includes('agent started'), 60_000);
      await guest.ok('ip -n host-a route del 172.0.0.0/24');
      await waitFor('route repaired', async () =>
        /172\.0\.0\.0\/24 dev ipiptun proto 203/.test(await routes('node-a')),
      );
      await guest.ok('ip -n host-a link set ipiptun down');
      await waitFor(
        'link up again with its route',
        async () =>
          ((await link('node-a', 'ipiptun'))?.flags.includes('UP') ?? false) &&
          /172\.0\.0\.0\/24 dev ipiptun/.test(await routes('node-a')),
      );
      assert.ok(await ping('node-a', '172.0.0.3'));
      const log = (await agentLog())
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const changes = log
        .filter((l) => l.message === 'kernel change')
        .map((l) => `${l.tunnel} ${l.node} ${l.object}/${l.action}`);
      assert.ok(changes.includes('lab node-a route/create'), changes.join('\n'));
      assert.ok(changes.includes('lab node-a link/update'), changes.join('\n'));
    } finally {
      // Also when a step above failed: a running agent would change what the tests after it see.
      await stopBackgroundAgent(guest, agent);
    }
    assert.equal((await link('node-a', 'ipiptun'))!.ifindex, ifindex, 'stopping the agent leaves the tunnel');
  });

  test('a link name taken by a foreign link is an error for that tunnel and changes nothing', async () => {
    const clash = example();
    clash.metadata.name = 'clash';
    clash.spec.linkName = 'foreign0';
    clash.spec.routes = ['10.55.0.0/16'];
    // Its own underlay pair and overlay addresses: only the link name is in the way.
    clash.spec.endpoints[1]!.underlay!.address = '192.168.40.9';
    clash.spec.endpoints[0]!.overlayAddress = '172.0.9.2';
    clash.spec.endpoints[1]!.overlayAddress = '172.0.9.3';
    const before = await guest.ok('ip -n host-a -d link show; ip -n host-a route show');
    const once = await agentOnce('node-a', [example(), clash]);
    assert.equal(once.code, 2);
    assert.deepEqual(
      once.summary.errors.map((e) => `${e.tunnel}:${e.reason}`),
      ['clash:LinkNameTaken'],
    );
    assert.deepEqual(changed(once), []);
    assert.equal(await guest.ok('ip -n host-a -d link show; ip -n host-a route show'), before);
  });

  test('an underlay interface that is not there is an error and changes nothing', async () => {
    const t = example();
    t.spec.endpoints[0]!.underlay!.interface = 'eth9';
    const before = await guest.ok('ip -n host-a -d addr show; ip -n host-a route show');
    const once = await agentOnce('node-a', [t]);
    assert.equal(once.code, 2);
    assert.equal(once.summary.errors[0]?.reason, 'UnderlayInterfaceNotFound');
    assert.match(once.summary.errors[0]!.message, /eth9/);
    assert.equal(await guest.ok('ip -n host-a -d addr show; ip -n host-a route show'), before);
  });

  test('a manifest the schema rejects exits 2 naming the field and changes nothing', async () => {
    const before = await guest.ok('ip -n host-a -d addr show; ip -n host-a route show');
    const path = '/run/lab/bad.yaml';
    await guest.writeFile(path, stringify({ ...example(), spec: { ...example().spec, ttl: 300 } }));
    const r = await guest.sh(agentCommand('node-a', `--once --manifest ${path}`));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /spec\.ttl/);
    assert.equal(r.stdout, '');
    assert.equal(await guest.ok('ip -n host-a -d addr show; ip -n host-a route show'), before);
  });

  test('removing the tunnel from the manifest removes its link and routes, and nothing else', async () => {
    const [a, b] = await bothOnce([]);
    assert.deepEqual(changed(a), ['link/delete=1']);
    assert.deepEqual(changed(b), ['link/delete=1']);
    assert.equal(await link('node-a', 'ipiptun'), undefined);
    assert.equal(await link('node-b', 'ipiptun'), undefined);
    assert.doesNotMatch(await routes('node-a'), /proto 203/);
    assert.ok(await link('node-a', 'tunl0'), 'the fallback device tunl0 is still there');
    assert.equal(
      await foreignSnapshot('node-a'),
      foreignBefore,
      'foreign link, its address, tunl0 and foreign routes are untouched',
    );
  });
});
