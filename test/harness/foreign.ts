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

/**
 * Someone else's point-to-point ipip device (no group, no alias: not the agent's) NAME from
 * LOCAL to REMOTE, bound to DEV when given, with ADDRESS and PEER as its /32 pair, up.
 */
export function foreignPointToPointCommands(
  ip: string,
  d: { name: string; local: string; remote: string; dev?: string; address: string; peer: string },
): string[] {
  return [
    `${ip} link add name ${d.name} type ipip local ${d.local} remote ${d.remote}${d.dev === undefined ? '' : ` dev ${d.dev}`}`,
    `${ip} addr add ${d.address} peer ${d.peer} dev ${d.name}`,
    `${ip} link set ${d.name} up`,
  ];
}

/**
 * Someone else's nftables table, as a host firewall has one: a set, a filter rule and a
 * nat rule, for addresses the lab never uses. No counters, so its listing stays the same
 * byte for byte whatever the lab's traffic does.
 */
export const FOREIGN_NFT_TABLE = `table inet foreign {
  set blocked {
    type ipv4_addr
    elements = { 203.0.113.7, 203.0.113.8 }
  }
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr @blocked drop comment "someone else's"
  }
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    ip saddr 198.51.100.0/24 oifname "eth1" masquerade
  }
}
`;

/** Where iptables-legacy is, and how to get it: the agent must leave the legacy tables alone too. */
export const IPTABLES_LEGACY_HINT = 'apt-get install -y iptables (iptables-legacy and iptables-legacy-save are in it)';

/** Someone else's iptables-legacy rules (`iptables` is the command: "ip netns exec host-b iptables-legacy"): filter and nat. */
export function foreignIptablesCommands(iptables: string): string[] {
  return [
    `${iptables} -A INPUT -s 203.0.113.9/32 -p tcp --dport 22 -j DROP`,
    `${iptables} -t nat -A POSTROUTING -s 198.51.100.0/24 -o eth1 -j MASQUERADE`,
  ];
}
