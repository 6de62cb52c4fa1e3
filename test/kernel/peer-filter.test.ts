// The mesh's peer filter on a real kernel (User-Mode Linux, the lab kernel, nftables for
// ip), the standalone agent on each host: examples/mesh.yaml on node-a, node-b and node-c
// (network namespaces on one bridge, strict rp_filter) and a fourth host on the same
// bridge, the stranger (192.168.40.9), which is not in the tunnel. A mesh link takes IPIP
// from anyone, spoofed inner sources included: the stranger's ping with node-b's overlay
// address as its source gets into node-a's mesh link without the filter, and is dropped
// and counted with it, while every peer still pings. A foreign point-to-point device on
// node-a's underlay address keeps working (the agent allows its remote). A running agent
// repairs its table flushed by hand; the agent never brings tunl0 up; the table goes with
// the last tunnel that needs it.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { foreignPointToPointCommands } from '../harness/foreign.ts';
import { link as linkOf, nftTable, nftTables, ping as pingFrom } from '../harness/probes.ts';
import type { NftRule, NftTable } from '../harness/probes.ts';
import { meshExample } from '../harness/repo.ts';
import { eventually, StartedByTest } from '../harness/support.ts';
import {
  agentOnceOnEach,
  assertSaid,
  hostNetns,
  hostShell,
  setSysctls,
  setUpHosts,
  startBackgroundAgent,
  writeManifest,
} from '../harness/two-hosts.ts';
import { Guest, requireCommands, shOk } from '../harness/uml.ts';

const UNDERLAY = { 'node-a': '192.168.40.2', 'node-b': '192.168.40.3', 'node-c': '192.168.40.4' } as const;
type Node = keyof typeof UNDERLAY;
const NODES = Object.keys(UNDERLAY) as Node[];
const OVERLAY: Record<Node, string> = { 'node-a': '172.0.1.2', 'node-b': '172.0.1.3', 'node-c': '172.0.1.4' };
const STRANGER = 'stranger';
const STRANGER_UNDERLAY = '192.168.40.9';
const LINK = 'ipipmesh';
const TABLE = 'ip ipip-operator';
const STRICT_RP_FILTER = ['net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.default.rp_filter=1'];
/** The chain of the peer filter: prerouting at raw (-300), before conntrack and routing. */
const RAW_CHAIN = 'filter hook prerouting priority -300 policy accept';
/** Pings the stranger sends at a time. */
const SENT = 5;
/** The remote of a foreign device made while an agent runs (no host has it). */
const LATER = '192.168.40.10';
/** The foreign device's overlay pair: node-a's side and the stranger's. */
const FOREIGN = { a: '10.99.0.1', stranger: '10.99.0.2' } as const;

/** examples/mesh.yaml (node-c masquerades for its LAN), with the filter off when asked. */
function mesh(dropForeignIpip = true): IpipTunnel {
  return meshExample((t) => {
    if (!dropForeignIpip) t.spec.dropForeignIpip = false;
  });
}

const started = new StartedByTest<Guest>('lab guest');
const guest = () => started.get();
const shell = (node: Node | typeof STRANGER) => hostShell(guest(), node);
const table = (node: Node) => nftTable(shell(node), 'ip', 'ipip-operator');

/**
 * The three hosts and the stranger on one bridge, strict rp_filter everywhere, node-c
 * forwarding (it masquerades for its LAN), and the stranger's own ipip device to node-a:
 * `st0`, local 192.168.40.9 remote 192.168.40.2, with node-b's overlay address on it (a
 * spoofed source that strict rp_filter on node-a lets in: its route is via the mesh link).
 */
async function startLab(): Promise<Guest> {
  requireCommands(['nft'], 'apt-get install -y nftables (or run scripts/setup.sh)');
  const g = await Guest.boot({ memMB: 768 });
  try {
    await setUpHosts(g, { ...UNDERLAY, [STRANGER]: STRANGER_UNDERLAY });
    for (const node of [...NODES, STRANGER]) await setSysctls(g, hostNetns(node), STRICT_RP_FILTER);
    await setSysctls(g, hostNetns('node-c'), ['net.ipv4.ip_forward=1']);
    const ip = `ip -n ${hostNetns(STRANGER)}`;
    await g.ok(
      [
        `${ip} link add st0 type ipip local ${STRANGER_UNDERLAY} remote ${UNDERLAY['node-a']}`,
        `${ip} addr add ${OVERLAY['node-b']}/32 dev st0`,
        `${ip} link set st0 up`,
        `${ip} route add ${OVERLAY['node-a']}/32 dev st0`,
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

/** The peer filter's rule on a node, as nft prints it. */
function filterRule(node: Node): Omit<NftRule, 'counter'> {
  return {
    chain: 'prerouting',
    comment: 'mesh',
    text: `ip protocol 4 ip daddr ${UNDERLAY[node]} ip saddr != @peers-mesh counter drop`,
  };
}

/** The rules of a table without their counters, sorted by chain and comment. */
function rulesOf(t: NftTable): Array<Omit<NftRule, 'counter'>> {
  return t.rules
    .map(({ chain, comment, text }) => ({ chain, comment, text }))
    .sort((a, b) => `${a.chain} ${a.comment}`.localeCompare(`${b.chain} ${b.comment}`));
}

/** Packets node-a's peer filter dropped (its rule's counter). */
async function dropped(): Promise<number> {
  const rule = (await table('node-a'))?.rules.find((r) => r.chain === 'prerouting' && r.comment === 'mesh');
  assert.ok(rule?.counter !== undefined, "node-a's peer filter has a counter");
  return rule.counter.packets;
}

/** Packets node-a's mesh link has received. */
async function meshRx(): Promise<number> {
  const l = await linkOf(shell('node-a'), LINK);
  assert.ok(l !== undefined, `node-a has ${LINK}`);
  return l.stats64.rx.packets as number;
}

/** The stranger pings node-a's overlay address through st0 (from node-b's overlay address); whether it got an answer. */
const strangerPings = () => pingFrom(shell(STRANGER), OVERLAY['node-a'], SENT);

/** Pings every ordered pair of the mesh over the overlay, one at a time. */
async function assertEveryPairPings(): Promise<void> {
  const pairs = NODES.flatMap((a) => NODES.filter((b) => b !== a).map((b) => [a, b] as const));
  const results: string[] = [];
  for (const [a, b] of pairs)
    results.push(`${a} -> ${b}: ${(await pingFrom(shell(a), OVERLAY[b])) ? 'answers' : 'no answer'}`);
  assert.deepEqual(
    results,
    pairs.map(([a, b]) => `${a} -> ${b}: answers`),
  );
}

/** Whether tunl0, the any/any fallback device that takes IPIP from anyone when up, is up on a node. */
async function tunl0Up(node: Node): Promise<boolean> {
  const l = await linkOf(shell(node), 'tunl0');
  assert.ok(l !== undefined, `${node} has tunl0 (the kernel makes it with the ipip driver)`);
  return (l.flags as string[]).includes('UP');
}

describe("a mesh's peer filter on a real kernel: IPIP only from peers and other devices' remotes", {
  timeout: 300_000,
}, () => {
  after(async () => {
    await started.started?.stop();
  });

  test('examples/mesh.yaml: each node drops IPIP to its underlay address from all but its peers; every pair pings', async () => {
    await started.start(startLab);
    assertSaid(await onEach(NODES, [mesh()]), {
      'node-a': 'exit 0 link/create=1 address/create=1 route/create=3 rules/create=1',
      'node-b': 'exit 0 link/create=1 address/create=1 route/create=3 rules/create=1',
      'node-c': 'exit 0 link/create=1 address/create=1 route/create=2 rules/create=1',
    });
    for (const node of NODES) {
      const t = await table(node);
      assert.ok(t !== undefined, `${node} has ${TABLE}`);
      const peers = NODES.filter((p) => p !== node);
      const masquerades = node === 'node-c';
      assert.deepEqual(
        t.sets,
        {
          'peers-mesh': peers.map((p) => UNDERLAY[p]).sort(),
          ...(masquerades ? { 'masq-mesh': peers.map((p) => OVERLAY[p]).sort() } : {}),
        },
        node,
      );
      assert.deepEqual(
        rulesOf(t),
        [
          ...(masquerades
            ? [
                {
                  chain: 'postrouting',
                  comment: 'mesh',
                  text: `ip saddr @masq-mesh oifname != "${LINK}" counter masquerade`,
                },
              ]
            : []),
          filterRule(node),
        ],
        node,
      );
      assert.equal(t.chains.prerouting, RAW_CHAIN, node);
    }
    await assertEveryPairPings();
    for (const node of NODES) assert.equal(await tunl0Up(node), false, `${node}: tunl0 is not up`);
  });

  test('dropForeignIpip: false on node-a: its table goes (no tunnel needs it), and the spoofed IPIP of the stranger gets into the mesh link', async () => {
    assertSaid(await onEach(['node-a'], [mesh(false)]), { 'node-a': 'exit 0 rules/delete=1' });
    assert.ok(!(await nftTables(shell('node-a'))).includes(TABLE), `no ${TABLE} on node-a`);
    // What the filter is for: node-a's mesh link takes these packets (strict rp_filter
    // lets them in, their source is a peer's) and answers node-b, which never asked.
    const rx = await meshRx();
    assert.equal(await strangerPings(), false, 'the answers go to node-b, not to the stranger');
    const now = await meshRx();
    assert.ok(now >= rx + SENT, `node-a's mesh link received the stranger's ${SENT} packets (rx ${rx} -> ${now})`);
  });

  test("the filter on: the stranger's IPIP is dropped and counted, node-a's mesh link never sees it; every pair pings", async () => {
    assertSaid(await onEach(['node-a'], [mesh()]), { 'node-a': 'exit 0 rules/create=1' });
    const before = { dropped: await dropped(), rx: await meshRx() };
    assert.equal(await strangerPings(), false, 'no answer');
    const after = { dropped: await dropped(), rx: await meshRx() };
    assert.equal(after.rx, before.rx, "node-a's mesh link received nothing from the stranger");
    assert.ok(after.dropped >= before.dropped + SENT, `dropped and counted: ${JSON.stringify({ before, after })}`);
    await assertEveryPairPings();
  });

  test("a foreign point-to-point device on node-a's underlay address, to the stranger: the agent allows its remote, and it carries ping", async () => {
    // Someone else's device, bound to eth1 as the mesh link is (an unbound one would lose its
    // packets to the bound mesh link, which the agent refuses); the stranger's st0 is its other end.
    await guest().ok(
      [
        ...foreignPointToPointCommands(`ip -n ${hostNetns('node-a')}`, {
          name: 'foreign0',
          local: UNDERLAY['node-a'],
          remote: STRANGER_UNDERLAY,
          dev: 'eth1',
          address: FOREIGN.a,
          peer: FOREIGN.stranger,
        }),
        `ip -n ${hostNetns(STRANGER)} addr add ${FOREIGN.stranger} peer ${FOREIGN.a} dev st0`,
      ].join(' && '),
    );
    // Until the agent has seen it, the filter drops its packets too: the ping below can fail.
    const before = await dropped();
    assert.equal(await pingFrom(shell(STRANGER), FOREIGN.a), false, 'dropped by the filter before the agent ran');
    assert.ok((await dropped()) > before, 'counted as foreign IPIP');

    assertSaid(await onEach(['node-a'], [mesh()]), { 'node-a': 'exit 0 rules/update=1' });
    const t = (await table('node-a'))!;
    assert.deepEqual(t.sets['peers-mesh'], [UNDERLAY['node-b'], UNDERLAY['node-c'], STRANGER_UNDERLAY]);
    assert.deepEqual(rulesOf(t), [filterRule('node-a')]);
    assert.ok(await pingFrom(shell(STRANGER), FOREIGN.a, 3), 'the stranger pings node-a through the foreign device');
    assert.ok(await pingFrom(shell('node-a'), FOREIGN.stranger, 3), 'and node-a the stranger');
    assert.match(
      await shOk(shell('node-a'), `ip -d link show dev foreign0`),
      /ipip any remote 192\.168\.40\.9 local 192\.168\.40\.2 dev eth1 /,
      'the foreign device is as it was made',
    );
    await assertEveryPairPings();
  });

  test('a running agent repairs its table flushed by hand at once, and says so; it allows a foreign device made meanwhile; tunl0 stays down', async () => {
    const manifest = await writeManifest(guest(), 'node-a', [mesh()]);
    const want = rulesOf((await table('node-a'))!);
    const wantSets = (await table('node-a'))!.sets;
    const flush = () => shOk(shell('node-a'), 'nft flush table ip ipip-operator');
    const whole = async () => {
      const t = await table('node-a');
      return (
        t !== undefined &&
        JSON.stringify(rulesOf(t)) === JSON.stringify(want) &&
        JSON.stringify(t.sets) === JSON.stringify(wantSets)
      );
    };
    // Flushed before the agent starts: its first pass repairs it, which shows that pass is done.
    await flush();
    assert.equal(await whole(), false, 'flushed');
    // A resync far beyond the deadlines below: only the agent's watch can repair in time.
    const agent = await startBackgroundAgent(
      guest(),
      'node-a',
      `--manifest ${manifest} --log-format json --resync-period 10m`,
    );
    const log = () => guest().ok(`cat ${agent.log}`);
    const waitFor = (what: string, check: () => Promise<boolean>) =>
      eventually(what, check, {
        timeoutMs: 20_000,
        intervalMs: 200,
        context: async () => `agent log:\n${await log()}`,
      });
    try {
      await waitFor('the first pass to restore the table', whole);
      const changesBefore = ruleChanges(await log()).length;
      await flush();
      await waitFor('the running agent to restore the flushed table', whole);
      const changes = ruleChanges(await log());
      // The log names the tunnel whose rules were put back (a flushed table also has sets and
      // chains no rule explains, which the same transaction drops: a line of its own).
      assert.ok(
        changes.slice(changesBefore).some((c) => /^mesh node-a rules\/(create|update) /.test(c)),
        `the log names the repair:\n${changes.join('\n')}`,
      );
      // Someone makes another device on node-a's address while the agent runs: its remote
      // is allowed at once, and no longer once the device is gone (the agent watches links).
      const allowed = async () => (await table('node-a'))?.sets['peers-mesh'] ?? [];
      await guest().ok(
        `ip -n ${hostNetns('node-a')} link add name foreign1 type ipip local ${UNDERLAY['node-a']} remote ${LATER} dev eth1 && ` +
          `ip -n ${hostNetns('node-a')} link set foreign1 up`,
      );
      await waitFor(`${LATER} allowed`, async () => (await allowed()).includes(LATER));
      await guest().ok(`ip -n ${hostNetns('node-a')} link del foreign1`);
      await waitFor(`${LATER} no longer allowed`, async () => !(await allowed()).includes(LATER));
      assert.equal(await tunl0Up('node-a'), false, 'tunl0 is not up');
    } finally {
      await guest().ok(`kill -TERM $(cat ${agent.pidFile})`);
      await waitFor('agent exit', async () => (await guest().sh(`kill -0 $(cat ${agent.pidFile})`)).code !== 0);
    }
  });

  test('the mesh removed: every node loses its table; the foreign device still carries ping; tunl0 still down', async () => {
    assertSaid(await onEach(NODES, []), {
      'node-a': 'exit 0 link/delete=1 rules/delete=1',
      'node-b': 'exit 0 link/delete=1 rules/delete=1',
      'node-c': 'exit 0 link/delete=1 rules/delete=1',
    });
    for (const node of NODES) {
      const tables = await nftTables(shell(node));
      assert.ok(!tables.includes(TABLE), `${node}: no ${TABLE} (${tables.join(', ')})`);
      assert.equal(await tunl0Up(node), false, `${node}: tunl0 is not up`);
    }
    assert.ok(await pingFrom(shell(STRANGER), FOREIGN.a), 'the foreign device still carries ping');
  });
});

/** The agent's JSON log lines about changes to rules, as "TUNNEL NODE rules/VERB DETAIL". */
function ruleChanges(log: string): string[] {
  return log
    .trim()
    .split('\n')
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    })
    .filter((l) => l.message === 'kernel change' && l.object === 'rules')
    .map((l) => `${String(l.tunnel)} ${String(l.node)} rules/${String(l.action)} ${String(l.detail)}`);
}
