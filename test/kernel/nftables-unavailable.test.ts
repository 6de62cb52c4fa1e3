// A kernel that cannot hold the agent's nftables table: the lab kernel's nonft variant
// (scripts/uml-kernel-nonft.config), whose nf_tables has no ip, ip6 or inet family, as
// Debian's linux.uml 6.1 has it (`nft add table ip x` answers "Operation not supported").
// A mesh with its default peer filter, and an endpoint that masquerades, are refused there with NftablesUnavailable (exit 2 standalone) and nothing of them is
// created; a mesh with `dropForeignIpip: false` and no masquerade needs no rules, and is
// programmed and carries ping.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { link, ping } from '../harness/probes.ts';
import { meshExample } from '../harness/repo.ts';
import { StartedByTest } from '../harness/support.ts';
import { agentOnce, changed, hostNetns, hostShell, refusals, setUpHosts } from '../harness/two-hosts.ts';
import { Guest, insmod, requireCommands } from '../harness/uml.ts';

const UNDERLAY = { 'node-a': '192.168.40.2', 'node-b': '192.168.40.3', 'node-c': '192.168.40.4' } as const;
type Node = keyof typeof UNDERLAY;
const NODES = Object.keys(UNDERLAY) as Node[];
const LINK = 'ipipmesh';

/** examples/mesh.yaml (node-c masquerades), with the peer filter off when asked. */
function mesh(dropForeignIpip = true): IpipTunnel {
  return meshExample((t) => {
    if (!dropForeignIpip) t.spec.dropForeignIpip = false;
  });
}

const started = new StartedByTest<Guest>('lab guest');
const guest = () => started.get();
const shell = (node: Node) => hostShell(guest(), node);

/**
 * A node's links (no counters), IPv4 addresses and IPv4 routes of every table, as text to
 * compare (IPv6, which the agent never touches, adds its link-local routes on its own time).
 */
const hostState = (node: Node) => {
  const ip = `ip -n ${hostNetns(node)}`;
  return guest().ok(`${ip} -d link show; ${ip} -4 addr show; ${ip} -4 route show table all`);
};

describe("a kernel without nftables for ip (the lab kernel's nonft variant): rules refused, nothing created", {
  timeout: 300_000,
}, () => {
  after(async () => {
    await started.started?.stop();
  });

  test('the default peer filter: NftablesUnavailable, exit 2, no link, nothing changed', async () => {
    requireCommands(['nft'], 'apt-get install -y nftables (or run scripts/setup.sh)');
    await started.start(async () => {
      const g = await Guest.boot({ kernel: 'nonft', memMB: 768 });
      try {
        // nf_tables itself loaded, as on a node whose firewall uses it: only the ip family is missing.
        await insmod(g, ['net/netfilter/nfnetlink.ko', 'net/netfilter/nf_tables.ko']);
        await setUpHosts(g, UNDERLAY);
        await g.ok(`ip netns exec ${hostNetns('node-c')} sysctl -q -w net.ipv4.ip_forward=1`);
      } catch (error) {
        await g.stop();
        throw error;
      }
      return g;
    });
    // What the agent meets: nft and nf_tables are there, the kernel refuses the ip family.
    const probe = await shell('node-a').sh('nft add table ip probe');
    assert.notEqual(probe.code, 0, 'this kernel cannot hold an nftables table of the ip family');
    assert.match(probe.stderr, /Operation not supported/);

    const before = await hostState('node-a');
    const once = await agentOnce(guest(), 'node-a', [mesh()]);
    assert.equal(once.code, 2, `a refusal is a configuration problem (exit 2)\n${once.stderr}`);
    assert.deepEqual(refusals(once), ['mesh:NftablesUnavailable'], once.stderr);
    const { message } = once.summary.errors[0]!;
    assert.match(message, /Operation not supported/, 'it says what the kernel answered');
    assert.match(message, /nothing of the tunnel is programmed/);
    assert.deepEqual(Object.keys(once.summary.changes).sort(), ['address', 'link', 'route', 'rules'], 'the agent ran');
    assert.deepEqual(changed(once), []);
    assert.equal(await link(shell('node-a'), LINK), undefined, `no ${LINK}`);
    assert.equal(await hostState('node-a'), before, "node-a's links, addresses and routes are as they were");
  });

  test('dropForeignIpip: false: the mesh needs no rules and is programmed; the endpoint that masquerades is still refused', async () => {
    const runs = await Promise.all(NODES.map((n) => agentOnce(guest(), n, [mesh(false)])));
    const said = Object.fromEntries(
      NODES.map((n, i) => {
        const r = runs[i]!;
        return [n, [`exit ${r.code}`, ...refusals(r).map((p) => `!${p}`), ...changed(r)].join(' ')];
      }),
    );
    assert.deepEqual(
      said,
      {
        'node-a': 'exit 0 link/create=1 address/create=1 route/create=3',
        'node-b': 'exit 0 link/create=1 address/create=1 route/create=3',
        'node-c': 'exit 2 !mesh:NftablesUnavailable',
      },
      runs.map((r, i) => `--- ${NODES[i]}\n${r.stderr}`).join('\n'),
    );
    assert.equal(await link(shell('node-c'), LINK), undefined, `node-c: no ${LINK}`);
    assert.ok(await ping(shell('node-a'), '172.0.1.3'), 'node-a pings node-b over the mesh');
    assert.ok(await ping(shell('node-b'), '172.0.1.2'), 'node-b pings node-a');
  });
});
