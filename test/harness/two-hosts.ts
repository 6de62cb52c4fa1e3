// Lab hosts inside one UML guest, a network namespace each (node-a in host-a, ...) with an
// eth1 on the underlay 192.168.40.0/24: the two hosts of examples/tunnel.yaml (host-a
// 192.168.40.2 and host-b 192.168.40.3, joined by a veth pair), or any number of hosts on
// one bridge (setUpHosts: the mesh of examples/mesh.yaml), and a LAN behind a host
// (setUpLan). Used by the kernel tests and the benchmarks.

import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import type { IpipTunnel } from '../../src/api/types.ts';
import { AS_THE_CHART_RUNS_IT } from './privileges.ts';
import { eventually } from './support.ts';
import { DEBIAN_UML, insmod, namespaceShell } from './uml.ts';
import type { Guest, Shell } from './uml.ts';

export const HOSTS = { 'node-a': 'host-a', 'node-b': 'host-b' } as const;
export type LabNode = keyof typeof HOSTS;

/** The host namespace of a lab node: node-a runs in host-a. */
export function hostNetns(node: string): string {
  return `host-${node.replace(/^node-/, '')}`;
}

/**
 * Waits until no address in the guest (any namespace) is still tentative. A link that
 * comes up gets an IPv6 link-local address whose duplicate address detection ends a second
 * or two later, changing `ip addr` and the IPv6 routes: a snapshot of a host taken before
 * that would differ from one taken after for no reason of the agent's. (The lab kernel has
 * IPv6 built in; Debian's loads it only with the bridge modules.)
 */
export async function addressesSettled(guest: Guest): Promise<void> {
  const tentative =
    'ip -6 -o addr show tentative; for ns in $(ip netns list | cut -d" " -f1); do ip -n "$ns" -6 -o addr show tentative; done';
  await eventually(
    'no tentative IPv6 address left (duplicate address detection done)',
    async () => ((await guest.ok(tentative)).trim() === '' ? true : undefined),
    { timeoutMs: 20_000, intervalMs: 200, context: () => guest.ok(tentative) },
  );
}

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
  await addressesSettled(guest);
}

/** The namespace of the bridge that joins the hosts of setUpHosts. */
export const SWITCH_NETNS = 'lab-switch';

/** The modules a bridge needs that guest-init.sh does not load, on Debian's kernel (the lab kernel and its variants have them built in). */
const BRIDGE_MODULES = [
  'lib/crc-ccitt.ko',
  'net/ipv6/ipv6.ko',
  'net/llc/llc.ko',
  'net/802/stp.ko',
  'net/bridge/bridge.ko',
];

/**
 * Hosts on one underlay segment: node -> its address in 192.168.40.0/24. Each host's eth1
 * is a veth whose other end (p-a for host-a, ...) is a port of the bridge br0 in
 * SWITCH_NETNS, which has no address: the hosts reach each other and nothing else.
 */
export async function setUpHosts(guest: Guest, hosts: Readonly<Record<string, string>>): Promise<void> {
  if (guest.kernel === DEBIAN_UML) await insmod(guest, BRIDGE_MODULES);
  const sw = SWITCH_NETNS;
  const commands = [
    `ip netns add ${sw}`,
    `ip -n ${sw} link add br0 type bridge forward_delay 0 stp_state 0`,
    `ip -n ${sw} link set br0 up`,
  ];
  for (const [node, address] of Object.entries(hosts)) {
    const ns = hostNetns(node);
    const port = `p-${ns.replace(/^host-/, '')}`;
    commands.push(
      `ip netns add ${ns}`,
      `ip -n ${ns} link set lo up`,
      `ip link add eth1 netns ${ns} type veth peer name ${port} netns ${sw}`,
      `ip -n ${sw} link set ${port} master br0 up`,
      `ip -n ${ns} addr add ${address}/24 dev eth1`,
      `ip -n ${ns} link set eth1 up`,
    );
  }
  await guest.ok(commands.join(' && '));
  await addressesSettled(guest);
}

/** A LAN behind a lab host: the host's `lan0` and a namespace on it with one host. */
export interface Lan {
  /** The lab node that carries the LAN (it routes for it). */
  node: string;
  /** The LAN host's namespace. */
  netns: string;
  /** The carrier's address on the LAN, with its prefix length ("10.30.0.1/24"): the LAN host's next hop. */
  router: string;
  /** The LAN host's address, with its prefix length ("10.30.0.5/24"). */
  address: string;
  /** Prefixes the LAN host reaches through the carrier (the overlay). */
  routes: readonly string[];
}

/** Makes the LAN: a veth from the carrier's lan0 to the LAN host's eth0, addresses and the LAN host's routes back. */
export async function setUpLan(guest: Guest, lan: Lan): Promise<void> {
  const carrier = hostNetns(lan.node);
  const gateway = lan.router.split('/')[0]!;
  await guest.ok(
    [
      `ip netns add ${lan.netns}`,
      `ip -n ${lan.netns} link set lo up`,
      `ip link add lan0 netns ${carrier} type veth peer name eth0 netns ${lan.netns}`,
      `ip -n ${carrier} addr add ${lan.router} dev lan0`,
      `ip -n ${carrier} link set lan0 up`,
      `ip -n ${lan.netns} addr add ${lan.address} dev eth0`,
      `ip -n ${lan.netns} link set eth0 up`,
      ...lan.routes.map((dst) => `ip -n ${lan.netns} route add ${dst} via ${gateway} dev eth0`),
    ].join(' && '),
  );
  await addressesSettled(guest);
}

/** `sysctl -w` of each setting in a namespace ("net.ipv4.ip_forward=1"). */
export async function setSysctls(guest: Guest, netns: string, settings: readonly string[]): Promise<void> {
  await guest.ok(`ip netns exec ${netns} sysctl -q -w ${settings.join(' ')}`);
}

/** A node's host namespace as a Shell, for the readers of probes.ts. */
export function hostShell(guest: Guest, node: string): Shell {
  return namespaceShell(guest, hostNetns(node));
}

/** The agent's CLI, run inside a host's namespace, from the checkout, as the chart runs it (only CAP_NET_ADMIN). */
export function agentCommand(node: string, args: string): string {
  return `ip netns exec ${hostNetns(node)} ${AS_THE_CHART_RUNS_IT.join(' ')} node src/cli/main.ts agent --node-name ${node} ${args}`;
}

/**
 * Runs a script of the checkout (a guest side of a test, test/harness/*-guest.ts) with node
 * in node-a's host namespace, and returns what it printed last: one line of JSON.
 */
export async function guestScriptResult<T>(guest: Guest, script: string, timeoutMs: number): Promise<T> {
  const out = await guest.ok(`ip netns exec ${hostNetns('node-a')} node ${script}`, timeoutMs);
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}

/** A standalone agent started in the background in a host's namespace: its log and pid files in the guest. */
export interface BackgroundAgent {
  log: string;
  pidFile: string;
}

/** Starts `agentCommand(node, args)` in the background, output to /run/lab/agent-NODE.log. */
export async function startBackgroundAgent(guest: Guest, node: string, args: string): Promise<BackgroundAgent> {
  const agent = { log: `/run/lab/agent-${node}.log`, pidFile: `/run/lab/agent-${node}.pid` };
  await guest.ok(`(${agentCommand(node, args)} > ${agent.log} 2>&1 & echo $! > ${agent.pidFile})`);
  return agent;
}

/**
 * What a background agent is doing, for a failure's message: its log, and whether its
 * process (the `ip netns exec` chain's last exec, same pid) is alive, in which state, and
 * where in the kernel it waits. An empty log alone does not say whether it hung or died.
 */
export async function backgroundAgentReport(guest: Guest, agent: BackgroundAgent): Promise<string> {
  const pid = `$(cat ${agent.pidFile})`;
  const proc = await guest.sh(
    `if kill -0 ${pid} 2>/dev/null; then grep -E '^(Name|State|VmRSS|Threads):' /proc/${pid}/status | tr '\\n' ' '; ` +
      `echo; echo "wchan: $(cat /proc/${pid}/wchan)"; else echo "process ${pid} is gone"; fi; uptime`,
  );
  return `agent process: ${proc.stdout.trim()}\nagent log:\n${await guest.ok(`cat ${agent.log}`)}`;
}

/** Stops a background agent (SIGTERM) and waits for its process to be gone. */
export async function stopBackgroundAgent(guest: Guest, agent: BackgroundAgent): Promise<void> {
  await guest.ok(`kill -TERM $(cat ${agent.pidFile}) 2>/dev/null || true`);
  await eventually(
    'the background agent to exit',
    async () => (await guest.sh(`kill -0 $(cat ${agent.pidFile})`)).code !== 0,
    {
      timeoutMs: 20_000,
      intervalMs: 200,
    },
  );
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
  node: string,
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

/** `agent --once` on each of these nodes at the same time, each with these tunnels. */
export async function agentOnceOnEach<N extends string>(
  guest: Guest,
  nodes: readonly N[],
  tunnels: readonly IpipTunnel[],
): Promise<Map<N, OnceResult>> {
  const runs = await Promise.all(nodes.map((n) => agentOnce(guest, n, tunnels)));
  return new Map(nodes.map((n, i) => [n, runs[i]!]));
}

/** What each run said, one line per node: its exit code, its problems (!tunnel:Reason), its non-zero changes. */
export function said(runs: ReadonlyMap<string, OnceResult>): Record<string, string> {
  return Object.fromEntries(
    [...runs].map(([n, r]) => [n, [`exit ${r.code}`, ...refusals(r).map((p) => `!${p}`), ...changed(r)].join(' ')]),
  );
}

/** The runs said exactly this; on failure, each node's stderr. */
export function assertSaid(runs: ReadonlyMap<string, OnceResult>, expected: Record<string, string>): void {
  assert.deepEqual(said(runs), expected, [...runs].map(([n, r]) => `--- ${n}\n${r.stderr}`).join('\n'));
}
