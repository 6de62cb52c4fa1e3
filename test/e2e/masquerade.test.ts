// The lab with three nodes, end to end (test/harness/full-lab.ts, as `./scripts/lab.sh
// --nodes 3` builds it), for the rules of examples/mesh.yaml: node-c masquerades what the
// others send onto its LAN 10.30.0.0/24, whose host here has no route back to the overlay
// (its default route via node-c, which the lab gives it, is taken away first), and every
// node drops IPIP from strangers. Observed as a user sees it: ping, tcpdump on the LAN,
// `nft` in the nodes and the agents' /metrics.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { MESH_LAN, startFullLab } from '../harness/full-lab.ts';
import type { FullLab } from '../harness/full-lab.ts';
import {
  agentMetrics,
  metricSum,
  nftTable,
  nftTables,
  ping as pingFrom,
  samples,
  startCapture,
} from '../harness/probes.ts';
import { MESH_EXAMPLE, meshExample } from '../harness/repo.ts';
import { eventually as waitUntil, StartedByTest } from '../harness/support.ts';
import { namespaceShell, shOk } from '../harness/uml.ts';

const NODES = ['node-a', 'node-b', 'node-c'] as const;
type Node = (typeof NODES)[number];
const TUNNEL = 'mesh';
const LINK = 'ipipmesh';
const TABLE = 'ip ipip-operator';
const MASQUERADE_RULE = `ip saddr @masq-mesh oifname != "${LINK}" counter masquerade`;

/** examples/mesh.yaml without node-c's masquerade. */
function meshWithoutMasquerade(): IpipTunnel {
  return meshExample((t) => {
    for (const e of t.spec.endpoints) delete e.masquerade;
  });
}

describe('the lab with three nodes: node-c masquerades for its LAN, whose host has no route back', {
  timeout: 600_000,
}, () => {
  const started = new StartedByTest<FullLab>('lab');
  const L = (): FullLab => started.get();

  after(async () => {
    await started.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => L().kubectl(args, input);
  const eventually = <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> =>
    waitUntil(what, check, { timeoutMs, context: () => L().agentLogTails() });
  const node = (n: Node) => L().cluster.guest(n);
  const lanHost = () => namespaceShell(node(MESH_LAN.node), MESH_LAN.netns);
  /** node-c's masquerade rules in the agent's table. */
  const masqueradeRules = async () =>
    ((await nftTable(node(MESH_LAN.node), 'ip', 'ipip-operator'))?.rules ?? []).filter(
      (r) => r.chain === 'postrouting',
    );

  /** node-a pings the LAN host while ICMP is captured on the LAN: whether it was answered, and what the LAN saw. */
  async function pingLanHost(count: number): Promise<{ answered: boolean; seen: string }> {
    // Unanswered: `count` requests on the LAN; answered: a request and a reply each.
    const capture = await startCapture(lanHost(), { iface: 'eth0', filter: 'icmp', count: 2 });
    const answered = await pingFrom(node('node-a'), MESH_LAN.host, count);
    return { answered, seen: (await capture.done).stdout };
  }

  async function waitReady(want: string): Promise<void> {
    await eventually(
      `kubectl get ipt ${TUNNEL}: READY ${want}`,
      async () => {
        const row = (await kubectl(['get', 'ipt', TUNNEL])).split('\n').find((l) => l.startsWith(`${TUNNEL} `));
        return row?.trim().split(/\s+/)[2] === want;
      },
      90_000,
    );
  }

  test('lab up with three nodes; the LAN host behind node-c keeps its own subnet only', async () => {
    await started.start(() => startFullLab(undefined, { nodes: 3 }));
    await shOk(lanHost(), 'ip route del default');
    const [prefix] = MESH_LAN.network.split('/').slice(1);
    assert.equal(
      (await shOk(lanHost(), 'ip route show')).trim(),
      `${MESH_LAN.network} dev eth0 proto kernel scope link src ${MESH_LAN.host}`,
      `the LAN host knows its /${prefix} and nothing else`,
    );
    for (const n of NODES) assert.ok(!(await nftTables(node(n))).includes(TABLE), `${n}: no ${TABLE} yet`);
  });

  test('the mesh without masquerade: node-a reaches the LAN host from its overlay address, and gets no answer', async () => {
    await kubectl(['apply', '-f', '-'], JSON.stringify(meshWithoutMasquerade()));
    await waitReady('3/3');
    // Every node has its peer filter (the default), node-c no masquerade.
    for (const n of NODES) {
      await eventually(`${n}: the peer filter in ${TABLE}`, async () =>
        ((await nftTable(node(n), 'ip', 'ipip-operator'))?.rules ?? []).some((r) => r.chain === 'prerouting'),
      );
    }
    assert.deepEqual(await masqueradeRules(), []);
    const { answered, seen } = await pingLanHost(2);
    assert.equal(answered, false, 'the LAN host cannot answer 172.0.1.2');
    assert.match(seen, /IP 172\.0\.1\.2 > 10\.30\.0\.10: ICMP echo request/, seen);
  });

  test("kubectl apply -f examples/mesh.yaml: node-c masquerades; the LAN host sees node-c's LAN address and answers", async () => {
    await kubectl(['apply', '-f', MESH_EXAMPLE]);
    const [rule] = await eventually('node-c: the masquerade rule in its table', async () => {
      const rules = await masqueradeRules();
      return rules.length > 0 ? rules : undefined;
    });
    assert.equal(rule?.text, MASQUERADE_RULE);
    assert.equal(rule?.comment, TUNNEL);
    assert.deepEqual((await nftTable(node('node-c'), 'ip', 'ipip-operator'))?.sets['masq-mesh'], [
      '172.0.1.2',
      '172.0.1.3',
    ]);

    const { answered, seen } = await pingLanHost(1);
    assert.ok(answered, `node-a's ping is answered\n${seen}`);
    assert.match(seen, /IP 10\.30\.0\.1 > 10\.30\.0\.10: ICMP echo request/, seen);
    assert.match(seen, /IP 10\.30\.0\.10 > 10\.30\.0\.1: ICMP echo reply/, seen);
    assert.doesNotMatch(seen, /172\.0\.1\.2/, seen);
    assert.ok(await pingFrom(node('node-b'), MESH_LAN.host), 'node-b reaches the LAN host too');

    // What the agents count, as Prometheus would scrape it (the lab resyncs every 5 s).
    const masqueraded = await eventually("node-c's /metrics: masqueraded connections", async () => {
      const m = await agentMetrics(node('node-c'));
      const v = metricSum(m, 'ipip_operator_masqueraded_connections_total', { tunnel: TUNNEL, link: LINK });
      return v >= 2 ? v : undefined;
    });
    assert.ok(masqueraded >= 2, "node-a's and node-b's pings");
    for (const n of NODES) {
      const m = await agentMetrics(node(n));
      assert.equal(
        samples(m, 'ipip_operator_foreign_ipip_dropped_packets_total', { tunnel: TUNNEL, link: LINK }).length,
        1,
        `${n}: the peer filter's counter is exposed`,
      );
    }
  });

  test(`kubectl delete the tunnel: no ${TABLE} on any node`, async () => {
    await kubectl(['delete', 'ipiptunnel', TUNNEL, '--wait=true']);
    for (const n of NODES)
      await eventually(`${n}: ${TABLE} gone`, async () => !(await nftTables(node(n))).includes(TABLE));
  });
});
