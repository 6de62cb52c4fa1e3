// The agent in cluster mode, as users run it: two nodes, each a real Linux kernel (a
// User-Mode Linux guest) on a lab bridge, one agent per node, a real kube-apiserver and
// etcd on the bridge, the agents authenticated as the chart's ServiceAccount (applied from
// deploy/manifests/, the chart rendered with default values) with RBAC enforced.
// Everything is observed the way a user would: kubectl and the kernel (`ip`, ping) on
// each node.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import type { IpipNode, IpipTunnel, NodeTunnelStatus } from '../../src/api/types.ts';
import { kubectlOk } from '../harness/apiserver.ts';
import { LAB_NODES, startClusterLab } from '../harness/cluster-lab.ts';
import type { ClusterLab } from '../harness/cluster-lab.ts';
import { agentMetrics, link as linkOf, metricSum, ping as pingFrom, routes, samples } from '../harness/probes.ts';
import { exampleTunnel as example, REPO } from '../harness/repo.ts';
import { eventually as waitUntil, StartedByTest } from '../harness/support.ts';

type Node = keyof typeof LAB_NODES;
const NODES = Object.keys(LAB_NODES) as Node[];
const SA = { namespace: 'ipip-operator', name: 'ipip-operator' };

describe('the agent in a cluster: two nodes on real kernels, one API server', { timeout: 900_000 }, () => {
  const lab = new StartedByTest<ClusterLab>('lab');
  const L = (): ClusterLab => lab.get();

  after(async () => {
    await lab.started?.stop();
  });

  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(L().api, args, input);

  async function apply(t: IpipTunnel): Promise<void> {
    await kubectl(['apply', '-f', '-'], JSON.stringify(t));
  }

  const tunnel = (name: string): Promise<IpipTunnel | undefined> => L().tunnel(name);
  /** A node's IpipNode as kubectl shows it; undefined when it has none. */
  async function ipipNode(node: string): Promise<IpipNode | undefined> {
    const r = await L().api.kubectl(['get', 'ipipnode', node, '-o', 'json']);
    if (r.code !== 0 && /NotFound/.test(r.stderr)) return undefined;
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as IpipNode;
  }
  /** A node's entry for a tunnel, in its IpipNode. */
  const entryOf = async (node: string, name: string): Promise<NodeTunnelStatus | undefined> =>
    (await ipipNode(node))?.tunnels?.find((e) => e.name === name);
  /** The tunnel once its aggregate says Ready 2/2 at its current generation. */
  const readyTunnel = (name: string): Promise<IpipTunnel> => L().waitTunnelReady(name);
  /** eventually(), failing with the agents' last log lines. */
  const eventually = <T>(what: string, check: () => Promise<T | undefined | false>): Promise<T> =>
    waitUntil(what, check, { context: () => L().agentLogTails() });
  // The readers of probes.ts, on a node's guest.
  const link = (node: Node, name: string) => linkOf(L().guest(node), name);
  const ping = (from: Node, to: string, count?: number) => pingFrom(L().guest(from), to, count);
  /** Reconcile passes of each node's agent so far, whatever their result. */
  const reconciles = async (): Promise<number[]> =>
    Promise.all(NODES.map(async (n) => metricSum(await agentMetrics(L().guest(n)), 'ipip_operator_reconcile_total')));

  /** What a failed ping needs to be understood: each kernel's view of the tunnel and the agents' last lines. */
  async function tunnelState(): Promise<string> {
    const kernels = await Promise.all(
      NODES.map(
        async (n) =>
          `--- kernel ${n}:\n${(await L().guest(n).sh('ip -d link show ipiptun; ip addr show dev ipiptun; ip route; ip neigh')).stdout}`,
      ),
    );
    return `${kernels.join('\n')}\n${await L().agentLogTails()}`;
  }

  let agentArgs: string[] = [];

  async function deleteAndWaitClean(name: string, linkName: string): Promise<void> {
    await kubectl(['delete', 'ipiptunnel', name, '--wait=true']);
    for (const node of NODES) {
      await eventually(`${linkName} gone from ${node}`, async () =>
        (await link(node, linkName)) === undefined ? true : undefined,
      );
    }
  }

  test(
    "lab up: API server on the bridge, two guests, Node objects, the chart's objects from deploy/manifests/, " +
      'an agent per node as its ServiceAccount',
    async () => {
      await lab.start(() => startClusterLab());
      // Everything a user's `kubectl apply -f deploy/manifests/` creates. Its DaemonSet gets no
      // pods (no kubelet, no controller-manager); the agents are started in the guests below.
      await kubectl(['apply', '-f', join(REPO, 'deploy/manifests/ipip-operator.yaml')]);
      const kubeconfig = await L().serviceAccountKubeconfig(SA.namespace, SA.name);
      agentArgs = [
        '--kubeconfig',
        kubeconfig,
        '--lease-namespace',
        SA.namespace,
        '--resync-period',
        '3s',
        '--log-format',
        'text',
      ];
      for (const node of NODES) await L().startAgent(node, agentArgs);
      for (const node of NODES) await L().waitAgentReady(node);
      // A healthy start is no API error on the metrics users alert on: the first agent's
      // read of a Lease that does not exist yet (404) is an answer, not a failure.
      for (const node of NODES) {
        const metrics = await agentMetrics(L().guest(node));
        const leaseReads = metricSum(metrics, 'ipip_operator_apiserver_requests_total', {
          verb: 'get',
          result: 'success',
        });
        assert.notEqual(leaseReads, 0, `${node} read the Lease:\n${metrics}`);
        const errors = samples(metrics, 'ipip_operator_apiserver_requests_total', { result: 'error' })
          .filter((x) => x.value !== 0)
          .map((x) => x.line);
        assert.deepEqual(errors, [], `${node} counted API errors on a healthy start`);
      }
    },
  );

  test('the example: each agent writes its own IpipNode, the aggregate says 2/2, ping crosses the tunnel', async () => {
    await apply(example());
    const t = await readyTunnel('lab');
    for (const node of NODES) {
      const own = await ipipNode(node);
      assert.deepEqual(
        own?.tunnels?.map((e) => [e.name, e.ready, e.reason, e.underlayAddress, e.observedGeneration]),
        [['lab', true, 'Programmed', LAB_NODES[node], 1]],
      );
      assert.equal(own?.readySummary, '1/1');
    }
    // Each agent writes only its own IpipNode; the tunnel's status has the aggregate's manager alone.
    const managers = async (args: string[]) => {
      const o = JSON.parse(await kubectl(['get', ...args, '-o', 'json', '--show-managed-fields'])) as {
        metadata: { managedFields: Array<{ manager: string; subresource?: string }> };
      };
      return o.metadata.managedFields.filter((f) => f.manager.startsWith('ipip-operator')).map((f) => f.manager);
    };
    assert.deepEqual(await managers(['ipiptunnel', 'lab']), ['ipip-operator-aggregate']);
    for (const node of NODES) assert.deepEqual(await managers(['ipipnode', node]), [`ipip-operator-node/${node}`]);
    assert.equal(t.status?.readySummary, '2/2');
    assert.match(await kubectl(['get', 'ipt', 'lab']), /^lab\s+ipip\s+2\/2\s/m, 'kubectl get ipt shows READY 2/2');
    assert.match(await kubectl(['get', 'ipn']), /^node-a\s+1\/1\s/m, 'kubectl get ipn shows READY 1/1');

    for (const node of NODES) {
      const l = await link(node, 'ipiptun');
      assert.equal(l?.linkinfo?.info_kind, 'ipip');
      assert.equal(l?.ifalias, 'ipip-operator/lab');
    }
    assert.ok(await ping('node-a', '172.0.0.3'), 'node-a pings node-b through the tunnel');
    assert.ok(await ping('node-b', '172.0.0.2'), 'node-b pings node-a through the tunnel');

    const lease = JSON.parse(
      await kubectl(['get', 'lease', 'ipip-operator-status', '-n', SA.namespace, '-o', 'json']),
    ) as { spec: { holderIdentity: string } };
    assert.ok(
      NODES.includes(lease.spec.holderIdentity as Node),
      `one agent holds the lease: ${lease.spec.holderIdentity}`,
    );
    // Events are recorded in the background, after the status writes (best effort): the
    // tunnel can be READY 2/2 before the second node's Event is written.
    const programmed = await eventually('a Programmed Event from each node', async () => {
      const hosts = (await L().tunnelEvents('lab'))
        .filter((e) => e.reason === 'Programmed')
        .map((e) => e.source.host)
        .sort();
      return hosts.length >= 2 && hosts;
    });
    assert.deepEqual(programmed, ['node-a', 'node-b'], 'a Programmed Event from each node, and no more');
  });

  test('status is written only when it changes: resyncs every 3 s leave the tunnel and the IpipNodes alone', async () => {
    const before = (await tunnel('lab'))!.metadata.resourceVersion;
    const nodesBefore = await Promise.all(NODES.map(async (n) => (await ipipNode(n))?.metadata.resourceVersion));
    // Not just time passing: each agent has reconciled at least twice more since.
    const base = await reconciles();
    const now = await eventually('two more reconciles on each node (resync every 3 s)', async () => {
      const counts = await reconciles();
      return counts.every((c, i) => c >= base[i]! + 2) ? counts : undefined;
    });
    assert.equal(
      (await tunnel('lab'))!.metadata.resourceVersion,
      before,
      `reconciles ${base.join(', ')} -> ${now.join(', ')} on ${NODES.join(', ')}`,
    );
    assert.deepEqual(
      await Promise.all(NODES.map(async (n) => (await ipipNode(n))?.metadata.resourceVersion)),
      nodesBefore,
      'no IpipNode written either',
    );
  });

  test('a spec change reaches both kernels in place, and observedGeneration follows everywhere', async () => {
    const indexBefore = await Promise.all(NODES.map(async (n) => (await link(n, 'ipiptun'))?.ifindex));
    await apply(
      example((t) => {
        t.spec.ttl = 32;
      }),
    );
    const t = await readyTunnel('lab');
    assert.equal(t.metadata.generation, 2);
    assert.equal(t.status?.observedGeneration, 2);
    assert.ok(t.status?.conditions?.every((c) => c.observedGeneration === 2));
    for (const node of NODES) assert.equal((await entryOf(node, 'lab'))?.observedGeneration, 2);
    for (const [i, node] of NODES.entries()) {
      const l = await link(node, 'ipiptun');
      assert.equal(l?.linkinfo?.info_data?.ttl, 32);
      assert.equal(l?.ifindex, indexBefore[i], 'changed in place');
    }
  });

  test('losing the API server tears nothing down; after a restart the agents catch up (a fresh list: after 410, or after failed watches)', async () => {
    // What shows that an agent noticed the server is gone: its reflector logs a failed
    // watch or list, or a request is counted as an error.
    const failedLines = async (node: Node) =>
      ((await L().agentLog(node)).match(/watch failed; reconnecting|list failed; keeping the last known state/g) ?? [])
        .length;
    const apiErrors = async (node: Node) =>
      metricSum(await agentMetrics(L().guest(node)), 'ipip_operator_apiserver_requests_total', { result: 'error' });
    // Fresh lists that are not the first: after a watch expired (410) or failed 5 times in a row.
    const relists = async (node: Node) => {
      const m = await agentMetrics(L().guest(node));
      return (
        metricSum(m, 'ipip_operator_watch_lists_total', { reason: 'expired' }) +
        metricSum(m, 'ipip_operator_watch_lists_total', { reason: 'error' })
      );
    };
    const before = await Promise.all(
      NODES.map(async (n) => ({ lines: await failedLines(n), errors: await apiErrors(n), relists: await relists(n) })),
    );
    await L().api.pause();
    // Resumed whatever happens here: a server left down would fail every test after this one.
    try {
      for (const [i, node] of NODES.entries()) {
        await eventually(
          `${node}'s agent to notice the API server is gone`,
          async () => (await failedLines(node)) > before[i]!.lines || (await apiErrors(node)) > before[i]!.errors,
        );
      }
      // And each has reconciled its kernel since, without the server: two more passes, so at
      // least one began after it noticed.
      const noticed = await reconciles();
      await eventually('two more reconciles on each node while the API server is away', async () =>
        (await reconciles()).every((c, i) => c >= noticed[i]! + 2),
      );
      for (const node of NODES)
        assert.ok(await link(node, 'ipiptun'), `${node} keeps its tunnel while the API server is away`);
      // Three echoes, any answered: one lost on a loaded machine is not a torn-down tunnel.
      if (!(await ping('node-a', '172.0.0.3', 3))) assert.fail(`node-a cannot reach 172.0.0.3\n${await tunnelState()}`);
    } finally {
      await L().api.resume();
    }
    await apply(
      example((t) => {
        t.spec.ttl = 16;
      }),
    );
    const t = await readyTunnel('lab');
    assert.equal(t.status?.observedGeneration, 3);
    for (const node of NODES) assert.equal((await link(node, 'ipiptun'))?.linkinfo?.info_data?.ttl, 16);
    // A restarted API server starts its watch cache afresh: the old resourceVersion is too old
    // (410), or, while it is still starting (429, 403 before its RBAC cache is filled), the
    // watches fail until the reflector lists afresh. Either way the agent lists again.
    for (const [i, node] of NODES.entries()) {
      await eventually(`${node} listed afresh after the restart`, async () =>
        (await relists(node)) > before[i]!.relists ? true : undefined,
      );
    }
  });

  test('deleting the tunnel removes its links and routes from both kernels', async () => {
    await deleteAndWaitClean('lab', 'ipiptun');
    for (const node of NODES) {
      assert.equal((await routes(L().guest(node), 'proto 203')).trim(), '', `${node} has no route of ours left`);
    }
  });

  test('a remote underlay given as an interface is read from the IpipNode its own agent published', async () => {
    await apply(
      example((t) => {
        t.metadata.name = 'by-interface';
        t.spec.linkName = 'ipipif';
        for (const e of t.spec.endpoints) e.underlay = { interface: 'eth1' };
      }),
    );
    await readyTunnel('by-interface');
    for (const node of NODES) assert.equal((await entryOf(node, 'by-interface'))?.underlayAddress, LAB_NODES[node]);
    assert.equal((await link('node-a', 'ipipif'))?.linkinfo?.info_data?.remote, LAB_NODES['node-b']);
    assert.ok(await ping('node-a', '172.0.0.3'));
    await deleteAndWaitClean('by-interface', 'ipipif');
  });

  test("without an underlay, an endpoint's address is its Node's InternalIP", async () => {
    await apply(
      example((t) => {
        t.metadata.name = 'by-node';
        t.spec.linkName = 'ipipnode';
        for (const e of t.spec.endpoints) delete e.underlay;
      }),
    );
    await readyTunnel('by-node');
    const l = await link('node-a', 'ipipnode');
    assert.equal(l?.linkinfo?.info_data?.local, LAB_NODES['node-a']);
    assert.equal(l?.linkinfo?.info_data?.remote, LAB_NODES['node-b']);
    assert.ok(await ping('node-b', '172.0.0.2'));
  });

  test('an endpoint moved to another node is cleaned from the node it left, entry and all; the tunnel waits for the new node', async () => {
    await apply(
      example((t) => {
        t.metadata.name = 'by-node';
        t.spec.linkName = 'ipipnode';
        for (const e of t.spec.endpoints) delete e.underlay;
        t.spec.endpoints[1]!.nodeName = 'node-c'; // no such Node: no InternalIP known
      }),
    );
    await eventually('node-b cleaned', async () =>
      (await link('node-b', 'ipipnode')) === undefined ? true : undefined,
    );
    await eventually('node-b entry gone, node-a waiting', async () => {
      const x = await tunnel('by-node');
      const a = await entryOf('node-a', 'by-node');
      const b = await entryOf('node-b', 'by-node');
      return b === undefined && a?.reason === 'RemoteUnderlayUnknown' && a.observedGeneration === x?.metadata.generation
        ? true
        : undefined;
    });
    const t = await eventually('the aggregate 0/2 at the new generation', async () => {
      const x = await tunnel('by-node');
      return x?.status?.readySummary === '0/2' && x.status.observedGeneration === x.metadata.generation ? x : undefined;
    });
    assert.ok(await link('node-a', 'ipipnode'), 'node-a keeps what it has while it waits');
    const ready = t.status?.conditions?.find((c) => c.type === 'Ready');
    const degraded = t.status?.conditions?.find((c) => c.type === 'Degraded');
    assert.equal(ready?.status, 'False');
    assert.equal(degraded?.status, 'False', 'waiting is not an error');
    await deleteAndWaitClean('by-node', 'ipipnode');
  });

  test('a problem only the agent can see is a Warning Event and a Degraded condition, and changes nothing', async () => {
    await apply(
      example((t) => {
        t.metadata.name = 'bad-iface';
        t.spec.linkName = 'ipipbad';
        t.spec.endpoints[0]!.underlay = { interface: 'eth9' };
      }),
    );
    const t = await eventually('Degraded', async () => {
      const x = await tunnel('bad-iface');
      return x?.status?.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True') ? x : undefined;
    });
    assert.equal(t.status?.conditions?.find((c) => c.type === 'Degraded')?.reason, 'UnderlayInterfaceNotFound');
    assert.equal(await link('node-a', 'ipipbad'), undefined);
    // The Event is recorded in the background (as in the example's test): Degraded can come first.
    const warning = await eventually('a Warning Event UnderlayInterfaceNotFound', async () =>
      (await L().tunnelEvents('bad-iface')).find(
        (e) => e.type === 'Warning' && e.reason === 'UnderlayInterfaceNotFound',
      ),
    );
    assert.match(warning.message, /node node-a: interface eth9 does not exist/);
    await kubectl(['delete', 'ipiptunnel', 'bad-iface']);
  });

  test("a tunnel deleted while an agent was stopped is removed from that node's kernel when the agent starts again", async () => {
    await apply(
      example((t) => {
        t.metadata.name = 'while-away';
        t.spec.linkName = 'ipipaway';
      }),
    );
    await readyTunnel('while-away');
    const exit = await L().stopAgent('node-a');
    assert.equal(exit.killed, false, 'the agent stops on SIGTERM');
    await kubectl(['delete', 'ipiptunnel', 'while-away', '--wait=true']);
    await eventually('ipipaway gone from node-b', async () =>
      (await link('node-b', 'ipipaway')) === undefined ? true : undefined,
    );
    assert.ok(await link('node-a', 'ipipaway'), 'a stopped agent leaves its kernel as it is');
    assert.notEqual((await routes(L().guest('node-a'), 'proto 203')).trim(), '');

    await L().startAgent('node-a', agentArgs);
    await eventually('ipipaway gone from node-a after the agent started', async () =>
      (await link('node-a', 'ipipaway')) === undefined ? true : undefined,
    );
    assert.equal((await routes(L().guest('node-a'), 'proto 203')).trim(), '', 'its routes went with it');
    await L().waitAgentReady('node-a');
  });

  test('RBAC: the ServiceAccount can do what the agent needs and nothing more, and the role matches the documented list', async () => {
    const as = `system:serviceaccount:${SA.namespace}:${SA.name}`;
    const can = async (args: string[]) => (await L().api.kubectl(['auth', 'can-i', '--as', as, ...args])).stdout.trim();
    assert.equal(await can(['watch', 'ipiptunnels.tunnel.ipip-operator.dev']), 'yes');
    assert.equal(await can(['patch', 'ipiptunnels.tunnel.ipip-operator.dev', '--subresource=status']), 'yes');
    assert.equal(await can(['create', 'ipipnodes.tunnel.ipip-operator.dev']), 'yes');
    assert.equal(await can(['patch', 'ipipnodes.tunnel.ipip-operator.dev']), 'yes');
    for (const denied of [
      ['update', 'ipiptunnels.tunnel.ipip-operator.dev'],
      ['delete', 'ipiptunnels.tunnel.ipip-operator.dev'],
      ['patch', 'ipiptunnels.tunnel.ipip-operator.dev'],
      ['delete', 'ipipnodes.tunnel.ipip-operator.dev'],
      ['get', 'secrets', '-A'],
      ['patch', 'nodes'],
      ['create', 'events', '-n', 'kube-system'],
      ['update', 'leases', '-n', 'kube-system'],
    ])
      assert.equal(await can(denied), 'no', `must not: ${denied.join(' ')}`);

    const documented = documentedRules();
    const granted = grantedRules();
    assert.deepEqual(
      granted,
      documented,
      "the roles of deploy/manifests/ (the chart) and the README's Permissions table must list the same rules",
    );
  });
});

/** "scope | apiGroup | resource | verbs" rows, normalised and sorted. */
type Rule = string;

function rule(scope: string, group: string, resource: string, verbs: string[], names: string[] = []): Rule {
  return `${scope} ${group === '' ? 'core' : group} ${resource}${names.length > 0 ? `/${names.sort().join(',')}` : ''} ${[...verbs].sort().join(',')}`;
}

/** The roles of the chart, as rendered with default values into deploy/manifests/. */
function grantedRules(): Rule[] {
  const docs = parseAllDocuments(readFileSync(join(REPO, 'deploy/manifests/ipip-operator.yaml'), 'utf8')).map(
    (d) => d.toJS() as Record<string, any> | null,
  );
  const rules: Rule[] = [];
  for (const d of docs) {
    if (d === null || (d.kind !== 'ClusterRole' && d.kind !== 'Role')) continue;
    const scope = d.kind === 'ClusterRole' ? 'cluster' : `namespace:${d.metadata.namespace}`;
    for (const r of d.rules as Array<{
      apiGroups: string[];
      resources: string[];
      verbs: string[];
      resourceNames?: string[];
    }>) {
      for (const g of r.apiGroups)
        for (const res of r.resources) rules.push(rule(scope, g, res, r.verbs, r.resourceNames));
    }
  }
  return rules.sort();
}

/** The README's Permissions table: | Scope | API group | Resource | Verbs | Why | */
function documentedRules(): Rule[] {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Permissions'));
  if (section === undefined) throw new Error('README.md has no "## Permissions" section');
  const rows = section.split('\n').filter((l) => /^\|\s*`/.test(l));
  return rows
    .map((row) => {
      const [scope, group, resource, verbs] = row
        .split('|')
        .slice(1, 5)
        .map((c) => c.trim().replace(/`/g, ''));
      const [res, names] = resource!.split(' named ');
      return rule(
        scope!,
        group === 'core' ? '' : group!,
        res!,
        verbs!.split(/,\s*/),
        names === undefined ? [] : names.split(/,\s*/),
      );
    })
    .sort();
}
