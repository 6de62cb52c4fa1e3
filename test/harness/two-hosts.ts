// The two-host lab of examples/tunnel.yaml inside one UML guest: network namespaces
// host-a (node-a, 192.168.40.2) and host-b (node-b, 192.168.40.3), each with an eth1,
// joined by a veth pair. Used by the kernel tests and the benchmarks.

import { stringify } from 'yaml';
import type { IpipTunnel } from '../../src/api/types.ts';
import { AS_THE_CHART_RUNS_IT } from './privileges.ts';
import { namespaceShell } from './uml.ts';
import type { Guest, Shell } from './uml.ts';

export const HOSTS = { 'node-a': 'host-a', 'node-b': 'host-b' } as const;
export type LabNode = keyof typeof HOSTS;

export async function setUpTwoHosts(guest: Guest): Promise<void> {
  await guest.ok(
    [
      'ip netns add host-a',
      'ip netns add host-b',
      'ip link add eth1 netns host-a type veth peer name eth1 netns host-b',
      'ip -n host-a link set lo up',
      'ip -n host-b link set lo up',
      'ip -n host-a addr add 192.168.40.2/24 dev eth1',
      'ip -n host-b addr add 192.168.40.3/24 dev eth1',
      'ip -n host-a link set eth1 up',
      'ip -n host-b link set eth1 up',
    ].join(' && '),
  );
}

/** A node's host namespace as a Shell, for the readers of probes.ts. */
export function hostShell(guest: Guest, node: LabNode): Shell {
  return namespaceShell(guest, HOSTS[node]);
}

/** The agent's CLI, run inside a host's namespace, from the checkout, as the chart runs it (only CAP_NET_ADMIN). */
export function agentCommand(node: LabNode, args: string): string {
  return `ip netns exec ${HOSTS[node]} ${AS_THE_CHART_RUNS_IT.join(' ')} node src/cli/main.ts agent --node-name ${node} ${args}`;
}

/** A standalone agent started in the background in a host's namespace: its log and pid files in the guest. */
export interface BackgroundAgent {
  log: string;
  pidFile: string;
}

/** Starts `agentCommand(node, args)` in the background, output to /run/lab/agent-NODE.log. */
export async function startBackgroundAgent(guest: Guest, node: LabNode, args: string): Promise<BackgroundAgent> {
  const agent = { log: `/run/lab/agent-${node}.log`, pidFile: `/run/lab/agent-${node}.pid` };
  await guest.ok(`(${agentCommand(node, args)} > ${agent.log} 2>&1 & echo $! > ${agent.pidFile})`);
  return agent;
}

/** Writes a manifest of these tunnels where a node's agent reads it, /run/lab/NAME.yaml in the guest. */
export async function writeManifest(guest: Guest, name: string, tunnels: readonly IpipTunnel[]): Promise<string> {
  const path = `/run/lab/${name}.yaml`;
  await guest.writeFile(path, tunnels.map((t) => stringify(t)).join('---\n'));
  return path;
}

/** What `agent --once` printed: its exit code, its JSON summary, its log. */
export interface OnceResult {
  code: number;
  summary: {
    changes: Record<string, Record<string, number>>;
    errors: Array<{ tunnel: string; reason: string; message: string }>;
  };
  stderr: string;
}

/** `agent --once` on a node with these tunnels. */
export async function agentOnce(
  guest: Guest,
  node: LabNode,
  tunnels: readonly IpipTunnel[],
  timeoutMs = 60_000,
): Promise<OnceResult> {
  const manifest = await writeManifest(guest, node, tunnels);
  const r = await guest.sh(agentCommand(node, `--once --manifest ${manifest} --log-format text`), timeoutMs);
  const last = r.stdout.trim().split('\n').at(-1) ?? '';
  let summary: OnceResult['summary'];
  try {
    summary = JSON.parse(last) as OnceResult['summary'];
  } catch {
    throw new Error(`agent --once printed no summary (exit ${r.code})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return { code: r.code, summary, stderr: r.stderr };
}

/** A summary's non-zero counts, as "object/action=n", for short assertions. */
export function changed(once: OnceResult): string[] {
  return Object.entries(once.summary.changes).flatMap(([object, actions]) =>
    Object.entries(actions)
      .filter(([, n]) => n > 0)
      .map(([action, n]) => `${object}/${action}=${n}`),
  );
}

/** The problems of a summary as "tunnel:Reason". */
export function refusals(once: OnceResult): string[] {
  return once.summary.errors.map((e) => `${e.tunnel}:${e.reason}`);
}
