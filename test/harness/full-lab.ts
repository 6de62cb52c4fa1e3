// The whole lab, as the README's first command and the end-to-end tests use it: the
// cluster lab (API server + etcd, two UML nodes on a bridge, Node objects), strict
// rp_filter on both nodes, the Helm chart installed, an agent per node in its guest as
// the chart's ServiceAccount, and Prometheus scraping both agents.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterTools, repoRoot, run } from './apiserver.ts';
import type { KubectlResult } from './apiserver.ts';
import { eventually, kubectlOk } from './support.ts';
import { startClusterLab } from './cluster-lab.ts';
import type { ClusterLab } from './cluster-lab.ts';
import { requirePrometheus, startPrometheus } from './prometheus.ts';
import type { Prometheus } from './prometheus.ts';
import type { CommandResult } from './uml.ts';

export const RELEASE = { name: 'ipip-operator', namespace: 'ipip-operator' } as const;
export const CHART = join(repoRoot, 'deploy/helm/ipip-operator');
export const EXAMPLE = join(repoRoot, 'examples/tunnel.yaml');
/** The agents resync every 5 s in the lab, so the kernel counters in /metrics stay fresh. */
export const LAB_RESYNC = '5s';

export interface FullLab {
  cluster: ClusterLab;
  prometheus: Prometheus;
  /** The agents' kubeconfig (the chart's ServiceAccount), readable in the guests. */
  agentKubeconfig: string;
  nodes: string[];
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<KubectlResult>;
  startAgent(node: string): Promise<number>;
  waitAgentReady(node: string): Promise<void>;
  stop(): Promise<void>;
}

export type Progress = (line: string) => void;

/** Starts everything; on a failure, whatever started is stopped before the error is thrown. */
export async function startFullLab(progress: Progress = () => {}): Promise<FullLab> {
  requirePrometheus();
  progress('building/finding kube-apiserver, etcd and helm (cached after the first build)');
  const binDir = await clusterTools();
  progress('starting the API server and etcd, and booting two Linux 6.1 kernels (User-Mode Linux): node-a 192.168.40.2, node-b 192.168.40.3');
  const cluster = await startClusterLab();
  let prometheus: Prometheus | undefined;
  const nodes = Object.keys(cluster.nodes);
  const helmHome = join(cluster.api.dir, 'helm');
  mkdirSync(helmHome, { recursive: true });
  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(cluster.api, args, input);
  const helm = (args: string[]): Promise<KubectlResult> => run('ip', ['netns', 'exec', cluster.netns, join(binDir, 'helm'), ...args], {
    timeoutMs: 120_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(helmHome, 'cache'), HELM_CONFIG_HOME: join(helmHome, 'config'), HELM_DATA_HOME: join(helmHome, 'data'),
      KUBECONFIG: cluster.api.kubeconfig, KUBECACHEDIR: join(cluster.api.dir, 'kube-cache'),
    },
  });
  try {
    progress('strict reverse-path filtering on both nodes (net.ipv4.conf.{all,default}.rp_filter=1)');
    for (const node of nodes) {
      await cluster.guest(node).ok('sysctl -q -w net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1 net.ipv4.conf.eth1.rp_filter=1');
    }
    progress(`helm install ${RELEASE.name} deploy/helm/ipip-operator --namespace ${RELEASE.namespace} --create-namespace`);
    const installed = await helm(['install', RELEASE.name, CHART, '--namespace', RELEASE.namespace, '--create-namespace']);
    if (installed.code !== 0) throw new Error(`helm install exited ${installed.code}:\n${installed.stderr}`);
    const agentKubeconfig = await cluster.serviceAccountKubeconfig(RELEASE.namespace, RELEASE.name);
    const startAgent = (node: string): Promise<number> => cluster.startAgent(node, [
      '--kubeconfig', agentKubeconfig, '--lease-namespace', RELEASE.namespace, '--resync-period', LAB_RESYNC, '--log-format', 'text',
    ]);
    const waitAgentReady = async (node: string): Promise<void> => {
      await eventually(`the agent on ${node} ready`, async () => {
        const r = await cluster.guest(node).sh('node -e "fetch(\'http://127.0.0.1:9477/readyz\').then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"');
        return r.code === 0 ? true : undefined;
      }, { timeoutMs: 90_000, context: async () => `--- agent ${node}:\n${(await cluster.agentLog(node)).split('\n').slice(-25).join('\n')}` });
    };
    progress('starting an agent in each node (the DaemonSet\'s ServiceAccount ipip-operator/ipip-operator; no kubelet runs here)');
    for (const node of nodes) await startAgent(node);
    for (const node of nodes) await waitAgentReady(node);
    progress(`starting Prometheus in the lab's namespace (${cluster.netns}), scraping both agents every 2 s`);
    prometheus = await startPrometheus({ netns: cluster.netns, targets: cluster.nodes, dir: cluster.api.dir });
    const prom = prometheus;
    await eventually('Prometheus scraping both agents', async () => {
      const health = await prom.targetHealth();
      return nodes.every((n) => health[n] === 'up') ? true : undefined;
    }, { timeoutMs: 60_000 });
    return {
      cluster, prometheus: prom, agentKubeconfig, nodes, kubectl, helm, startAgent, waitAgentReady,
      stop: async () => {
        await prom.stop().catch(() => {});
        await cluster.stop();
      },
    };
  } catch (error) {
    await prometheus?.stop().catch(() => {});
    await cluster.stop().catch((e: unknown) => process.stderr.write(`lab: cleanup after a failed start also failed: ${String(e)}\n`));
    throw error;
  }
}

export interface TunnelView {
  readySummary?: string;
  ready: boolean;
  generation?: number;
  observedGeneration?: number;
}

/** The tunnel's aggregate status, or undefined when it does not exist. */
export async function tunnelView(lab: FullLab, name: string): Promise<TunnelView | undefined> {
  const r = await lab.cluster.api.kubectl(['get', 'ipiptunnel', name, '-o', 'json']);
  if (r.code !== 0) return undefined;
  const t = JSON.parse(r.stdout) as { metadata: { generation?: number }; status?: { readySummary?: string; observedGeneration?: number; conditions?: Array<{ type: string; status: string }> } };
  const view: TunnelView = { ready: t.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True' };
  if (t.status?.readySummary !== undefined) view.readySummary = t.status.readySummary;
  if (t.metadata.generation !== undefined) view.generation = t.metadata.generation;
  if (t.status?.observedGeneration !== undefined) view.observedGeneration = t.status.observedGeneration;
  return view;
}

/** Waits for Ready N/N at the current generation; `onChange` sees each new summary. */
export async function waitReady(lab: FullLab, name: string, onChange: (summary: string) => void = () => {}, timeoutMs = 90_000): Promise<TunnelView> {
  let last = '';
  const want = `${lab.nodes.length}/${lab.nodes.length}`;
  return eventually(`${name} Ready ${want}`, async () => {
    const v = await tunnelView(lab, name);
    const summary = v === undefined ? 'not found' : `READY ${v.readySummary ?? '-'}, generation ${v.generation ?? '-'}, observedGeneration ${v.observedGeneration ?? '-'}`;
    if (summary !== last) {
      last = summary;
      onChange(summary);
    }
    return v !== undefined && v.ready && v.readySummary === want && v.observedGeneration === v.generation ? v : undefined;
  }, {
    timeoutMs,
    context: async () => (await Promise.all(lab.nodes.map(async (n) => `--- agent ${n}:\n${(await lab.cluster.agentLog(n)).split('\n').slice(-25).join('\n')}`))).join('\n'),
  });
}

/**
 * Starts `tcpdump -n -v -c 2 -i eth1 ip proto 4` on a node and waits until it listens;
 * `done` ends after 2 packets or 10 s. tcpdump 4.99 prints the outer header as
 * "proto IPIP (4)" (older versions said "ipip-proto-4").
 */
export async function startIpipCapture(lab: FullLab, node: string): Promise<{ done: Promise<CommandResult> }> {
  const guest = lab.cluster.guest(node);
  await guest.ok('mkdir -p /run/lab && rm -f /run/lab/capture.out');
  const done = guest.sh('timeout 10 tcpdump -l -n -v -c 2 -i eth1 ip proto 4 > /run/lab/capture.out 2>&1; cat /run/lab/capture.out', 30_000);
  await eventually(`tcpdump listening on ${node}`, async () => ((await guest.sh('grep -q "listening on" /run/lab/capture.out')).code === 0 ? true : undefined), { timeoutMs: 15_000, intervalMs: 200 });
  return { done };
}
