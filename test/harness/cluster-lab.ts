// The cluster lab: nodes that are real Linux kernels (User-Mode Linux guests) on one
// bridge, and a real kube-apiserver + etcd on that bridge, all inside one network
// namespace this harness makes and deletes. For the in-cluster agent tests and the
// end-to-end lab.
//
//   netns ipiplab-<pid>:  lo, br0 192.168.40.1/24 (kube-apiserver :PORT, etcd on lo)
//                         tap0 -> guest node-a, eth1 192.168.40.2/24
//                         tap1 -> guest node-b, eth1 192.168.40.3/24
//
// Nothing of it touches the machine's own network namespace. The API server's dir is
// under /var/tmp, which guests see (read-only), so kubeconfigs written there work in
// guests; what a guest writes goes under its own /run.

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { IpipTunnel } from '../../src/api/types.ts';
import { kubeconfigYaml, kubectlOk, run, startApiServer } from './apiserver.ts';
import type { ApiServer } from './apiserver.ts';
import { startControlPlane } from './control-plane.ts';
import type { ControlPlane } from './control-plane.ts';
import { requireKubeletNodeParts, startKubelet } from './kubelet-node.ts';
import { AS_THE_CHART_RUNS_IT } from './privileges.ts';
import { agentReady } from './probes.ts';
import { isAlive, onProcessExit } from './process-guard.ts';
import { REPO } from './repo.ts';
import { eventually } from './support.ts';
import { Guest, requireCommands, requireUml, shellQuote } from './uml.ts';

export const BRIDGE_ADDRESS = '192.168.40.1';
export const LAB_PREFIX_LENGTH = 24;
/** The default nodes and their eth1 addresses, as examples/tunnel.yaml has them. */
export const LAB_NODES = { 'node-a': '192.168.40.2', 'node-b': '192.168.40.3' } as const;
export type LabNodeName = keyof typeof LAB_NODES;
export const CRD_NAME = 'ipiptunnels.tunnel.ipip-operator.dev';

/** The eth1 address of the i-th node (0-based): 192.168.40.2, .3, ... */
export function nodeAddress(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index > 200) throw new Error(`no lab address for node #${index}`);
  return `192.168.40.${2 + index}`;
}

export interface ClusterLabOptions {
  /** Node names, one guest each, addressed in order by nodeAddress(); default node-a, node-b. */
  nodes?: string[];
  /** Memory of each guest; default 512, or 1536 for kubelet nodes. */
  guestMemMB?: number;
  /**
   * Nodes as a cluster has them (kubelet-node.ts): each guest runs containerd and a
   * kubelet that registers its own Node, and kube-controller-manager and kube-scheduler
   * run beside the API server, so workloads (the chart's DaemonSet) get pods. These OCI
   * archives are imported into every node (nodeImages()). Without it, no kubelet runs and
   * the lab creates the Node objects itself.
   */
  kubelets?: { images: string[] };
}

export interface NodeAddress {
  type: 'InternalIP' | 'ExternalIP' | 'Hostname' | 'InternalDNS' | 'ExternalDNS';
  address: string;
}

/** An Event as the tests read it. */
export interface TunnelEvent {
  type: string;
  reason: string;
  message: string;
  count?: number;
  source: { host: string };
}

export interface StartInGuestOptions {
  /** Extra environment, on top of the guest shell's (PATH has node_modules/.bin first). */
  env?: Record<string, string>;
}

/** How a process started in a guest ended: its exit status as sh reports it (128+n for signal n). */
export interface GuestExit {
  status: number;
  /** It outlived the grace period and was sent SIGKILL. */
  killed: boolean;
}

const NETNS_PREFIX = 'ipiplab-';
let labsInProcess = 0;

/**
 * Starts the whole lab: namespace and bridge, API server with the CRD, one guest per node
 * with its eth1 up, a Node object per node. On any failure, everything started so far
 * is removed before the error is thrown.
 */
export async function startClusterLab(opts: ClusterLabOptions = {}): Promise<ClusterLab> {
  requireUml();
  // The agents' /readyz and /metrics are read with curl, in the guests and from the lab's namespace.
  requireCommands(['curl'], 'apt-get install -y curl (or run scripts/setup.sh, which installs it)');
  const nodes = opts.nodes ?? Object.keys(LAB_NODES);
  if (nodes.length === 0 || new Set(nodes).size !== nodes.length)
    throw new Error(`lab nodes must be distinct and at least one: ${nodes.join(', ')}`);
  sweepStaleNamespaces();
  labsInProcess += 1;
  const netns = `${NETNS_PREFIX}${process.pid}${labsInProcess > 1 ? `-${labsInProcess}` : ''}`;
  const lab = new ClusterLab(netns, Object.fromEntries(nodes.map((n, i) => [n, nodeAddress(i)])));
  try {
    await lab.start(opts.guestMemMB ?? (opts.kubelets === undefined ? 512 : 1536), opts.kubelets);
    return lab;
  } catch (error) {
    await lab.stop().catch((stopError: unknown) => {
      process.stderr.write(`cluster lab: cleanup after a failed start also failed: ${String(stopError)}\n`);
    });
    throw error;
  }
}

export class ClusterLab {
  /** The network namespace that holds the bridge, the taps, the API server and the guests' host side. */
  readonly netns: string;
  /** node name -> its eth1 address. */
  readonly nodes: Readonly<Record<string, string>>;
  private apiServer: ApiServer | undefined;
  private readonly guests = new Map<string, Guest>();
  private guestMemMB = 512;
  private kubelets: { images: string[] } | undefined;
  private controlPlane: ControlPlane | undefined;
  /** "node/name" -> pid in that guest, for everything startInGuest started and nobody stopped. */
  private readonly processes = new Map<string, number>();
  private readonly unregister: () => void;
  private stopping: Promise<void> | undefined;

  constructor(netns: string, nodes: Record<string, string>) {
    this.netns = netns;
    this.nodes = nodes;
    // Registered before anything exists, so a death at any point of start() cleans up.
    this.unregister = onProcessExit(() => killNamespace(netns));
  }

  get api(): ApiServer {
    if (this.apiServer === undefined) throw new Error('cluster lab: the API server is not running');
    return this.apiServer;
  }

  guest(node: string): Guest {
    const guest = this.guests.get(node);
    if (guest === undefined)
      throw new Error(`cluster lab: no guest for node ${node} (nodes: ${Object.keys(this.nodes).join(', ')})`);
    return guest;
  }

  /** Used by startClusterLab only. */
  async start(guestMemMB: number, kubelets: { images: string[] } | undefined): Promise<void> {
    this.guestMemMB = guestMemMB;
    this.kubelets = kubelets;
    if (kubelets !== undefined) requireKubeletNodeParts();
    const nodes = Object.keys(this.nodes);
    const ns = this.netns;
    await ip(['netns', 'add', ns]);
    await labTcpCongestionControl(ns);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', ns, 'addr', 'add', `${BRIDGE_ADDRESS}/${LAB_PREFIX_LENGTH}`, 'dev', 'br0']);
    await ip(['-n', ns, 'link', 'set', 'br0', 'up']);
    for (const [i] of nodes.entries()) {
      await ip(['-n', ns, 'tuntap', 'add', `tap${i}`, 'mode', 'tap']);
      await ip(['-n', ns, 'link', 'set', `tap${i}`, 'master', 'br0', 'up']);
    }

    // The API server and the guests take seconds each: start them all at once. Whatever
    // came up is kept on the lab so stop() removes it when another part failed.
    const api = startApiServer({ netns: ns, bindAddress: BRIDGE_ADDRESS }).then((a) => {
      this.apiServer = a;
    });
    const guests = nodes.map(async (node, i) => {
      const guest = await this.bootGuest(i);
      this.guests.set(node, guest);
      await this.configureGuest(node, i);
    });
    await settleAll([api, ...guests]);

    const applied = await this.api.kubectl(['apply', '-f', join(REPO, 'crds')]);
    if (applied.code !== 0) throw new Error(`kubectl apply -f crds/ failed:\n${applied.stderr}`);
    await kubectlOk(this.api, ['wait', '--for=condition=Established', `crd/${CRD_NAME}`, '--timeout=60s']);
    if (kubelets !== undefined) {
      this.controlPlane = startControlPlane(this.api);
      await settleAll(nodes.map((node) => this.startNodeKubelet(node)));
      return;
    }
    await this.applyObjects(
      nodes.map((node) => ({
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: node, labels: { 'kubernetes.io/hostname': node, 'kubernetes.io/os': 'linux' } },
      })),
    );
    for (const node of nodes) await this.setNodeInternalIP(node, this.nodes[node]!);
  }

  /**
   * A node reboots: its kernel powers off (everything in it, the agent included, is gone)
   * and a fresh one boots on the same tap with the same eth1 address. Nothing else of the
   * lab notices but the network going quiet for a while.
   */
  async rebootNode(node: string): Promise<void> {
    const index = Object.keys(this.nodes).indexOf(node);
    if (index < 0) throw new Error(`cluster lab: no node ${node}`);
    await this.guest(node).stop();
    for (const key of [...this.processes.keys()]) if (key.startsWith(`${node}/`)) this.processes.delete(key);
    const guest = await this.bootGuest(index);
    this.guests.set(node, guest);
    await this.configureGuest(node, index);
    if (this.kubelets !== undefined) await this.startNodeKubelet(node);
  }

  private bootGuest(index: number): Promise<Guest> {
    return Guest.boot({
      hostNetns: this.netns,
      tap: `tap${index}`,
      memMB: this.guestMemMB,
      writableRoot: this.kubelets !== undefined,
    });
  }

  /** containerd and the kubelet in the node; resolves when its Node is Ready. */
  private async startNodeKubelet(node: string): Promise<void> {
    await startKubelet(this, node, { images: this.kubelets?.images ?? [] });
    await eventually(
      `node ${node} registered by its kubelet and Ready`,
      async () => {
        const r = await this.api.kubectl([
          'get',
          'node',
          node,
          '-o',
          'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        ]);
        return r.code === 0 && r.stdout.trim() === 'True' ? true : undefined;
      },
      {
        timeoutMs: 120_000,
        context: async () =>
          `--- kubelet on ${node}:\n${(await this.guestLog(node, 'kubelet')).split('\n').slice(-30).join('\n')}\n` +
          `--- containerd on ${node}:\n${(await this.guestLog(node, 'containerd')).split('\n').slice(-15).join('\n')}`,
      },
    );
  }

  /** The last lines of kube-controller-manager's and kube-scheduler's logs (kubelet nodes only). */
  controlPlaneLogs(): string {
    return this.controlPlane?.logTails() ?? '(no control plane: the nodes run no kubelets)';
  }

  /** vec0 (the tap) becomes eth1 with the node's address, and the bridge must answer. */
  private async configureGuest(node: string, index: number): Promise<void> {
    const guest = this.guest(node);
    const address = nodeAddress(index);
    await guest.ok(
      [
        `hostname ${node}`,
        'ip link set vec0 name eth1',
        `ip addr add ${address}/${LAB_PREFIX_LENGTH} dev eth1`,
        'ip link set eth1 up',
      ].join(' && '),
    );
    // The first ARP exchange over a fresh tap can take a moment; a few tries, then fail.
    const r = await guest.sh(
      `for i in 1 2 3 4 5 6 7 8 9 10; do ping -c 1 -W 1 ${BRIDGE_ADDRESS} >/dev/null && exit 0; done; exit 1`,
      30_000,
    );
    if (r.code !== 0)
      throw new Error(
        `cluster lab: ${node} (${address} on eth1) cannot reach the bridge ${BRIDGE_ADDRESS}\n${await guest.sh('ip addr; ip route').then((x) => x.stdout)}`,
      );
  }

  /** Replaces a Node's status.addresses (through the status subresource, as a kubelet would). */
  async setNodeAddresses(node: string, addresses: NodeAddress[]): Promise<void> {
    await kubectlOk(this.api, [
      'patch',
      'node',
      node,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { addresses } }),
    ]);
  }

  /** Sets a Node's InternalIP (and its Hostname, the node name); undefined leaves only the Hostname. */
  async setNodeInternalIP(node: string, address: string | undefined): Promise<void> {
    const addresses: NodeAddress[] = address === undefined ? [] : [{ type: 'InternalIP', address }];
    await this.setNodeAddresses(node, [...addresses, { type: 'Hostname', address: node }]);
  }

  /**
   * Writes a kubeconfig for a bearer token where guests can read it (the API server's dir
   * under /var/tmp), with the lab's server and CA, and returns its path.
   */
  kubeconfigFor(identity: string, token: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(identity))
      throw new Error(`kubeconfigFor: "${identity}" is not a file-name-safe identity`);
    const dir = join(this.api.dir, 'kubeconfigs');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${identity}.kubeconfig`);
    writeFileSync(path, kubeconfigYaml(this.api.server, readFileSync(this.api.caFile), token, identity), {
      mode: 0o600,
    });
    return path;
  }

  /** A kubeconfig for guests with the admin token (system:masters). */
  adminKubeconfigForGuests(): string {
    return this.kubeconfigFor('admin', this.api.token);
  }

  /** Creates the namespace and ServiceAccount if missing (no controller-manager does it here). */
  async ensureServiceAccount(namespace: string, name: string): Promise<void> {
    await this.applyObjects([
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } },
    ]);
  }

  /** `kubectl apply` of these objects, as one List. */
  async applyObjects(items: object[]): Promise<void> {
    await kubectlOk(this.api, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  }

  /** The Events of an IpipTunnel, as `kubectl get events` lists them (namespace default, where they live). */
  async tunnelEvents(name: string, type?: 'Normal' | 'Warning'): Promise<TunnelEvent[]> {
    const selector = `involvedObject.kind=IpipTunnel,involvedObject.name=${name}${type === undefined ? '' : `,type=${type}`}`;
    const out = await kubectlOk(this.api, [
      'get',
      'events',
      '-n',
      'default',
      '--field-selector',
      selector,
      '-o',
      'json',
    ]);
    return (JSON.parse(out) as { items: TunnelEvent[] }).items;
  }

  /**
   * A kubeconfig for guests that authenticates as an existing ServiceAccount with a fresh
   * 2 h token (TokenRequest), so RBAC judges what it may do.
   */
  async serviceAccountKubeconfig(namespace: string, name: string): Promise<string> {
    const token = (await kubectlOk(this.api, ['create', 'token', name, '-n', namespace, '--duration=2h'])).trim();
    return this.kubeconfigFor(`sa-${namespace}-${name}`, token);
  }

  /**
   * Starts argv in the background in a node's guest (cwd the checkout), output to
   * /run/lab/NAME.log there, and returns its pid in the guest. Its exit status is kept in
   * /run/lab/NAME.exit by the subshell that waits for it.
   */
  async startInGuest(node: string, name: string, argv: string[], opts: StartInGuestOptions = {}): Promise<number> {
    if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`startInGuest: "${name}" is not a file-name-safe name`);
    const key = `${node}/${name}`;
    if (this.processes.has(key)) throw new Error(`startInGuest: ${name} already runs on ${node}; stop it first`);
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`startInGuest: bad environment variable name ${k}`);
      return shellQuote(`${k}=${v}`);
    });
    const f = guestFiles(name);
    // A background command of a non-interactive sh starts with SIGINT and SIGQUIT ignored;
    // env --default-signal undoes that, so tests can stop it with any signal. Until env has
    // run, a SIGINT is still lost, so the pid is answered only once SIGINT is no longer
    // ignored (bit 2 of SigIgn), the process has ended, or 1 s has passed (a command may
    // ignore it itself). The subshell then lets go of the answer pipe and waits to record
    // the exit status.
    const command = `env --default-signal ${[...env, ...argv.map(shellQuote)].join(' ')}`;
    const intIgnored = `s=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$p/status 2>/dev/null); [ -n "$s" ] && [ $(( 0x$s & 2 )) -ne 0 ]`;
    const out = await this.guest(node).ok(
      `mkdir -p /run/lab && rm -f ${f.exit} && ` +
        `( ${command} > ${f.log} 2>&1 < /dev/null & p=$!; i=0; while [ $i -lt 50 ] && ${intIgnored}; do sleep 0.02; i=$((i+1)); done; ` +
        `echo $p; exec > /dev/null 2>&1; wait $p; echo $? > ${f.exit} ) &`,
    );
    const pid = Number(out.trim());
    if (!Number.isInteger(pid) || pid <= 0) throw new Error(`startInGuest: no pid from ${node}: ${out}`);
    this.processes.set(key, pid);
    return pid;
  }

  /**
   * Sends a signal to what startInGuest started and waits for it to exit; after graceMs it
   * gets SIGKILL. Also returns at once when it had already exited.
   */
  async stopInGuest(node: string, name: string, signal = 'TERM', graceMs = 10_000): Promise<GuestExit> {
    const key = `${node}/${name}`;
    const pid = this.processes.get(key);
    if (pid === undefined) throw new Error(`stopInGuest: nothing called ${name} was started on ${node}`);
    if (!/^[A-Z0-9]+$/.test(signal)) throw new Error(`stopInGuest: bad signal ${signal}`);
    const f = guestFiles(name);
    const tries = Math.max(1, Math.ceil(graceMs / 100));
    // The waiting happens in the guest, one round trip instead of one per poll.
    const waitExit = (n: number) => `i=0; while [ ! -s ${f.exit} ] && [ $i -lt ${n} ]; do sleep 0.1; i=$((i+1)); done`;
    const out = await this.guest(node).ok(
      `[ -s ${f.exit} ] || kill -${signal} ${pid} 2>/dev/null; ${waitExit(tries)}; ` +
        `if [ -s ${f.exit} ]; then echo "exited $(cat ${f.exit})"; exit 0; fi; ` +
        `kill -KILL ${pid} 2>/dev/null; ${waitExit(100)}; echo "killed $(cat ${f.exit} 2>/dev/null)"`,
      graceMs + 30_000,
    );
    const m = /^(exited|killed) (\d+)$/m.exec(out);
    if (m === null)
      throw new Error(`stopInGuest: ${name} on ${node} (pid ${pid}) did not exit even after SIGKILL: ${out}`);
    this.processes.delete(key);
    return { status: Number(m[2]), killed: m[1] === 'killed' };
  }

  /** The exit status of what startInGuest started, or undefined while it runs. */
  async exitStatus(node: string, name: string): Promise<number | undefined> {
    const r = await this.guest(node).sh(`cat ${guestFiles(name).exit}`);
    return r.code === 0 && r.stdout.trim() !== '' ? Number(r.stdout.trim()) : undefined;
  }

  /** Output (stdout and stderr) so far of what startInGuest started. */
  async guestLog(node: string, name: string): Promise<string> {
    const r = await this.guest(node).sh(`cat ${guestFiles(name).log}`);
    return r.code === 0 ? r.stdout : `(no log: ${r.stderr.trim()})`;
  }

  /**
   * `node src/cli/main.ts agent --node-name NODE ...args` in that node's guest, as the chart
   * runs it (only CAP_NET_ADMIN, no_new_privs); log /run/lab/agent-NODE.log.
   */
  startAgent(node: string, args: string[], opts: StartInGuestOptions = {}): Promise<number> {
    return this.startInGuest(
      node,
      agentName(node),
      [...AS_THE_CHART_RUNS_IT, 'node', 'src/cli/main.ts', 'agent', '--node-name', node, ...args],
      opts,
    );
  }

  /** The pid in its guest of the agent startAgent started, while it runs. */
  agentPid(node: string): number | undefined {
    return this.processes.get(`${node}/${agentName(node)}`);
  }

  stopAgent(node: string, signal = 'TERM', graceMs = 10_000): Promise<GuestExit> {
    return this.stopInGuest(node, agentName(node), signal, graceMs);
  }

  agentLog(node: string): Promise<string> {
    return this.guestLog(node, agentName(node));
  }

  /** The last lines of the agent logs of these nodes (default: all), for the message of a failed wait. */
  async agentLogTails(nodes = Object.keys(this.nodes), lines = 25): Promise<string> {
    const tails = await Promise.all(
      nodes.map(async (n) => `--- agent ${n}:\n${(await this.agentLog(n)).split('\n').slice(-lines).join('\n')}`),
    );
    return tails.join('\n');
  }

  /** Waits until the node's agent answers 200 on /readyz (both caches listed, reconciled once). */
  async waitAgentReady(node: string, timeoutMs = 90_000): Promise<void> {
    await eventually(`the agent on ${node} ready`, () => agentReady(this.guest(node)), {
      timeoutMs,
      context: () => this.agentLogTails([node]),
    });
  }

  /** An IpipTunnel as the API server has it, or undefined when there is none. */
  async tunnel(name: string): Promise<IpipTunnel | undefined> {
    const r = await this.api.kubectl(['get', 'ipiptunnel', name, '-o', 'json']);
    if (r.code !== 0) return undefined;
    return JSON.parse(r.stdout) as IpipTunnel;
  }

  /**
   * The tunnel once its aggregate says Ready N/N (N: the lab's nodes) at its current
   * generation; `onChange` sees each new summary of its status on the way.
   */
  async waitTunnelReady(
    name: string,
    opts: { onChange?: (summary: string) => void; timeoutMs?: number } = {},
  ): Promise<IpipTunnel> {
    const n = Object.keys(this.nodes).length;
    let last = '';
    return eventually(
      `${name} Ready ${n}/${n}`,
      async () => {
        const t = await this.tunnel(name);
        const status = t?.status;
        const summary =
          t === undefined
            ? 'not found'
            : `READY ${status?.readySummary ?? '-'}, generation ${t.metadata.generation ?? '-'}, observedGeneration ${status?.observedGeneration ?? '-'}`;
        if (summary !== last) {
          last = summary;
          opts.onChange?.(summary);
        }
        const ready = status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        return ready && status?.readySummary === `${n}/${n}` && status.observedGeneration === t?.metadata.generation
          ? t
          : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 90_000, context: () => this.agentLogTails() },
    );
  }

  /**
   * Stops what runs in the guests, the guests, the API server, and deletes the namespace
   * with anything still in it. Safe to call twice; throws after doing all it can if a part
   * would not go.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopOnce();
    return this.stopping;
  }

  private async stopOnce(): Promise<void> {
    const problems: string[] = [];
    const attempt = async (what: string, step: () => Promise<unknown>) => {
      try {
        await step();
      } catch (error) {
        problems.push(`${what}: ${(error as Error).message}`);
      }
    };
    // Agents first, while the API server is still there for whatever they do on SIGTERM.
    // (A guest that is already gone took its processes with it.)
    await Promise.all(
      [...this.processes.keys()].map((key) => {
        const [node, name] = key.split('/') as [string, string];
        if (this.guests.get(node)?.running !== true) return undefined;
        return attempt(`stopping ${name} on ${node}`, () => this.stopInGuest(node, name));
      }),
    );
    await Promise.all([...this.guests].map(([node, guest]) => attempt(`stopping guest ${node}`, () => guest.stop())));
    await attempt('stopping kube-controller-manager and kube-scheduler', async () => this.controlPlane?.stop());
    await attempt('stopping the API server', async () => this.apiServer?.stop());
    // UML leaves helper processes behind when its main process is killed; anything of
    // the lab still in the namespace goes now.
    const leftover = namespacePids(this.netns);
    if (leftover.length > 0)
      process.stderr.write(`cluster lab: killing leftover processes in ${this.netns}: ${leftover.join(' ')}\n`);
    await attempt(`removing the network namespace ${this.netns}`, () => removeNamespace(this.netns));
    this.unregister();
    if (listNamespaces().includes(this.netns)) problems.push(`network namespace ${this.netns} is still there`);
    if (problems.length > 0) throw new Error(`cluster lab stop:\n${problems.join('\n')}`);
  }
}

function agentName(node: string): string {
  return `agent-${node}`;
}

function guestFiles(name: string): { log: string; exit: string } {
  return { log: `/run/lab/${name}.log`, exit: `/run/lab/${name}.exit` };
}

async function ip(args: string[]): Promise<void> {
  const r = await run('ip', args, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
}

/** Waits for all, then throws the first failure: nothing is left starting in the background. */
async function settleAll(steps: Array<Promise<unknown>>): Promise<void> {
  const results = await Promise.allSettled(steps);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) throw failed[0]!.reason;
}

/** GET a URL from inside a network namespace (curl); the body, or an error. */
export async function curlInNetns(netns: string, url: string, params: Record<string, string> = {}): Promise<string> {
  const args = ['netns', 'exec', netns, 'curl', '-sS', '--fail-with-body', '--max-time', '10'];
  if (Object.keys(params).length > 0) args.push('--get');
  for (const [k, v] of Object.entries(params)) args.push('--data-urlencode', `${k}=${v}`);
  const r = await run('ip', [...args, url], { timeoutMs: 20_000 });
  if (r.code !== 0)
    throw new Error(`GET ${url} in ${netns} failed (curl exit ${r.code}): ${r.stderr.trim()} ${r.stdout.trim()}`);
  return r.stdout;
}

/** The network namespaces of this machine. */
export function listNamespaces(): string[] {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((n) => n !== '');
}

/**
 * The congestion control of the lab's side of every connection (the API server's, etcd's,
 * Prometheus'): what the namespace takes from the host, unless the host has BBR. Towards
 * a UML guest, whose one CPU also runs its network and often stalls for tens of ms, BBR's
 * estimate of the path fell to a few kbit/s under the burst of 1,000 tunnels (seen with
 * `ss -tni`: 2.4 of 3.7 MB retransmitted, pacing 4 kbit/s): watches stopped, the API
 * server closed them as unresponsive, and agents sat minutes behind. Reno, which a network
 * namespace may always choose, backs off on loss and comes back. Set before any socket.
 */
async function labTcpCongestionControl(ns: string): Promise<void> {
  const key = 'net.ipv4.tcp_congestion_control';
  const r = spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-n', key], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim() === 'bbr') await ip(['netns', 'exec', ns, 'sysctl', '-q', '-w', `${key}=reno`]);
}

/** The pid of the process that made a lab's namespace (ipiplab-PID[-N]); undefined for any other namespace. */
function labNamespaceOwner(netns: string): number | undefined {
  const m = new RegExp(`^${NETNS_PREFIX}(\\d+)(?:-\\d+)?$`).exec(netns);
  return m === null ? undefined : Number(m[1]);
}

/** Lab namespaces whose process is gone (it died without cleaning up, e.g. SIGKILL). */
export function staleLabNamespaces(): string[] {
  return listNamespaces().filter((ns) => {
    const owner = labNamespaceOwner(ns);
    return owner !== undefined && !isAlive(owner);
  });
}

function namespacePids(netns: string): number[] {
  const r = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' });
  return r.status === 0
    ? r.stdout
        .split('\n')
        .map(Number)
        .filter((pid) => Number.isInteger(pid) && pid > 0)
    : [];
}

/** SIGKILLs every process in the namespace; the pids it signalled. */
function killAllIn(netns: string): number[] {
  const pids = namespacePids(netns);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  return pids;
}

/**
 * SIGKILLs every process in the lab's namespace and deletes it; synchronous, so it also
 * works from an 'exit' handler. Only processes in a namespace this harness made are hit.
 */
function killNamespace(netns: string): void {
  if (!listNamespaces().includes(netns)) return;
  killAllIn(netns);
  spawnSync('ip', ['netns', 'del', netns]);
}

/** Like killNamespace, but waits (up to 10 s) until those processes are gone; an error if they are not, or the namespace stays. */
export async function removeNamespace(netns: string): Promise<void> {
  if (!listNamespaces().includes(netns)) return;
  const pids = killAllIn(netns);
  const lingering = await eventually(`the processes of ${netns} to exit`, async () => !pids.some(isAlive), {
    timeoutMs: 10_000,
    intervalMs: 100,
  }).then(
    () => undefined,
    (error: unknown) => error,
  );
  const r = spawnSync('ip', ['netns', 'del', netns], { encoding: 'utf8' });
  if (listNamespaces().includes(netns)) throw new Error(`ip netns del ${netns}: ${r.stderr.trim()}`);
  if (lingering !== undefined) throw lingering;
}

/** Namespaces of earlier test processes that died without cleaning up (e.g. SIGKILL). */
function sweepStaleNamespaces(): void {
  for (const ns of staleLabNamespaces()) killNamespace(ns);
}
