// The in-cluster agent's cost, reported in bench/RESULTS.md:  node bench/cluster.ts [N]
// The cluster lab (test/harness/cluster-lab.ts): one agent on node-a (a UML guest) as the
// chart's ServiceAccount (deploy/manifests/), against a real API server. N tunnels from
// node-a to N remote Nodes (Node objects with an InternalIP; no agent runs for them, so the
// aggregate stays 1/2 and node-a's entries are what is measured). Reported: the time
// until node-a's IpipNode has all N entries ready, the agent's RSS idle before and after, and what
// one idle minute costs, once status writes have stopped: API requests by verb, objects
// written, reconciles. Times are from the one `kubectl apply` of the N tunnels.
// Then N more tunnels between the remote Nodes only (none names node-a): node-a, the Lease
// holder, writes their aggregates, and what that churn costs node-a's kernel side is
// counted (reconciles of node-a while they are applied and aggregated).

import { join } from 'node:path';
import { kubectlOk } from '../test/harness/apiserver.ts';
import { startClusterLab } from '../test/harness/cluster-lab.ts';
import { agentMetrics, metricSum } from '../test/harness/probes.ts';
import { REPO } from '../test/harness/repo.ts';
import { eventually } from '../test/harness/support.ts';

const n = Number(process.argv[2] ?? 100);
const IDLE_MS = 60_000;
const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

const lab = await startClusterLab();
try {
  const kubectl = (args: string[], input?: string) => kubectlOk(lab.api, args, input, 300_000);
  await kubectl(['apply', '-f', join(REPO, 'deploy/manifests/ipip-operator.yaml')]);
  const kubeconfig = await lab.serviceAccountKubeconfig('ipip-operator', 'ipip-operator');
  await lab.startAgent('node-a', [
    '--kubeconfig',
    kubeconfig,
    '--lease-namespace',
    'ipip-operator',
    '--log-level',
    process.env.BENCH_LOG_LEVEL ?? 'warn',
  ]);
  const guest = lab.guest('node-a');
  const metrics = () => agentMetrics(guest);
  const rssMiB = async () => {
    const pid = (await guest.ok('pgrep -f "src/cli/main.ts agent"')).trim().split('\n')[0];
    return Math.round(Number((await guest.ok(`ps -o rss= -p ${pid}`)).trim()) / 1024);
  };
  type Listed = {
    metadata: { name: string };
    status?: { readySummary?: string };
  };
  /** Polls every second until n tunnels satisfy `counts` (at most 600 s from `since`); the seconds since `since`. */
  const untilTunnels = async (what: string, since: number, counts: (t: Listed) => boolean): Promise<number> => {
    await eventually(
      `${n} tunnels ${what}`,
      async () => {
        const list = JSON.parse(await kubectl(['get', 'ipiptunnels', '-o', 'json'])) as { items: Listed[] };
        return list.items.filter(counts).length >= n;
      },
      { timeoutMs: 600_000 - (Date.now() - since), intervalMs: 1000 },
    );
    return (Date.now() - since) / 1000;
  };
  await lab.waitAgentReady('node-a', 60_000);
  // RSS idle: 5 s after it got ready, with no tunnel.
  await new Promise((r) => setTimeout(r, 5000));
  const rssEmpty = await rssMiB();

  // N remote Nodes, then N tunnels, each one apply.
  const remote = (i: number) => `10.77.${Math.floor(i / 250)}.${(i % 250) + 1}`;
  const nodes = Array.from({ length: n }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: `remote-${i}` },
  }));
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nodes }));
  for (let i = 0; i < n; i++) await lab.setNodeInternalIP(`remote-${i}`, remote(i));
  const tunnels = Array.from({ length: n }, (_, i) => ({
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    kind: 'IpipTunnel',
    metadata: { name: `t${i}` },
    spec: {
      linkName: `ipb${i}`,
      endpoints: [
        {
          nodeName: 'node-a',
          underlay: { interface: 'eth1' },
          overlayAddress: `172.30.${Math.floor(i / 100)}.${(i % 100) * 2 + 1}`,
        },
        { nodeName: `remote-${i}`, overlayAddress: `172.30.${Math.floor(i / 100)}.${(i % 100) * 2 + 2}` },
      ],
    },
  }));
  const t0 = Date.now();
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: tunnels }));
  await eventually(
    `node-a's IpipNode with ${n} tunnels ready`,
    async () => {
      const r = await lab.api.kubectl(['get', 'ipipnode', 'node-a', '-o', 'jsonpath={.readySummary}']);
      return r.code === 0 && r.stdout.trim() === `${n}/${n}`;
    },
    { timeoutMs: 600_000, intervalMs: 1000 },
  );
  const convergeS = (Date.now() - t0) / 1000;
  // Then the aggregate: 1/2 everywhere (the remotes run no agent).
  const aggregateS = await untilTunnels('aggregated 1/2', t0, (t) => t.status?.readySummary === '1/2');
  const links = Number((await guest.ok('ip -o link show type ipip | grep -c "alias ipip-operator/" || true')).trim());

  // Quiet: no status write for 15 s (the last aggregates and entries settle), read every 5 s.
  let applies = -1;
  let still = 0;
  await eventually(
    'no status write for 15 s',
    async () => {
      const now = metricSum(await metrics(), 'ipip_operator_apiserver_requests_total', { verb: 'apply' });
      still = now === applies ? still + 1 : 0;
      applies = now;
      return still >= 3;
    },
    { timeoutMs: 900_000 - (Date.now() - t0), intervalMs: 5000 },
  );
  const quietS = (Date.now() - t0) / 1000 - 15;
  const before = await metrics();
  const rvBefore = await kubectl([
    'get',
    'ipiptunnels',
    '-o',
    'jsonpath={range .items[*]}{.metadata.resourceVersion} {end}',
  ]);
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const after = await metrics();
  const rvAfter = await kubectl([
    'get',
    'ipiptunnels',
    '-o',
    'jsonpath={range .items[*]}{.metadata.resourceVersion} {end}',
  ]);
  const rssLoaded = await rssMiB();
  const heapMiB = (metricSum(after, 'nodejs_heap_size_used_bytes') / 2 ** 20).toFixed(1);
  const delta = (name: string, labels: Record<string, string> = {}) =>
    metricSum(after, name, labels) - metricSum(before, name, labels);
  const verbs = ['list', 'watch', 'get', 'create', 'update', 'apply', 'patch']
    .map((v) => [v, delta('ipip_operator_apiserver_requests_total', { verb: v })] as const)
    .filter(([, d]) => d > 0);
  const changedObjects = rvBefore.split(' ').filter((rv, i) => rv !== rvAfter.split(' ')[i]).length;

  say(
    `| tunnels on the node | node's entries all ready (s) | aggregates all 1/2 (s) | last status ` +
      `write (s) | status writes in all | links in the kernel | RSS idle, no tunnels (MiB) | RSS idle, ` +
      `${n} tunnels (MiB) |`,
  );
  say('|---:|---:|---:|---:|---:|---:|---:|---:|');
  say(
    `| ${n} | ${convergeS.toFixed(1)} | ${aggregateS.toFixed(1)} | ${quietS.toFixed(1)} | ${applies} | ${links} | ${rssEmpty} | ${rssLoaded} |`,
  );
  say('');
  say(
    `One idle minute with ${n} tunnels and the default 60 s resync: ${delta('ipip_operator_reconcile_total')} reconciles ` +
      `(${delta('ipip_operator_ip_commands_total')} ip processes), ${changedObjects} tunnel objects written, API requests: ` +
      `${verbs.length === 0 ? 'none' : verbs.map(([v, d]) => `${v} ${d}`).join(', ')}; JS heap used ${heapMiB} MiB.`,
  );

  // Foreign churn: N tunnels that do not name node-a, aggregated by node-a (the leader).
  const foreign = Array.from({ length: n }, (_, i) => ({
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    kind: 'IpipTunnel',
    metadata: { name: `f${i}` },
    spec: {
      linkName: `ipf${i}`,
      endpoints: [
        { nodeName: `remote-${i}`, overlayAddress: `172.31.${Math.floor(i / 100)}.${(i % 100) * 2 + 1}` },
        { nodeName: `remote-${(i + 1) % n}`, overlayAddress: `172.31.${Math.floor(i / 100)}.${(i % 100) * 2 + 2}` },
      ],
    },
  }));
  const churnBefore = await metrics();
  const t1 = Date.now();
  await kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: foreign }));
  const churnS = await untilTunnels(
    'between other nodes aggregated 0/2',
    t1,
    (t) => t.metadata.name.startsWith('f') && t.status?.readySummary === '0/2',
  );
  const churnAfter = await metrics();
  const churn = (name: string, labels: Record<string, string> = {}) =>
    metricSum(churnAfter, name, labels) - metricSum(churnBefore, name, labels);
  say('');
  say(
    `${n} tunnels between other nodes applied and aggregated (0/2) by node-a in ${churnS.toFixed(1)} s: ` +
      `${churn('ipip_operator_apiserver_requests_total', { verb: 'apply' })} aggregate writes, ` +
      `${churn('ipip_operator_reconcile_total')} reconciles of node-a (${churn('ipip_operator_ip_commands_total')} ip processes).`,
  );
} finally {
  if (process.env.BENCH_LOG_LEVEL !== undefined) process.stderr.write(await lab.agentLog('node-a'));
  await lab.stop();
}
