// The whole lab, as the README's first command and the end-to-end tests use it: the
// cluster lab (API server + etcd, two UML nodes on a bridge, Node objects; or more nodes,
// node-c 192.168.40.4 and on), strict rp_filter on every node, the Helm chart installed,
// an agent per node in its guest as the chart's ServiceAccount, and Prometheus scraping
// every agent. With three nodes or more, node-c also has what examples/mesh.yaml puts
// behind it: a LAN 10.30.0.0/24 (a network namespace in its guest with one host) and
// forwarding on.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterTools, kubectlOk, runHelm } from './apiserver.ts';
import type { KubectlResult } from './apiserver.ts';
import { nodeAddress, startClusterLab } from './cluster-lab.ts';
import type { ClusterLab } from './cluster-lab.ts';
import { labKernel } from './lab-kernel.ts';
import { requirePrometheus, startPrometheus } from './prometheus.ts';
import type { Prometheus } from './prometheus.ts';
import { REPO } from './repo.ts';
import { eventually } from './support.ts';

export const RELEASE = { name: 'ipip-operator', namespace: 'ipip-operator' } as const;
export const CHART = join(REPO, 'deploy/helm/ipip-operator');
/** The agents resync every 5 s in the lab, so the kernel counters in /metrics stay fresh. */
export const LAB_RESYNC = '5s';
/** The most nodes a lab boots (each is a 512 MiB guest and an agent, on a machine of 2 cores). */
export const MAX_LAB_NODES = 8;
/** The nodes of a lab of `count`: node-a, node-b, node-c, ... (at 192.168.40.2, .3, .4, ...). */
export function labNodeNames(count: number): string[] {
  if (!Number.isInteger(count) || count < 2 || count > MAX_LAB_NODES)
    throw new Error(`a lab has 2 to ${MAX_LAB_NODES} nodes, not ${count}`);
  return Array.from({ length: count }, (_, i) => `node-${String.fromCharCode(97 + i)}`);
}

/**
 * The LAN behind node-c in examples/mesh.yaml, as the lab builds it when it has node-c: a
 * network namespace `lan` in node-c's guest with one host, joined to node-c by a veth
 * (node-c's side lan0 is the LAN's gateway), and forwarding on in node-c.
 */
export const MESH_LAN = {
  node: 'node-c',
  network: '10.30.0.0/24',
  gateway: '10.30.0.1',
  host: '10.30.0.10',
  netns: 'lan',
} as const;

export interface FullLabOptions {
  /** How many nodes (labNodeNames); default 2, the two of examples/tunnel.yaml. */
  nodes?: number;
}

/** "two", "three", ...: how many nodes, in words. */
export function countWord(n: number): string {
  return ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'][n] ?? String(n);
}

/** "both" for two, "all three" for three, ... */
export function allOf(n: number): string {
  return n === 2 ? 'both' : `all ${countWord(n)}`;
}

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

/**
 * What every lab node is set to at boot: strict reverse-path filtering. node-c (the mesh
 * example's router) also gets its LAN and forwarding, as its own network configuration would.
 */
async function prepareNode(cluster: ClusterLab, node: string): Promise<void> {
  const guest = cluster.guest(node);
  await guest.ok(
    'sysctl -q -w net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.default.rp_filter=1 net.ipv4.conf.eth1.rp_filter=1',
  );
  if (node !== MESH_LAN.node) return;
  const { netns, gateway, host, network } = MESH_LAN;
  const prefix = network.split('/')[1]!;
  await guest.ok(
    [
      `ip netns add ${netns}`,
      `ip link add lan0 type veth peer name eth0 netns ${netns}`,
      `ip addr add ${gateway}/${prefix} dev lan0`,
      'ip link set lan0 up',
      `ip -n ${netns} link set lo up`,
      `ip -n ${netns} addr add ${host}/${prefix} dev eth0`,
      `ip -n ${netns} link set eth0 up`,
      `ip -n ${netns} route add default via ${gateway}`,
      'sysctl -q -w net.ipv4.ip_forward=1',
    ].join(' && '),
  );
}

export type Progress = (line: string) => void;

/** Starts everything; on a failure, whatever started is stopped before the error is thrown. */
export async function startFullLab(progress: Progress = () => {}, options: FullLabOptions = {}): Promise<FullLab> {
  const names = labNodeNames(options.nodes ?? 2);
  const n = names.length;
  requirePrometheus();
  progress('building/finding kube-apiserver, etcd and helm (cached after the first build)');
  await clusterTools();
  progress('building/finding the lab kernel, Linux 6.12 for User-Mode Linux (cached after the first build)');
  await labKernel();
  progress(
    `starting the API server and etcd, and booting ${countWord(n)} Linux 6.12 kernels (User-Mode Linux): ` +
      names.map((node, i) => `${node} ${nodeAddress(i)}`).join(', '),
  );
  const cluster = await startClusterLab({ nodes: names });
  let prometheus: Prometheus | undefined;
  const nodes = Object.keys(cluster.nodes);
  const helmHome = join(cluster.api.dir, 'helm');
  mkdirSync(helmHome, { recursive: true });
  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(cluster.api, args, input);
  const helm = (args: string[]): Promise<KubectlResult> => runHelm(args, { home: helmHome, api: cluster.api });
  try {
    progress(`strict reverse-path filtering on ${allOf(n)} nodes (net.ipv4.conf.{all,default}.rp_filter=1)`);
    if (nodes.includes(MESH_LAN.node))
      progress(
        `${MESH_LAN.node} forwards (net.ipv4.ip_forward=1) for its LAN ${MESH_LAN.network}: ` +
          `a network namespace "${MESH_LAN.netns}" in it with the host ${MESH_LAN.host}, gateway ${MESH_LAN.gateway} (lan0)`,
      );
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
    progress(`starting Prometheus in the lab's namespace (${cluster.netns}), scraping ${allOf(n)} agents every 2 s`);
    prometheus = await startPrometheus({ netns: cluster.netns, targets: cluster.nodes, dir: cluster.api.dir });
    const prom = prometheus;
    await eventually(
      `Prometheus scraping ${allOf(n)} agents`,
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
