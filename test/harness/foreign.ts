// What a real node has that is not the agent's, for tests to put on a lab node and show
// untouched afterwards. `ip` is the command to run them with: "ip" in a cluster guest,
// "ip -n host-a" in a host namespace of the two-host lab.

/**
 * Someone else's ipip tunnel foreign0 (by default local 192.168.40.2, remote 192.168.40.7,
 * not bound to a device) with the address 10.99.0.1 and a route to 10.99.0.0/16.
 */
export function foreignTunnelCommands(ip: string, pair = { local: '192.168.40.2', remote: '192.168.40.7' }): string[] {
  return [
    `${ip} link add name foreign0 type ipip local ${pair.local} remote ${pair.remote} ttl 0`,
    `${ip} addr add 10.99.0.1/32 dev foreign0`,
    `${ip} link set foreign0 up`,
    `${ip} route add 10.99.0.0/16 dev foreign0`,
  ];
}

/**
 * Things that carry the agent's marks but are not its own: a veth with its alias (not a
 * kind it creates), a route with its protocol on the underlay (not on a link of its own).
 */
export function lookalikeCommands(ip: string): string[] {
  return [
    `${ip} link add vmark type veth peer name vmark-peer`,
    `${ip} link set vmark alias ipip-operator/lab`,
    `${ip} route add 10.77.0.0/16 dev eth1 proto 203`,
  ];
}
