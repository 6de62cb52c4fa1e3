// The cluster at scale, reported in bench/RESULTS.md:  node bench/cluster-scale.ts [N] [NODES]
// The cluster lab (test/harness/cluster-lab.ts) with NODES guests (default 3: node-a,
// node-b, node-c), an agent on each as the chart's ServiceAccount (deploy/manifests/), and
// N point-to-point IpipTunnels (default 1000) between them, spread evenly over every pair
// of nodes, created at once with one `kubectl create` (one POST each). Both ends of every
// tunnel run an agent, so every tunnel can become READY 2/2. The kernel gives one IPIP
// device per (local, remote) pair, so each node gets M extra underlay addresses on eth1
// (10.81.K.1-M/16, all on the lab bridge) and the tunnels of a pair of nodes use distinct
// pairs of them (M*M >= the tunnels of a pair).
//
// Measured, from the API server's own counters (apiserver_request_total and
// apiserver_watch_events_sizes, before/after) and from a watch of the bench's own on
// IpipTunnels and IpipNodes (kubectl get -w: one LIST and one WATCH each, before the first
// snapshot): the time from the create to every aggregate READY 2/2; the API requests of
// the agents per tunnel by verb and resource (the bench's own creates are resource
// ipiptunnels with verb CREATE, which no agent uses, and are left out); the status writes
// (IpipNode applies, aggregate applies) and how many READY values each tunnel passed
// through; the bytes each agent received from its watches; the agents' RSS and heap; then
// one idle minute: writes by verb and resource, and what the agents did (reconciles).
// BENCH_GUEST_MEM_MB (default 1024) is each guest's memory; BENCH_CPU_PROF=1 runs the
// agents with --cpu-prof and prints each one's top functions by self time at the end.

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { kubectlOk } from '../test/harness/apiserver.ts';
import { serverMetrics } from './apiserver-metrics.ts';
import { startClusterLab } from '../test/harness/cluster-lab.ts';
import type { ClusterLab } from '../test/harness/cluster-lab.ts';
import { AGENT_METRICS_PORT, metricSum } from '../test/harness/probes.ts';
import { REPO } from '../test/harness/repo.ts';
import { eventually } from '../test/harness/support.ts';
import { clusterScale } from './tunnels.ts';

const n = Number(process.argv[2] ?? 1000);
const nodeCount = Number(process.argv[3] ?? 3);
if (!Number.isInteger(n) || n < 1 || !Number.isInteger(nodeCount) || nodeCount < 2 || nodeCount > 26)
  throw new Error('usage: node bench/cluster-scale.ts [TUNNELS >= 1] [NODES 2..26]');
const memMB = Number(process.env.BENCH_GUEST_MEM_MB ?? 1024);
const cpuProf = process.env.BENCH_CPU_PROF === '1';
const IDLE_MS = 60_000;
const QUIET_MS = 15_000;
const PROF_DIR = '/run/lab/prof';

const say = (s: string) => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);

const nodes = Array.from({ length: nodeCount }, (_, i) => `node-${String.fromCharCode(97 + i)}`);
const scale = clusterScale(n, nodes);
const { pairs, perNode } = scale;

function diff(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of b) if (v - (a.get(k) ?? 0) !== 0) out.set(k, v - (a.get(k) ?? 0));
  return out;
}

interface Seen {
  at: number;
  name: string;
  rv: string;
  summary: string;
}

/**
 * `kubectl get RESOURCE --watch` in the lab's namespace, one line per object version
 * (name, resourceVersion, READY); the initial list's lines included. kubectl exits when the
 * server ends its watch: it is started again (a LIST and a WATCH more, counted in
 * `restarts`), and a version seen twice is kept once.
 */
function watchResource(
  lab: ClusterLab,
  resource: string,
  summaryPath: string,
): { seen: Seen[]; lastAt: () => number; restarts: () => number; stop: () => void } {
  const api = lab.api;
  const seen: Seen[] = [];
  const versions = new Set<string>();
  let last = Date.now();
  let restarts = -1;
  let stopped = false;
  let child: ReturnType<typeof spawn> | undefined;
  const start = () => {
    restarts += 1;
    const c = spawn(
      'ip',
      [
        'netns',
        'exec',
        lab.netns,
        join(api.binDir, 'kubectl'),
        'get',
        resource,
        '--watch',
        '-o',
        `jsonpath={.metadata.name} {.metadata.resourceVersion} {${summaryPath}}{"\\n"}`,
      ],
      {
        env: { ...process.env, KUBECONFIG: api.kubeconfig, KUBECACHEDIR: join(api.dir, 'kube-cache') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child = c;
    createInterface({ input: c.stdout! }).on('line', (line) => {
      const [name = '', rv = '', summary = ''] = line.trim().split(' ');
      if (name === '' || versions.has(`${name} ${rv}`)) return;
      versions.add(`${name} ${rv}`);
      last = Date.now();
      seen.push({ at: last, name, rv, summary });
    });
    c.stderr!.setEncoding('utf8').on('data', (chunk: string) => note(`kubectl watch ${resource}: ${chunk.trim()}`));
    c.on('exit', (code, signal) => {
      if (stopped) return;
      note(`kubectl watch ${resource} ended (${code ?? signal}); watching again`);
      start();
    });
  };
  start();
  return {
    seen,
    lastAt: () => last,
    restarts: () => restarts,
    stop: () => {
      stopped = true;
      child?.kill('SIGTERM');
    },
  };
}

/** The agent's metrics we read, grepped in the guest (its exposition has series per tunnel). */
async function agentNumbers(lab: ClusterLab, node: string): Promise<string> {
  const wanted =
    'ipip_operator_(reconcile_total|apiserver_requests_total|ip_commands_total|nft_commands_total)|' +
    'ipip_operator_reconcile_duration_seconds_(sum|count)|ipip_operator_watch_lists_total|' +
    'nodejs_heap_size_used_bytes|process_cpu_seconds_total|process_resident_memory_bytes';
  return lab
    .guest(node)
    .ok(`curl -sS --max-time 20 http://127.0.0.1:${AGENT_METRICS_PORT}/metrics | grep -E '^(${wanted})'`, 60_000);
}

async function rssMiB(lab: ClusterLab, node: string): Promise<number> {
  // The agent's node process (the largest of what matches, should a wrapper match too).
  const out = await lab
    .guest(node)
    .ok(`for p in $(pgrep -f "src/cli/main.ts agent"); do ps -o rss= -p $p; done | sort -n | tail -n 1`);
  return Math.round(Number(out.trim()) / 1024);
}

const lab = await startClusterLab({ nodes, guestMemMB: memMB });
const watchers: Array<{ stop: () => void }> = [];
try {
  const kubectl = (args: string[], input?: string) => kubectlOk(lab.api, args, input, 300_000);
  await kubectl(['apply', '-f', join(REPO, 'deploy/manifests/ipip-operator.yaml')]);
  const kubeconfig = await lab.serviceAccountKubeconfig('ipip-operator', 'ipip-operator');
  // Each node's extra underlay addresses, all in 10.81.0.0/16 on eth1 (the lab bridge).
  await Promise.all(
    nodes.map((node, k) => lab.guest(node).ok(`ip -batch - <<'EOF'\n${scale.underlayCommands(k)}\nEOF`, 60_000)),
  );
  await Promise.all(
    nodes.map((node) =>
      lab.startAgent(
        node,
        ['--kubeconfig', kubeconfig, '--lease-namespace', 'ipip-operator', '--log-level', 'warn'],
        cpuProf ? { env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${PROF_DIR}` } } : {},
      ),
    ),
  );
  await Promise.all(nodes.map((node) => lab.waitAgentReady(node, 120_000)));
  await new Promise((r) => setTimeout(r, 5000));
  const rssEmpty = await Promise.all(nodes.map((node) => rssMiB(lab, node)));
  note(`agents ready; RSS with no tunnel ${rssEmpty.join(', ')} MiB; ${perNode} underlay addresses per node`);

  const tunnels = watchResource(lab, 'ipiptunnels', '.status.readySummary');
  const ipipNodes = watchResource(lab, 'ipipnodes', '.readySummary');
  watchers.push(tunnels, ipipNodes);
  await new Promise((r) => setTimeout(r, 3000)); // both watches listed and watching
  const agents0 = await Promise.all(nodes.map((node) => agentNumbers(lab, node)));
  const m0 = await serverMetrics(lab.api);
  const t0 = Date.now();
  await kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: scale.tunnels() }));
  const createdS = (Date.now() - t0) / 1000;
  note(`${n} tunnels created in ${createdS.toFixed(1)} s`);

  /** name -> its latest READY; filled from the watch as it goes. */
  const latest = (seen: Seen[]) => {
    const m = new Map<string, Seen>();
    for (const s of seen) m.set(s.name, s);
    return m;
  };
  const readyCounts = () => {
    const counts = new Map<string, number>();
    for (const s of latest(tunnels.seen).values()) counts.set(s.summary, (counts.get(s.summary) ?? 0) + 1);
    return JSON.stringify(Object.fromEntries(counts));
  };
  let progressAt = Date.now();
  const allReadyAt = await eventually(
    `${n} tunnels READY 2/2`,
    async () => {
      if (Date.now() - progressAt >= 15_000) {
        progressAt = Date.now();
        const nodesNow = [...latest(ipipNodes.seen).values()].map((s) => `${s.name} ${s.summary}`).join(', ');
        note(`READY ${readyCounts()}; IpipNodes ${nodesNow}`);
      }
      const now = latest(tunnels.seen);
      const ready = [...now.values()].filter((s) => s.summary === '2/2').length;
      return ready >= n ? Math.max(...[...now.values()].map((s) => s.at)) : undefined;
    },
    {
      timeoutMs: 600_000,
      intervalMs: 1000,
      context: async () => `READY now: ${readyCounts()}\n${await lab.agentLogTails()}`,
    },
  );
  const readyS = (allReadyAt - t0) / 1000;
  note(`all READY 2/2 after ${readyS.toFixed(1)} s`);
  // Every node's own entries all ready: when its IpipNode said so last (first time it did).
  const nodeReadyS = nodes.map((node) => {
    const first = ipipNodes.seen.find((s) => {
      if (s.name !== node) return false;
      const [ready, all] = s.summary.split('/');
      return ready === all && Number(all) > 0 && Number(all) === expectedEntries(node);
    });
    return first === undefined ? Number.NaN : (first.at - t0) / 1000;
  });

  // Quiet: no watch event on either resource for QUIET_MS, then the writes stopped.
  await eventually(
    `no IpipTunnel or IpipNode written for ${QUIET_MS / 1000} s`,
    async () => Date.now() - Math.max(tunnels.lastAt(), ipipNodes.lastAt()) >= QUIET_MS,
    { timeoutMs: 300_000, intervalMs: 1000 },
  );
  const lastWriteS = (Math.max(tunnels.lastAt(), ipipNodes.lastAt()) - t0) / 1000;
  const m1 = await serverMetrics(lab.api);
  const agents1 = await Promise.all(nodes.map((node) => agentNumbers(lab, node)));
  const rssLoaded = await Promise.all(nodes.map((node) => rssMiB(lab, node)));
  const links = await Promise.all(
    nodes.map(async (node) =>
      Number((await lab.guest(node).ok('ip -o link show type ipip | grep -c "alias ipip-operator/" || true')).trim()),
    ),
  );
  const seenBefore = tunnels.seen.length + ipipNodes.seen.length;

  note('idle minute');
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const m2 = await serverMetrics(lab.api);
  const agents2 = await Promise.all(nodes.map((node) => agentNumbers(lab, node)));
  const seenIdle = tunnels.seen.length + ipipNodes.seen.length - seenBefore;

  // --- What the numbers say ---
  const run = diff(m0, m1);
  const idle = diff(m1, m2);
  const get = (m: Map<string, number>, k: string) => m.get(k) ?? 0;
  const aggregateWrites = get(run, 'requests APPLY ipiptunnels/status');
  const nodeWrites = get(run, 'requests APPLY ipipnodes');
  // Writes that changed something: the watch sees one version per change (no-op applies make none).
  const versions = new Map<string, string[]>();
  for (const s of tunnels.seen) {
    const v = versions.get(s.name) ?? [];
    v.push(s.summary === '' ? '-' : s.summary);
    versions.set(s.name, v);
  }
  const paths = new Map<string, number>();
  let maxChanges = 0;
  for (const v of versions.values()) {
    const changes = v.length - 1; // the first is the created object
    maxChanges = Math.max(maxChanges, changes);
    const key = v.join(' > ');
    paths.set(key, (paths.get(key) ?? 0) + 1);
  }
  const ipipNodeVersions = nodes.map((node) => ipipNodes.seen.filter((s) => s.name === node).length);

  const watcherCount = nodes.length + 1; // every agent, and this bench's own watch
  const perAgentKiB = (resource: string, m: Map<string, number>, divideBy: number) =>
    get(m, `bytes ${resource}`) / divideBy / 1024;

  say(`## ${n} IpipTunnels across ${nodeCount} agent nodes`);
  say('');
  say(
    `\`node bench/cluster-scale.ts ${n} ${nodeCount}\`: ${nodeCount} guests of ${memMB} MiB, an agent on each; ` +
      `${pairs.length} pairs of nodes, ${Math.ceil(n / pairs.length)} tunnels per pair at most ` +
      `(${perNode} underlay addresses per node), so each node is an endpoint of ${nodes.map(expectedEntries).join(' / ')} tunnels. ` +
      `Created with one \`kubectl create\` (${createdS.toFixed(1)} s for the ${n} POSTs); times are from its start.`,
  );
  say('');
  say(
    "| tunnels | nodes | created (s) | every node's entries ready (s) | all READY 2/2 (s) | last status write (s) " +
      '| aggregate writes | IpipNode writes | status writes per tunnel | links per node |',
  );
  say('|---:|---:|---:|---|---:|---:|---:|---:|---:|---|');
  say(
    `| ${n} | ${nodeCount} | ${createdS.toFixed(1)} | ${nodeReadyS.map((s) => s.toFixed(1)).join(' / ')} | ${readyS.toFixed(1)} | ` +
      `${lastWriteS.toFixed(1)} | ${aggregateWrites} | ${nodeWrites} (${ipipNodeVersions.map((v) => v - 0).join(' / ')} versions seen) | ` +
      `${((aggregateWrites + nodeWrites) / n).toFixed(3)} | ${links.join(' / ')} |`,
  );
  say('');
  say(`READY values each tunnel's aggregate went through (as the watch saw them; "-" is none yet), tunnels:`);
  for (const [path, count] of [...paths].sort((a, b) => b[1] - a[1])) say(`- ${path}: ${count}`);
  say(`(most changes of one tunnel's status: ${maxChanges})`);
  say('');
  say(
    `IpipNode versions (s after the create, READY): ${nodes
      .map(
        (node) =>
          `${node}: ${ipipNodes.seen
            .filter((s) => s.name === node && s.at >= t0)
            .map((s) => `${((s.at - t0) / 1000).toFixed(1)} ${s.summary}`)
            .join(', ')}`,
      )
      .join('; ')}. The bench's watches were started again ${tunnels.restarts()} (IpipTunnels) and ` +
      `${ipipNodes.restarts()} (IpipNodes) times.`,
  );
  say('');
  say("API requests from the create to the last status write, all agents together (the bench's own creates left out):");
  say('');
  say('| verb | resource | requests | per tunnel |');
  say('|---|---|---:|---:|');
  for (const [k, v] of [...run].filter(([k]) => k.startsWith('requests ')).sort((a, b) => b[1] - a[1])) {
    const [, verb, resource] = k.split(' ');
    if (verb === 'CREATE' && resource === 'ipiptunnels') continue;
    say(`| ${verb} | ${resource} | ${v} | ${(v / n).toFixed(3)} |`);
  }
  say('');
  const kinds = ['ipiptunnels', 'ipipnodes', 'nodes', 'leases'];
  const divide = (r: string) => (r === 'ipiptunnels' || r === 'ipipnodes' ? watcherCount : nodes.length);
  say(
    `KiB received per agent from its watches while converging: ${kinds
      .map((r) => `${r} ${perAgentKiB(r, run, divide(r)).toFixed(1)}`)
      .join(', ')}; total ${kinds
      .reduce((s, r) => s + perAgentKiB(r, run, divide(r)), 0)
      .toFixed(1)} (the API server's apiserver_watch_events_sizes, divided by the watchers of each resource: ` +
      `${nodes.length} agents, and this bench on ipiptunnels and ipipnodes).`,
  );
  say('');
  const agentDelta = (a: string[], b: string[], name: string, labels: Record<string, string> = {}) =>
    nodes.map((_, i) => metricSum(b[i]!, name, labels) - metricSum(a[i]!, name, labels));
  say(
    `Agents (${nodes.join(' / ')}): RSS idle with no tunnel ${rssEmpty.join(' / ')} MiB, with ${n} tunnels in the cluster ` +
      `${rssLoaded.join(' / ')} MiB; JS heap used ${agents1.map((a) => (metricSum(a, 'nodejs_heap_size_used_bytes') / 2 ** 20).toFixed(1)).join(' / ')} MiB; ` +
      `while converging: reconciles ${agentDelta(agents0, agents1, 'ipip_operator_reconcile_total').join(' / ')}, ` +
      `CPU ${agentDelta(agents0, agents1, 'process_cpu_seconds_total')
        .map((c) => c.toFixed(1))
        .join(
          ' / ',
        )} s, API requests ${agentDelta(agents0, agents1, 'ipip_operator_apiserver_requests_total').join(' / ')}, ` +
      `time in reconciles ${agentDelta(agents0, agents1, 'ipip_operator_reconcile_duration_seconds_sum')
        .map((c) => c.toFixed(1))
        .join(' / ')} s, fresh lists ${agentDelta(agents0, agents1, 'ipip_operator_watch_lists_total').join(' / ')}.`,
  );
  say('');
  const idleWrites = [...idle].filter(
    ([k]) => k.startsWith('requests ') && !/^requests (GET|LIST|WATCH|WATCHLIST) /.test(k),
  );
  const idleReads = [...idle].filter(([k]) => /^requests (GET|LIST|WATCH|WATCHLIST) /.test(k));
  const fmt = (xs: Array<[string, number]>) =>
    xs.length === 0 ? 'none' : xs.map(([k, v]) => `${k.replace('requests ', '')} ${v}`).join(', ');
  say(
    `One idle minute after: ${seenIdle} IpipTunnel or IpipNode versions written; writes: ${fmt(idleWrites)}; reads: ${fmt(idleReads)}; ` +
      `reconciles ${agentDelta(agents1, agents2, 'ipip_operator_reconcile_total').join(' / ')}, ` +
      `CPU ${agentDelta(agents1, agents2, 'process_cpu_seconds_total')
        .map((c) => c.toFixed(1))
        .join(' / ')} s; KiB received per agent ${kinds
        .reduce((s, r) => s + perAgentKiB(r, idle, divide(r)), 0)
        .toFixed(1)}.`,
  );

  say('');
  for (const node of nodes) {
    const log = `/run/lab/agent-${node}.log`;
    const counts = await lab
      .guest(node)
      .ok(`grep -o '"message":"[^"]*"' ${log} | sort | uniq -c | sort -rn | head -n 8`);
    const errors = await lab
      .guest(node)
      .ok(`grep -o '"error":"[^"]*"' ${log} | cut -c1-160 | sort | uniq -c | sort -rn | head -n 5`);
    say(`Agent log of ${node} (warnings and above): ${counts.trim().split('\n').join('; ') || 'empty'}`);
    if (errors.trim() !== '') say(`  errors: ${errors.trim().split('\n').join('; ')}`);
  }

  if (cpuProf) {
    for (const w of watchers) w.stop();
    for (const node of nodes) {
      await lab.stopAgent(node, 'TERM', 30_000);
      say('');
      say(`CPU profile of the agent on ${node}, top functions by self time:`);
      say(await lab.guest(node).ok(topOfProfile(), 120_000));
    }
  }
} finally {
  for (const w of watchers) w.stop();
  await lab.stop();
}

/** The tunnels node is an endpoint of. */
function expectedEntries(node: string): number {
  const k = nodes.indexOf(node);
  let count = 0;
  for (let t = 0; t < n; t++) {
    const [a, b] = pairs[t % pairs.length]!;
    if (a === k || b === k) count += 1;
  }
  return count;
}

/** A shell command that prints the top 25 functions by self time of the .cpuprofile in PROF_DIR. */
function topOfProfile(): string {
  const script = `
const fs = require('fs');
const dir = ${JSON.stringify(PROF_DIR)};
const file = fs.readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => dir + '/' + f)
  .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size)[0];
const p = JSON.parse(fs.readFileSync(file, 'utf8'));
const self = new Map();
const dt = new Map();
for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) || 0) + (p.timeDeltas[i] || 0));
let total = 0;
for (const node of p.nodes) {
  const f = node.callFrame;
  const url = f.url.replace(/^.*node_modules\\//, '').replace(/^file:\\/\\/.*\\/src\\//, 'src/');
  const key = (f.functionName || '(anonymous)') + ' ' + url + ':' + (f.lineNumber + 1);
  const us = dt.get(node.id) || 0;
  total += us;
  self.set(key, (self.get(key) || 0) + us);
}
console.log('total ' + (total / 1e6).toFixed(1) + ' s sampled');
for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log((us / 1e6).toFixed(2).padStart(7) + ' s  ' + k);
`;
  return `node -e ${shellQuoteLocal(script)}`;
}

function shellQuoteLocal(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
