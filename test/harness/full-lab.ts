// The whole lab, as the README's first command and the end-to-end tests use it: the
// cluster lab with kubelet nodes (API server + etcd, kube-controller-manager and
// kube-scheduler; two UML nodes on a bridge, each running containerd and a kubelet that
// registers its Node, or more nodes, node-c 192.168.40.4 and on), strict rp_filter on
// every node, the project's image (scripts/image.sh) imported into each node, the Helm
// chart installed, so the DaemonSet's pods are the agents, and Prometheus scraping every
// agent. With three nodes or more, node-c also has what examples/mesh.yaml puts behind
// it: a LAN 10.30.0.0/24 (a network namespace in its guest with one host) and forwarding on.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clusterTools, kubectlOk, runHelm } from './apiserver.ts';
import type { KubectlResult } from './apiserver.ts';
import { nodeAddress, startClusterLab } from './cluster-lab.ts';
import type { ClusterLab } from './cluster-lab.ts';
import { nodeImages } from './kubelet-node.ts';
import { labKernel } from './lab-kernel.ts';
import { requirePrometheus, startPrometheus } from './prometheus.ts';
import type { Prometheus } from './prometheus.ts';
import { REPO } from './repo.ts';
import { eventually } from './support.ts';

export const RELEASE = { name: 'ipip-operator', namespace: 'ipip-operator' } as const;
export const CHART = join(REPO, 'deploy/helm/ipip-operator');
/** The agents resync every 5 s in the lab, so the kernel counters in /metrics stay fresh. */
export const LAB_RESYNC = '5s';
/** The most nodes a lab boots (each is a 1.5 GiB guest with a kubelet and an agent, on a machine of 2 cores). */
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

/** The values the lab installs the chart with, on top of its defaults. */
export const LAB_VALUES = [
  // The image is imported into every node; there is no registry to pull it from.
  'image.pullPolicy=Never',
  `resyncPeriod=${LAB_RESYNC}`,
  // Prometheus scrapes from the lab's namespace (the node's address), and the tests also
  // read /metrics inside a node whose eth1 is down (127.0.0.1): every address.
  'metrics.bind=all',
] as const;

/** The DaemonSet's pod on a node, as kubectl shows it. */
export interface AgentPod {
  name: string;
  uid: string;
  ready: boolean;
  restarts: number;
  /** How its container last ended (exit code; 137 for SIGKILL), if it ever restarted. */
  lastExitCode: number | undefined;
  /** When its running container started (RFC 3339, whole seconds), if one runs. */
  startedAt: string | undefined;
  image: string;
}

export interface FullLab {
  cluster: ClusterLab;
  prometheus: Prometheus;
  nodes: string[];
  kubectl(args: string[], input?: string): Promise<string>;
  helm(args: string[]): Promise<KubectlResult>;
  /** The agent's pod on a node, once there is one. */
  agentPod(node: string): Promise<AgentPod | undefined>;
  /** The agent's pid in its node's kernel (the container's process, as the node sees it). */
  agentPid(node: string): Promise<number | undefined>;
  /** `kubectl logs` of the agent's pod on a node (its current container). */
  agentLog(node: string): Promise<string>;
  /** The last lines of every agent's log, for the message of a failed wait. */
  agentLogTails(lines?: number): Promise<string>;
  /** Waits until the node's agent pod is Ready (its readiness probe on /readyz), and returns it. */
  waitAgentReady(node: string, timeoutMs?: number): Promise<AgentPod>;
  /**
   * The node reboots: a fresh kernel with strict rp_filter, `boot` (what the host's own
   * configuration brings back), then containerd and its kubelet, which runs the agent's pod
   * again; resolves when that pod is Ready.
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
  progress(
    'building/finding kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kubelet, kubectl and helm (cached after the first build)',
  );
  await clusterTools();
  progress('building/finding the lab kernel, Linux 6.12 for User-Mode Linux (cached after the first build)');
  await labKernel();
  progress("building/finding the project's image from the Dockerfile (scripts/image.sh) and the pods' pause image");
  const images = await nodeImages();
  progress(
    `starting the API server, etcd, kube-controller-manager and kube-scheduler, and booting ${countWord(n)} Linux 6.12 kernels ` +
      `(User-Mode Linux), each with containerd and a kubelet: ${names.map((node, i) => `${node} ${nodeAddress(i)}`).join(', ')}`,
  );
  const cluster = await startClusterLab({ nodes: names, kubelets: { images: Object.values(images) } });
  let prometheus: Prometheus | undefined;
  const nodes = Object.keys(cluster.nodes);
  const helmHome = join(cluster.api.dir, 'helm');
  mkdirSync(helmHome, { recursive: true });
  const kubectl = (args: string[], input?: string): Promise<string> => kubectlOk(cluster.api, args, input);
  const helm = (args: string[]): Promise<KubectlResult> => runHelm(args, { home: helmHome, api: cluster.api });
  const agentPod = async (node: string): Promise<AgentPod | undefined> => {
    const pods = JSON.parse(
      await kubectl([
        'get',
        'pods',
        '-n',
        RELEASE.namespace,
        '-l',
        AGENT_SELECTOR,
        '--field-selector',
        `spec.nodeName=${node}`,
        '-o',
        'json',
      ]),
    ) as { items: PodJson[] };
    // A pod being deleted still shows until its container has stopped; the agent is the other one.
    const pod = pods.items.find((p) => p.metadata.deletionTimestamp === undefined);
    return pod === undefined ? undefined : agentPodOf(pod);
  };
  const agentLog = async (node: string): Promise<string> => {
    const pod = await agentPod(node);
    if (pod === undefined) return `(no agent pod on ${node})`;
    const r = await cluster.api.kubectl(['logs', '-n', RELEASE.namespace, pod.name]);
    return r.code === 0 ? r.stdout : `(kubectl logs ${pod.name}: ${r.stderr.trim()})`;
  };
  const agentLogTails = async (lines = 25): Promise<string> => {
    const tails = await Promise.all(
      nodes.map(async (node) => `--- agent ${node}:\n${(await agentLog(node)).split('\n').slice(-lines).join('\n')}`),
    );
    return tails.join('\n');
  };
  const waitAgentReady = (node: string, timeoutMs = 120_000): Promise<AgentPod> =>
    eventually(
      `the agent pod on ${node} Ready`,
      async () => {
        const pod = await agentPod(node);
        return pod?.ready === true ? pod : undefined;
      },
      {
        timeoutMs,
        context: async () =>
          `${await agentLogTails()}\n${cluster.controlPlaneLogs()}\n--- kubelet on ${node}:\n` +
          (await cluster.guestLog(node, 'kubelet')).split('\n').slice(-20).join('\n'),
      },
    );
  try {
    progress(`strict reverse-path filtering on ${allOf(n)} nodes (net.ipv4.conf.{all,default}.rp_filter=1)`);
    if (nodes.includes(MESH_LAN.node))
      progress(
        `${MESH_LAN.node} forwards (net.ipv4.ip_forward=1) for its LAN ${MESH_LAN.network}: ` +
          `a network namespace "${MESH_LAN.netns}" in it with the host ${MESH_LAN.host}, gateway ${MESH_LAN.gateway} (lan0)`,
      );
    for (const node of nodes) await prepareNode(cluster, node);
    progress(
      `helm install ${RELEASE.name} deploy/helm/ipip-operator --namespace ${RELEASE.namespace} --create-namespace ` +
        LAB_VALUES.map((v) => `--set ${v}`).join(' '),
    );
    const installed = await helm([
      'install',
      RELEASE.name,
      CHART,
      '--namespace',
      RELEASE.namespace,
      '--create-namespace',
      ...LAB_VALUES.flatMap((v) => ['--set', v]),
    ]);
    if (installed.code !== 0) throw new Error(`helm install exited ${installed.code}:\n${installed.stderr}`);
    progress(
      `the DaemonSet's pods: one per node, scheduled by kube-scheduler, started by each kubelet, Ready when the kubelet's probe of /readyz answers`,
    );
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
      nodes,
      kubectl,
      helm,
      agentPod,
      agentPid: async (node) => {
        const r = await cluster.guest(node).sh(`pgrep -f -o '${AGENT_COMMAND}'`);
        const pid = Number(r.stdout.trim());
        return r.code === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined;
      },
      agentLog,
      agentLogTails,
      waitAgentReady,
      rebootNode: async (node, boot) => {
        // The container of the new kernel starts after this (a whole second before it, at most).
        const rebootedAt = Math.floor(Date.now() / 1000) * 1000;
        await cluster.rebootNode(node);
        await prepareNode(cluster, node);
        await boot?.();
        // The kubelet of the new kernel starts the pod's containers again (the pod object stays,
        // and its restart count starts over with the new kernel's runtime).
        await eventually(
          `the agent pod on ${node} started again after the reboot, and Ready`,
          async () => {
            const pod = await agentPod(node);
            return pod?.ready === true && pod.startedAt !== undefined && Date.parse(pod.startedAt) >= rebootedAt
              ? true
              : undefined;
          },
          { timeoutMs: 180_000, context: agentLogTails },
        );
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

/** How the agent's process shows in its node (the image's ENTRYPOINT and the chart's args), for pgrep -f. */
export const AGENT_COMMAND = '^node /app/dist/cli/main.js agent';

/** The labels of the chart's agent pods (templates/_helpers.tpl selectorLabels). */
export const AGENT_SELECTOR = `app.kubernetes.io/name=ipip-operator,app.kubernetes.io/instance=${RELEASE.name}`;

interface PodJson {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { containers: Array<{ image: string }> };
  status?: {
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      restartCount: number;
      state?: { running?: { startedAt: string } };
      lastState?: { terminated?: { exitCode: number } };
    }>;
  };
}

function agentPodOf(pod: PodJson): AgentPod {
  const container = pod.status?.containerStatuses?.[0];
  return {
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    ready: pod.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
    restarts: container?.restartCount ?? 0,
    lastExitCode: container?.lastState?.terminated?.exitCode,
    startedAt: container?.state?.running?.startedAt,
    image: pod.spec.containers[0]?.image ?? '',
  };
}
