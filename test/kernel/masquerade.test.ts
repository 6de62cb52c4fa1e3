// Masquerade on a real kernel (User-Mode Linux, the lab kernel, nftables for ip), the
// standalone agent on each host: the two hosts of examples/tunnel.yaml (node-a near,
// node-b far) and a LAN 10.40.0.0/24 behind node-b with one host that has no route back
// to the overlay, only its own subnet. node-b carries the LAN in its networks and forwards.
// Without masquerade the near host's ping reaches the LAN host from its overlay address
// and is not answered; with `masquerade: true` on the far endpoint the LAN host sees the
// far host's LAN address and answers. The agent's rules live in its own table `ip
// ipip-operator`, one set and one rule per tunnel: a second tunnel's part stays when the
// first one's goes, and the table goes with the last part. Someone else's nftables table
// and iptables-legacy rules on node-b are never touched.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { FOREIGN_NFT_TABLE, foreignIptablesCommands, IPTABLES_LEGACY_HINT } from '../harness/foreign.ts';
import { nftTable, nftTables, ping as pingFrom, startCapture } from '../harness/probes.ts';
import type { NftRule, NftTable } from '../harness/probes.ts';
import { exampleTunnel } from '../harness/repo.ts';
import { StartedByTest } from '../harness/support.ts';
import {
  agentOnceOnEach,
  assertSaid,
  hostNetns,
  hostShell,
  setSysctls,
  setUpLan,
  setUpTwoHosts,
} from '../harness/two-hosts.ts';
import type { Lan, LabNode as Node } from '../harness/two-hosts.ts';
import { Guest, namespaceShell, requireCommands, shOk } from '../harness/uml.ts';

const NEAR: Node = 'node-a';
const FAR: Node = 'node-b';
const LAN_ROUTER = '10.40.0.1';
const LAN_HOST = '10.40.0.5';
const LAN_NETWORK = '10.40.0.0/24';
/** The LAN behind the far host: its one host knows its own subnet and nothing else. */
const LAN: Lan = { node: FAR, netns: 'lan-b', router: `${LAN_ROUTER}/24`, address: `${LAN_HOST}/24`, routes: [] };
const TABLE = 'ip ipip-operator';
const STRICT_RP_FILTER = ['net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1'];
/** The nat chain the agent's masquerade rules are in: postrouting at srcnat (100). */
const NAT_CHAIN = 'nat hook postrouting priority 100 policy accept';

/** examples/tunnel.yaml with the LAN in the far endpoint's networks, masquerading there or not. */
function lab(masquerade: boolean): IpipTunnel {
  return exampleTunnel((t) => {
    const far = t.spec.endpoints[1]!;
    far.networks = [LAN_NETWORK];
    if (masquerade) far.masquerade = true;
  });
}

/** A second tunnel between the same hosts on second underlay addresses (192.168.40.12 and .13), its own link and overlay. */
function lab2(masquerade: boolean): IpipTunnel {
  return exampleTunnel((t) => {
    t.metadata.name = 'lab2';
    t.spec.linkName = 'ipiptun2';
    t.spec.routes = ['172.0.2.0/24'];
    t.spec.endpoints[0]!.underlay = { address: '192.168.40.12', interface: 'eth1' };
    t.spec.endpoints[0]!.overlayAddress = '172.0.2.2';
    t.spec.endpoints[1]!.underlay = { address: '192.168.40.13', interface: 'eth1' };
    t.spec.endpoints[1]!.overlayAddress = '172.0.2.3';
    if (masquerade) t.spec.endpoints[1]!.masquerade = true;
  });
}

/** The masquerade rule of a tunnel, as nft prints it, and where it must be. */
function masqueradeRule(tunnel: string, link: string): Omit<NftRule, 'counter'> {
  return {
    chain: 'postrouting',
    comment: tunnel,
    text: `ip saddr @masq-${tunnel} oifname != "${link}" counter masquerade`,
  };
}

const started = new StartedByTest<Guest>('lab guest');
const guest = () => started.get();
const shell = (node: Node) => hostShell(guest(), node);
const lanHost = () => namespaceShell(guest(), LAN.netns);
const table = (node: Node) => nftTable(shell(node), 'ip', 'ipip-operator');

/** The two hosts, the LAN behind node-b (forwarding on), strict rp_filter, and someone else's firewall on node-b. */
async function startLab(): Promise<Guest> {
  requireCommands(['nft'], 'apt-get install -y nftables (or run scripts/setup.sh)');
  requireCommands(['iptables-legacy', 'iptables-legacy-save'], IPTABLES_LEGACY_HINT);
  const g = await Guest.boot();
  try {
    await setUpTwoHosts(g);
    await setUpLan(g, LAN);
    for (const ns of [hostNetns(NEAR), hostNetns(FAR), LAN.netns]) await setSysctls(g, ns, STRICT_RP_FILTER);
    await setSysctls(g, hostNetns(FAR), ['net.ipv4.ip_forward=1']);
    await g.writeFile('/run/lab/foreign.nft', FOREIGN_NFT_TABLE);
    await g.ok(
      [
        // lab2's underlay addresses.
        'ip -n host-a addr add 192.168.40.12/24 dev eth1',
        'ip -n host-b addr add 192.168.40.13/24 dev eth1',
        `ip netns exec ${hostNetns(FAR)} nft -f /run/lab/foreign.nft`,
        ...foreignIptablesCommands(`ip netns exec ${hostNetns(FAR)} iptables-legacy`),
      ].join(' && '),
    );
  } catch (error) {
    await g.stop();
    throw error;
  }
  return g;
}

/**
 * Someone else's nftables table and iptables-legacy rules on node-b, as text to compare.
 * iptables-legacy-save dates its comment lines and prints each chain's packet counters,
 * which the lab's own traffic moves: those are left out, every rule and policy is kept.
 */
async function foreignSnapshot(): Promise<string> {
  const nft = await shOk(shell(FAR), 'nft list table inet foreign');
  const legacy = (await shOk(shell(FAR), 'iptables-legacy-save'))
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, ''))
    .join('\n');
  return `${nft}\n${legacy}`;
}

/** `agent --once` on both hosts with these tunnels. */
const onBoth = (tunnels: IpipTunnel[]) => agentOnceOnEach(guest(), [NEAR, FAR], tunnels);

/** The rules of a table without their counters, sorted by chain and comment. */
function rulesOf(t: NftTable): Array<Omit<NftRule, 'counter'>> {
  return t.rules
    .map(({ chain, comment, text }) => ({ chain, comment, text }))
    .sort((a, b) => `${a.chain} ${a.comment}`.localeCompare(`${b.chain} ${b.comment}`));
}

/** A rule's packet counter. */
function packets(t: NftTable, tunnel: string): number {
  const rule = t.rules.find((r) => r.comment === tunnel);
  assert.ok(rule?.counter !== undefined, `a counted rule for ${tunnel} in ${JSON.stringify(t.rules)}`);
  return rule.counter.packets;
}

/** Pings the LAN host from the near host while capturing ICMP on the LAN: whether it was answered, and what the LAN saw. */
async function pingLanHost(count: number): Promise<{ answered: boolean; seen: string }> {
  // An unanswered ping puts `count` requests on the LAN; an answered one, a request and a reply each.
  const capture = await startCapture(lanHost(), { iface: 'eth0', filter: 'icmp', count: 2 });
  const answered = await pingFrom(shell(NEAR), LAN_HOST, count);
  return { answered, seen: (await capture.done).stdout };
}

describe('masquerade on a real kernel: a LAN host with no route back answers the far host', {
  timeout: 300_000,
}, () => {
  after(async () => {
    await started.started?.stop();
  });

  let foreignBefore: string;

  test('without masquerade the near host reaches the LAN host from its overlay address, and gets no answer', async () => {
    await started.start(startLab);
    foreignBefore = await foreignSnapshot();
    assert.match(foreignBefore, /ip saddr @blocked drop/);
    assert.match(foreignBefore, /-A POSTROUTING -s 198\.51\.100\.0\/24 -o eth1 -j MASQUERADE/);
    assert.equal(
      (await shOk(lanHost(), 'ip route show')).trim(),
      `${LAN_NETWORK} dev eth0 proto kernel scope link src ${LAN_HOST}`,
      'the LAN host has its own subnet only: no route back to the overlay',
    );
    assertSaid(await onBoth([lab(false)]), {
      'node-a': 'exit 0 link/create=1 address/create=1 route/create=2',
      'node-b': 'exit 0 link/create=1 address/create=1 route/create=1',
    });
    assert.match(await shOk(shell(NEAR), `ip route get ${LAN_HOST}`), /dev ipiptun src 172\.0\.0\.2/);
    for (const node of [NEAR, FAR]) assert.ok(!(await nftTables(shell(node))).includes(TABLE), `${node}: no ${TABLE}`);

    const { answered, seen } = await pingLanHost(2);
    assert.equal(answered, false, 'the LAN host cannot answer 172.0.0.2');
    assert.match(seen, /IP 172\.0\.0\.2 > 10\.40\.0\.5: ICMP echo request/, seen);
    assert.doesNotMatch(seen, /echo reply/, seen);
  });

  test('masquerade: true on the far endpoint: one set and one rule in its table; the LAN host sees its LAN address and answers', async () => {
    assertSaid(await onBoth([lab(true)]), { 'node-a': 'exit 0', 'node-b': 'exit 0 rules/create=1' });
    const t = await table(FAR);
    assert.ok(t !== undefined, `node-b has ${TABLE}`);
    assert.deepEqual(t.sets, { 'masq-lab': ['172.0.0.2'] }, "the other endpoint's overlay address");
    assert.deepEqual(rulesOf(t), [masqueradeRule('lab', 'ipiptun')]);
    assert.equal(t.chains.postrouting, NAT_CHAIN);
    assert.equal(await table(NEAR), undefined, 'node-a does not masquerade: no table there');

    const { answered, seen } = await pingLanHost(1);
    assert.ok(answered, `the LAN host answers\n${seen}`);
    assert.match(seen, /IP 10\.40\.0\.1 > 10\.40\.0\.5: ICMP echo request/, seen);
    assert.match(seen, /IP 10\.40\.0\.5 > 10\.40\.0\.1: ICMP echo reply/, seen);
    assert.doesNotMatch(seen, /172\.0\.0\.2/, seen);
    assert.ok(packets((await table(FAR))!, 'lab') >= 1, 'the rule counted the connection');
    assert.equal(await foreignSnapshot(), foreignBefore, "someone else's nftables table and iptables rules");
  });

  test('a second tunnel that masquerades: its part is added beside the first, whose counter goes on', async () => {
    const before = packets((await table(FAR))!, 'lab');
    assertSaid(await onBoth([lab(true), lab2(true)]), {
      'node-a': 'exit 0 link/create=1 address/create=1 route/create=1',
      'node-b': 'exit 0 link/create=1 address/create=1 route/create=1 rules/create=1',
    });
    const t = (await table(FAR))!;
    assert.deepEqual(t.sets, { 'masq-lab': ['172.0.0.2'], 'masq-lab2': ['172.0.2.2'] });
    assert.deepEqual(rulesOf(t), [masqueradeRule('lab', 'ipiptun'), masqueradeRule('lab2', 'ipiptun2')]);
    assert.ok(packets(t, 'lab') >= before, `lab's counter is carried over the rewrite (${before} before)`);
    assert.ok(await pingFrom(shell(NEAR), '172.0.2.3'), 'lab2 carries traffic');
    assert.ok((await pingLanHost(1)).answered, 'the LAN host still answers through lab');
    assert.equal(await foreignSnapshot(), foreignBefore);
  });

  test("masquerade removed from the first tunnel: its set and rule go, the second's stay as they were; the LAN host stops answering", async () => {
    const before = (await table(FAR))!;
    assertSaid(await onBoth([lab(false), lab2(true)]), { 'node-a': 'exit 0', 'node-b': 'exit 0 rules/delete=1' });
    const t = (await table(FAR))!;
    assert.deepEqual(t.sets, { 'masq-lab2': before.sets['masq-lab2'] });
    assert.deepEqual(rulesOf(t), [masqueradeRule('lab2', 'ipiptun2')]);
    assert.ok(packets(t, 'lab2') >= packets(before, 'lab2'), "lab2's counter goes on");
    const { answered, seen } = await pingLanHost(2);
    assert.equal(answered, false, 'without the rule the LAN host cannot answer');
    assert.match(seen, /IP 172\.0\.0\.2 > 10\.40\.0\.5: ICMP echo request/, seen);
    assert.equal(await foreignSnapshot(), foreignBefore);
  });

  test('the last tunnel that needs rules stops masquerading: the table is deleted, the tunnels stay', async () => {
    assertSaid(await onBoth([lab(false), lab2(false)]), { 'node-a': 'exit 0', 'node-b': 'exit 0 rules/delete=1' });
    const tables = await nftTables(shell(FAR));
    assert.ok(!tables.includes(TABLE), `no ${TABLE} on node-b: ${tables.join(', ')}`);
    assert.ok(tables.includes('inet foreign'), "someone else's table is still there");
    assert.ok(await pingFrom(shell(NEAR), '172.0.0.3'), 'lab still carries traffic');
    assert.ok(await pingFrom(shell(NEAR), '172.0.2.3'), 'lab2 still carries traffic');
    assert.equal(await foreignSnapshot(), foreignBefore);
  });

  test("someone else's nftables table and iptables-legacy rules are byte for byte as before, after the tunnels are removed", async () => {
    // Masquerade on again, then every tunnel gone: the agent writes its table and removes it with the tunnels.
    assertSaid(await onBoth([lab(true)]), {
      'node-a': 'exit 0 link/delete=1',
      'node-b': 'exit 0 link/delete=1 rules/create=1',
    });
    assertSaid(await onBoth([]), { 'node-a': 'exit 0 link/delete=1', 'node-b': 'exit 0 link/delete=1 rules/delete=1' });
    for (const node of [NEAR, FAR]) assert.ok(!(await nftTables(shell(node))).includes(TABLE), `${node}: no ${TABLE}`);
    assert.equal(await foreignSnapshot(), foreignBefore, "someone else's nftables table and iptables rules");
  });
});
