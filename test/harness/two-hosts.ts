// The two-host lab of examples/tunnel.yaml inside one UML guest: network namespaces
// host-a (node-a, 192.168.40.2) and host-b (node-b, 192.168.40.3), each with an eth1,
// joined by a veth pair. Used by the kernel tests and by the README's lab command.

import type { CommandResult, Guest } from './uml.ts';

export const HOSTS = { 'node-a': 'host-a', 'node-b': 'host-b' } as const;
export type LabNode = keyof typeof HOSTS;

export async function setUpTwoHosts(guest: Guest): Promise<void> {
  await guest.ok([
    'ip netns add host-a', 'ip netns add host-b',
    'ip link add eth1 netns host-a type veth peer name eth1 netns host-b',
    'ip -n host-a link set lo up', 'ip -n host-b link set lo up',
    'ip -n host-a addr add 192.168.40.2/24 dev eth1', 'ip -n host-b addr add 192.168.40.3/24 dev eth1',
    'ip -n host-a link set eth1 up', 'ip -n host-b link set eth1 up',
  ].join(' && '));
}

/** The agent's CLI, run inside a host's namespace, from the checkout. */
export function agentCommand(node: LabNode, args: string): string {
  return `ip netns exec ${HOSTS[node]} node src/cli/main.ts agent --node-name ${node} ${args}`;
}

/**
 * Starts a capture of IPIP packets (IP protocol 4) on a host's underlay and waits until
 * tcpdump is listening; `done` ends after 2 packets or 10 s. -v prints the outer header,
 * "proto IPIP (4)" (tcpdump 4.99 no longer appends the "(ipip-proto-4)" of older versions).
 * The running capture is wrapped in an object: an async function returning the bare
 * promise would resolve only when the capture ends.
 */
export async function startIpipCapture(guest: Guest, node: LabNode): Promise<{ done: Promise<CommandResult> }> {
  const done = guest.sh(`ip netns exec ${HOSTS[node]} timeout 10 tcpdump -l -n -v -c 2 -i eth1 ip proto 4 2>&1`);
  await new Promise((r) => setTimeout(r, 1500));
  return { done };
}
