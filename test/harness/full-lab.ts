// The whole lab, as the README's first command and the end-to-end tests use it: the
// cluster lab (API server + etcd, two UML nodes on a bridge, Node objects), strict
// rp_filter on both nodes, the Helm chart installed, an agent per node in its guest as
// the chart's ServiceAccount, and Prometheus scraping both agents.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterTools, kubectlOk, runHelm } from './apiserver.ts';
import type { KubectlResult } from './apiserver.ts';
import { startClusterLab } from './cluster-lab.ts';
import type { ClusterLab } from './cluster-lab.ts';
import { requirePrometheus, startPrometheus } from './prometheus.ts';
import type { Prometheus } from './prometheus.ts';
import { REPO } from './repo.ts';
import { eventually } from './support.ts';

export const RELEASE = { name: 'ipip-operator', namespace: 'ipip-operator' } as const;
export const CHART = join(REPO, 'deploy/helm/ipip-operator');
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
  /**
   * The node reboots: a fresh kernel with strict rp_filter, `boot` (what the host's own
   * configuration brings back), then its agent, started as the DaemonSet's pod would be.
   */
  rebootNode(node: string, boot?: () => Promise<void>): Promise<void>;
  stop(): Promise<void>;
}

/** What every lab node is set to at boot: strict reverse-path filtering. */
async function prepareNode(cluster: ClusterLab, node: string): Promise<void> {
  await cluster
    .guest(node)
    .ok('sysctl -q -w net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1 net.ipv4.conf.eth1.rp_filter=1');
}

export type Progress = (line: string) => void;

/** Starts everything; on a failure, whatever started is stopped before the error is thrown. */
export async function startFullLab(progress: Progress = () => {}): Promise<FullLab> {
  requirePrometheus();
  progress('building/finding kube-apiserver, etcd and helm (cached after the first build)');
  await clusterTools();
  progress(
    'starting the API server and etcd, and booting two Linux 6.1 kernels (User-Mode Linux): node-a 192.168.40.2, node-b 192.168.40.3',
  );
  const cluster = await startClusterLab();
  let prometheus: Prometheus | undefined;
  const nodes = Object.keys(cluster.nodes);
  const helmHome = join(cluster.api.dir, 'helm');
  mkdirSync(helmHome, { recursive: true });
  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(cluster.api, args, input);
  const helm = (args: string[]): Promise<KubectlResult> => runHelm(args, { home: helmHome, api: cluster.api });
  try {
    progress('strict reverse-path filtering on both nodes (net.ipv4.conf.{all,default}.rp_filter=1)');
    for (const node of nodes) await prepareNode(cluster, node);
    progress(
      `helm install ${RELEASE.name} deploy/helm/ipip-operator --namespace ${RELEASE.namespace} --create-namespace`,
    );
    const installed = await helm([
      'install',
      RELEASE.name,
      CHART,
      '--namespace',
      RELEASE.namespace,
      '--create-namespace',
    ]);
    if (installed.code !== 0) throw new Error(`helm install exited ${installed.code}:\n${installed.stderr}`);
    const agentKubeconfig = await cluster.serviceAccountKubeconfig(RELEASE.namespace, RELEASE.name);
    const startAgent = (node: string): Promise<number> =>
      cluster.startAgent(node, [
        '--kubeconfig',
        agentKubeconfig,
        '--lease-namespace',
        RELEASE.namespace,
        '--resync-period',
        LAB_RESYNC,
        '--log-format',
        'text',
      ]);
    const waitAgentReady = (node: string): Promise<void> => cluster.waitAgentReady(node);
    progress(
      "starting an agent in each node (the DaemonSet's ServiceAccount ipip-operator/ipip-operator; no kubelet runs here)",
    );
    for (const node of nodes) await startAgent(node);
    for (const node of nodes) await waitAgentReady(node);
    progress(`starting Prometheus in the lab's namespace (${cluster.netns}), scraping both agents every 2 s`);
    prometheus = await startPrometheus({ netns: cluster.netns, targets: cluster.nodes, dir: cluster.api.dir });
    const prom = prometheus;
    await eventually(
      'Prometheus scraping both agents',
      async () => {
        const health = await prom.targetHealth();
        return nodes.every((n) => health[n] === 'up') ? true : undefined;
      },
      { timeoutMs: 60_000 },
    );
    return {
      cluster,
      prometheus: prom,
      agentKubeconfig,
      nodes,
      kubectl,
      helm,
      startAgent,
      waitAgentReady,
      rebootNode: async (node, boot) => {
        await cluster.rebootNode(node);
        await prepareNode(cluster, node);
        await boot?.();
        await startAgent(node);
        await waitAgentReady(node);
      },
      stop: async () => {
        await prom.stop().catch(() => {});
        await cluster.stop();
      },
    };
  } catch (error) {
    await prometheus?.stop().catch(() => {});
    await cluster
      .stop()
      .catch((e: unknown) => process.stderr.write(`lab: cleanup after a failed start also failed: ${String(e)}\n`));
    throw error;
  }
}
