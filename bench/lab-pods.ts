// The agent as the chart runs it, in the lab's pods (issue 14: memory "in the pod's cgroup
// once the lab runs pods", start-up "in the lab"):  node bench/lab-pods.ts [N]
// The full lab (test/harness/full-lab.ts: two User-Mode Linux nodes, containerd and a
// kubelet each, the chart's DaemonSet from the image), the chart's default resync (60 s;
// the lab installs 5 s), then N point-to-point IpipTunnels between node-a and node-b
// (bench/tunnels.ts clusterScale, default 1000), created at once. For each node's agent:
// the container's and the pod's cgroup (memory.current, memory.peak, anon and file of
// memory.stat) and the process's RSS, with no tunnel, once every tunnel is READY 2/2
// (15 s after), after an idle minute, and after its pod is replaced (a new agent adopting
// N tunnels); and each new agent's start-up from its process's start (its log: `agent
// started`, after Node, the modules and the configuration; the first reconcile's start,
// after the first lists too; its end), with no tunnel and with N. Prints Markdown tables.

import { CHART, RELEASE, startFullLab } from '../test/harness/full-lab.ts';
import type { FullLab } from '../test/harness/full-lab.ts';
import { eventually } from '../test/harness/support.ts';
import { clusterScale } from './tunnels.ts';

const n = Number(process.argv[2] ?? 1000);
if (!Number.isInteger(n) || n < 1) throw new Error('usage: node bench/lab-pods.ts [TUNNELS >= 1]');
const note = (s: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
const MiB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  node: string;
  when: string;
  container: Record<string, number>;
  pod: Record<string, number>;
  rss: number;
}

/** The agent's cgroups (its container's, and the pod's, its parent) and RSS, as its node's kernel has them. */
async function sample(lab: FullLab, node: string, when: string): Promise<Sample> {
  const pid = await lab.agentPid(node);
  if (pid === undefined) throw new Error(`no agent process on ${node}`);
  const guest = lab.cluster.guest(node);
  const path = (await guest.ok(`sed -n 's/^0:://p' /proc/${pid}/cgroup`)).trim();
  const read = async (dir: string) => {
    const out = await guest.ok(
      `cd /sys/fs/cgroup${dir} && echo current $(cat memory.current) && echo peak $(cat memory.peak) && ` +
        "grep -E '^(anon|file) ' memory.stat",
    );
    return Object.fromEntries(
      out
        .trim()
        .split('\n')
        .map((l) => [l.split(' ')[0]!, Number(l.split(' ')[1])]),
    );
  };
  const rssKiB = Number((await guest.ok(`awk '/^VmRSS:/ {print $2}' /proc/${pid}/status`)).trim());
  return {
    node,
    when,
    container: await read(path),
    pod: await read(path.slice(0, path.lastIndexOf('/'))),
    rss: rssKiB * 1024,
  };
}

/**
 * The agent's start-up from its log, from the process's start: to `agent started` (Node, the
 * modules, the configuration, the client made), to the first reconcile's start (the source's
 * first lists too: `first reconcile done`'s sinceProcessStartMs less its reconcileMs), and
 * the first reconcile itself (its read, plan and write).
 */
async function startUp(lab: FullLab, node: string): Promise<{ started: number; reconcile: number; pass: number }> {
  return eventually(`${node}: the first reconcile in the log`, async () => {
    const lines = (await lab.agentLog(node))
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map(
        (l) =>
          JSON.parse(l) as { message: string; timestamp: string; sinceProcessStartMs?: number; reconcileMs?: number },
      );
    const started = lines.find((l) => l.message === 'agent started');
    const done = lines.find((l) => l.message === 'first reconcile done');
    if (started === undefined || done?.sinceProcessStartMs === undefined || done.reconcileMs === undefined)
      return undefined;
    const afterStarted = Date.parse(done.timestamp) - Date.parse(started.timestamp);
    return {
      started: done.sinceProcessStartMs - afterStarted,
      reconcile: done.sinceProcessStartMs - done.reconcileMs,
      pass: done.reconcileMs,
    };
  });
}
const startUpRow = (node: string, n: number, s: Awaited<ReturnType<typeof startUp>>) =>
  `| ${node} | ${n} | ${s.started} | ${s.reconcile} | ${s.pass} | ${s.reconcile + s.pass} |`;

/** The uid of each node's agent pod now. */
const podUids = (lab: FullLab) => Promise.all(lab.nodes.map(async (node) => (await lab.agentPod(node))?.uid));

/** Waits until every node's agent pod is a new one (not of `before`'s uids) and Ready. */
async function newPodsReady(lab: FullLab, before: readonly (string | undefined)[]): Promise<void> {
  await eventually(
    'new agent pods, ready',
    async () => {
      const pods = await Promise.all(lab.nodes.map((node) => lab.agentPod(node)));
      return pods.every((p, k) => p !== undefined && p.uid !== before[k] && p.ready);
    },
    { timeoutMs: 180_000, context: () => lab.agentLogTails() },
  );
}

const lab = await startFullLab(note, { nodes: 2 });
try {
  const nodes = lab.nodes;
  const scale = clusterScale(n, nodes);
  await Promise.all(
    nodes.map((node, k) =>
      lab.cluster.guest(node).ok(`ip -batch - <<'EOF'\n${scale.underlayCommands(k)}\nEOF`, 60_000),
    ),
  );
  // The chart's default resync: the lab's 5 s would be a pass of N tunnels every 5 s.
  note('helm upgrade: the chart default resync (60 s); the pods are replaced');
  const installed = await podUids(lab);
  const upgraded = await lab.helm([
    'upgrade',
    RELEASE.name,
    CHART,
    '--namespace',
    RELEASE.namespace,
    '--reuse-values',
    '--set',
    'resyncPeriod=60s',
  ]);
  if (upgraded.code !== 0) throw new Error(`helm upgrade: ${upgraded.stderr}`);
  await newPodsReady(lab, installed);
  await pause(15_000);
  const samples: Sample[] = [];
  const startUps: string[] = [];
  for (const node of nodes) {
    samples.push(await sample(lab, node, 'no tunnel, + 15 s'));
    const s = await startUp(lab, node);
    startUps.push(startUpRow(node, 0, s));
  }

  const t0 = Date.now();
  await lab.kubectl(['create', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: scale.tunnels() }));
  note(`${n} tunnels created`);
  const readyS = await eventually(
    `${n} tunnels READY 2/2`,
    async () => {
      const out = await lab.kubectl(['get', 'ipiptunnels', '-o', 'jsonpath={.items[*].status.readySummary}']);
      const ready = out.split(' ').filter((s) => s === '2/2').length;
      return ready >= n ? (Date.now() - t0) / 1000 : undefined;
    },
    { timeoutMs: 900_000, intervalMs: 2000 },
  );
  note(`all READY 2/2 after ${readyS.toFixed(1)} s`);
  await pause(15_000);
  for (const node of nodes) samples.push(await sample(lab, node, `${n} tunnels, READY + 15 s`));
  await pause(60_000);
  for (const node of nodes) samples.push(await sample(lab, node, `${n} tunnels, an idle minute later`));

  // A new agent on each node, adopting the N tunnels it finds programmed.
  const running = await podUids(lab);
  const names = await Promise.all(nodes.map(async (node) => (await lab.agentPod(node))!.name));
  await lab.kubectl(['-n', RELEASE.namespace, 'delete', 'pod', ...names]);
  await newPodsReady(lab, running);
  await pause(15_000);
  for (const node of nodes) {
    samples.push(await sample(lab, node, `${n} tunnels, pod replaced, + 15 s`));
    const s = await startUp(lab, node);
    startUps.push(startUpRow(node, n, s));
  }

  process.stdout.write(`all ${n} READY 2/2 ${readyS.toFixed(1)} s after the create\n\n`);
  process.stdout.write(
    '| node | when | pod: current / peak (MiB) | pod anon / file | container: current / peak | agent RSS |\n' +
      '|---|---|---:|---:|---:|---:|\n',
  );
  for (const s of samples) {
    process.stdout.write(
      `| ${s.node} | ${s.when} | ${MiB(s.pod.current!)} / ${MiB(s.pod.peak!)} | ${MiB(s.pod.anon!)} / ${MiB(s.pod.file!)} | ` +
        `${MiB(s.container.current!)} / ${MiB(s.container.peak!)} | ${MiB(s.rss)} |\n`,
    );
  }
  process.stdout.write(
    '\n| node | tunnels | to `agent started` (ms) | start-up: to the first reconcile | the first reconcile | to its end |\n' +
      `|---|---:|---:|---:|---:|---:|\n${startUps.join('\n')}\n`,
  );
} finally {
  await lab.stop();
}
