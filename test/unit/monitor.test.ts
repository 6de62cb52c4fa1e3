// Which kernel events wake the agent: lines of `ip -N -o monitor label link address route`
// as a Linux 6.1 kernel with iproute2 6.1 printed them (captured in the lab's node-a,
// which runs the example tunnel: link ipiptun on eth1, route 172.0.0.0/24, peer 172.0.0.3).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { kernelInterest } from '../../src/controller/reconcile.ts';
import { monitorLineMatters } from '../../src/dataplane/ip/monitor.ts';
import { NO_INTEREST } from '../../src/model/kernel.ts';
import type { KernelInterest } from '../../src/model/kernel.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { bareKernel, exampleTunnel, labLink } from './builders.ts';

const lab: KernelInterest = { links: new Set(['ipiptun']), prefixes: new Set(['172.0.0.0/24']) };

const cases: Array<[string, string, boolean]> = [
  // Ours, and the prefixes and links we program.
  ['our route deleted by hand', '[ROUTE]Deleted 172.0.0.0/24 dev ipiptun proto 203 scope 253 ', true],
  ['our route put back', '[ROUTE]172.0.0.0/24 dev ipiptun proto 203 scope 253 ', true],
  [
    "our prefix replaced by someone else's route on another link",
    '[ROUTE]172.0.0.0/24 dev eth1 proto 4 scope 253 ',
    true,
  ],
  ["the kernel's peer route on our link", '[ROUTE]172.0.0.3 dev ipiptun proto 2 scope 253 src 172.0.0.2 ', true],
  [
    'a multipath route with a nexthop on our link',
    '[ROUTE]10.201.0.0/24 \\\tnexthop via 192.168.40.3 dev eth1 weight 1 \\\tnexthop dev ipiptun weight 1 ',
    true,
  ],
  [
    'the same deleted',
    '[ROUTE]Deleted 10.201.0.0/24 \\\tnexthop via 192.168.40.3 dev eth1 weight 1 \\\tnexthop dev ipiptun weight 1 ',
    true,
  ],
  // Links and addresses: always (an underlay's MTU or address, a link taking a wanted name).
  [
    'a link set down',
    '[LINK]4: ipiptun@eth1: <POINTOPOINT,NOARP> mtu 1480 qdisc noqueue state DOWN group 0 \\    link/[768] 192.168.40.2 peer 192.168.40.3',
    true,
  ],
  [
    'an address added anywhere',
    '[ADDR]1: lo    inet 10.9.9.9/32 scope 0 lo\\       valid_lft forever preferred_lft forever',
    true,
  ],
  [
    'an address deleted',
    '[ADDR]Deleted 1: lo    inet 10.9.9.9/32 scope 0 lo\\       valid_lft forever preferred_lft forever',
    true,
  ],
  ['a line it does not recognise', 'Timestamp: Mon Nov 30 23:50:01 2026 123456 usec', true],
  // What a BGP daemon or a user does elsewhere: not ours.
  ['a BGP route (proto 186) on the underlay', '[ROUTE]10.200.0.7 via 192.168.40.3 dev eth1 proto 186 ', false],
  ['a static route on the underlay', '[ROUTE]10.200.0.0/24 dev eth1 proto 4 scope 253 ', false],
  ['the same deleted', '[ROUTE]Deleted 10.200.0.0/24 dev eth1 proto 4 scope 253 ', false],
  ['a blackhole (type 6)', '[ROUTE]6 10.203.0.0/24 ', false],
  ['a default route', '[ROUTE]default via 192.168.40.1 dev eth1 metric 500 ', false],
  [
    'a local route of an address on lo (type 2, table 255)',
    '[ROUTE]2 10.9.9.9 dev lo table 255 proto 2 scope 254 src 10.9.9.9 ',
    false,
  ],
  ['an IPv6 route', '[ROUTE]fe80::/64 dev eth1 proto 2 metric 256 pref medium', false],
];

describe('the kernel monitor: which events wake the agent', () => {
  for (const [name, line, matters] of cases) {
    test(`${matters ? 'wakes' : 'ignores'}: ${name}`, () => assert.equal(monitorLineMatters(line, lab), matters));
  }

  test('before the first reconcile only our own routes count among route events', () => {
    assert.equal(monitorLineMatters('[ROUTE]Deleted 172.0.0.0/24 dev ipiptun proto 203 scope 253 ', NO_INTEREST), true);
    assert.equal(
      monitorLineMatters('[ROUTE]172.0.0.3 dev ipiptun proto 2 scope 253 src 172.0.0.2 ', NO_INTEREST),
      false,
    );
    assert.equal(monitorLineMatters('[LINK]4: ipiptun@eth1: <POINTOPOINT,NOARP> mtu 1480', NO_INTEREST), true);
  });

  test('a default route counts when 0.0.0.0/0 is a prefix we route; a host route as its /32', () => {
    const wide: KernelInterest = { links: new Set(), prefixes: new Set(['0.0.0.0/0', '10.9.9.9/32']) };
    assert.equal(monitorLineMatters('[ROUTE]default via 192.168.40.1 dev eth1 metric 500 ', wide), true);
    assert.equal(monitorLineMatters('[ROUTE]2 10.9.9.9 dev lo table 255 proto 2 scope 254 src 10.9.9.9 ', wide), true);
  });

  test('the interest after a reconcile: the wanted links and routes, and every link we own', () => {
    const tunnel = exampleTunnel((t) => {
      t.spec.routes = ['172.0.0.0/24', '10.20.0.0/16'];
    });
    const observed = { ...bareKernel() };
    observed.links = [
      ...observed.links,
      labLink({ name: 'old-tunnel', alias: 'ipip-operator/gone' }),
      labLink({ name: 'theirs', alias: 'not ours', group: 0 }),
    ];
    const interest = kernelInterest({
      observed,
      resolutions: resolve({ nodeName: 'node-a', tunnels: [tunnel], kernel: observed, nodeAddresses: new Map() }),
    });
    assert.deepEqual([...interest.links].sort(), ['ipiptun', 'old-tunnel']);
    assert.deepEqual([...interest.prefixes].sort(), ['10.20.0.0/16', '172.0.0.0/24']);
  });
});
