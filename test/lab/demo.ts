// The README's first command: the two-host lab on a real kernel (User-Mode Linux), the
// agent in standalone mode on each host with examples/tunnel.yaml, then what a person
// would look at: the summaries, the link, the routes, a ping and a capture.
// Cluster mode comes with the in-cluster agent; then this lab grows a real API server.

import { Guest } from './uml.ts';
import { agentCommand, HOSTS, setUpTwoHosts, startIpipCapture } from './two-hosts.ts';

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

step('booting a Linux 6.1 kernel (User-Mode Linux) with two hosts: node-a 192.168.40.2, node-b 192.168.40.3 on eth1');
const guest = await Guest.boot();
let failed = false;
try {
  await setUpTwoHosts(guest);
  // The guest sees the host's files read-only; the manifest is copied where it can read it.
  await guest.ok('cp examples/tunnel.yaml /run/lab/tunnel.yaml');
  for (const node of ['node-a', 'node-b'] as const) {
    step(`${node}: ipip-operator plan -f examples/tunnel.yaml --node ${node}`);
    process.stdout.write(await guest.ok(`ip netns exec ${HOSTS[node]} node src/cli/main.ts plan -f /run/lab/tunnel.yaml --node ${node}`));
    step(`${node}: ipip-operator agent --once --manifest examples/tunnel.yaml --node-name ${node}`);
    const r = await guest.sh(agentCommand(node, '--once --manifest /run/lab/tunnel.yaml --log-format text'));
    process.stdout.write(r.stderr + r.stdout);
    if (r.code !== 0) throw new Error(`agent on ${node} exited ${r.code}`);
  }
  step('node-a: ip -d link show ipiptun; ip addr show dev ipiptun; ip route');
  process.stdout.write(await guest.ok('ip -n host-a -d link show ipiptun; ip -n host-a addr show dev ipiptun; ip -n host-a route'));
  step('node-a: ping -c 3 172.0.0.3 (node-b through the tunnel), capturing on node-b\'s eth1');
  const capture = await startIpipCapture(guest, 'node-b');
  process.stdout.write(await guest.ok('ip netns exec host-a ping -c 3 -i 0.3 172.0.0.3'));
  step('capture on node-b eth1 (filter: ip proto 4, IPIP)');
  process.stdout.write((await capture.done).stdout);
  step('a second reconcile changes nothing');
  process.stdout.write(await guest.ok(agentCommand('node-a', '--once --manifest /run/lab/tunnel.yaml --log-level warn')));
  step('done: the lab powers off with its kernel; nothing was changed on this machine');
} catch (error) {
  failed = true;
  process.stderr.write(`lab failed: ${(error as Error).message}\n`);
} finally {
  await guest.stop();
}
process.exitCode = failed ? 1 : 0;
