// The agent's view of the kernel between reads: monitor lines read into changes
// (parseMonitorLine, on lines of `ip -d -N -o monitor label link address route` as the lab
// kernel, Linux 6.12 with iproute2 6.1, printed them), and the view they keep (view.ts).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KernelView } from '../../src/controller/view.ts';
import { parseMonitorLine } from '../../src/dataplane/ip/monitor.ts';
import type { KernelState } from '../../src/model/kernel.ts';
import { plan } from '../../src/plan/engine.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { applyModel } from '../harness/kernel-model.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

const D = '\\    ';
/** The sizes iproute2 prints after a tunnel's attributes. */
const SIZES = 'gso_max_size 65536 gso_max_segs 65535 tso_max_size 65536 tso_max_segs 65535 gro_max_size 65536 ';
const created = [
  `[LINK]10: b0@eth1: <POINTOPOINT,NOARP> mtu 1480 qdisc noop state DOWN group 203 `,
  `link/[768] 192.168.40.2 peer 10.200.0.1 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 `,
  `ipip any remote 10.200.0.1 local 192.168.40.2 dev eth1 ttl 64 pmtudisc numtxqueues 1 ${SIZES}`,
].join(D);
const up = [
  `[LINK]10: b0@eth1: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN group 203 `,
  `link/[768] 192.168.40.2 peer 10.200.0.1 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 `,
  `ipip any remote 10.200.0.1 local 192.168.40.2 dev eth1 ttl 64 pmtudisc numtxqueues 1 ${SIZES}`,
  `alias ipip-operator/t0`,
].join(D);
const mesh = [
  `[LINK]11: m0@eth1: <NOARP,UP,LOWER_UP> mtu 1480 qdisc noqueue state UNKNOWN group 0 `,
  `link/[768] 192.168.40.2 brd 0.0.0.0 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 `,
  `ipip any remote any local 192.168.40.2 dev eth1 ttl inherit pmtudisc numtxqueues 1 ${SIZES}`,
].join(D);
const veth = [
  `[LINK]2: b1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group 0 `,
  `link/[1] 12:8f:4d:02:31:f2 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 `,
  `veth numtxqueues 2 numrxqueues 2 gso_max_size 65536 gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 `,
].join(D);

describe('parseMonitorLine: what a line of ip -d monitor says changed', () => {
  test('a link whole: name, flags, mtu, group, the ipip attributes and the alias', () => {
    assert.deepEqual(parseMonitorLine(up), {
      kind: 'link',
      deleted: false,
      link: {
        index: 10,
        name: 'b0',
        group: 203,
        up: true,
        mtu: 1480,
        kind: 'ipip',
        alias: 'ipip-operator/t0',
        tunnel: { mode: 'ipip', local: '192.168.40.2', remote: '10.200.0.1', ttl: 64, underlayDevice: 'eth1' },
      },
    });
    const down = parseMonitorLine(created);
    assert.equal(down.kind === 'link' && down.link.up, false);
    assert.equal(down.kind === 'link' && down.link.alias, undefined);
    const any = parseMonitorLine(mesh);
    assert.deepEqual(any.kind === 'link' && any.link.tunnel, {
      mode: 'ipip',
      local: '192.168.40.2',
      remote: undefined,
      ttl: 0,
      underlayDevice: 'eth1',
    });
    const other = parseMonitorLine(veth);
    assert.deepEqual(other.kind === 'link' && [other.link.name, other.link.kind, other.link.tunnel], [
      'b1',
      'veth',
      undefined,
    ]);
    const gone = parseMonitorLine(up.replace('[LINK]', '[LINK]Deleted '));
    assert.equal(gone.kind === 'link' && gone.deleted, true);
  });

  test('addresses: a point-to-point pair, a subnet; IPv6 is elsewhere', () => {
    assert.deepEqual(
      parseMonitorLine(
        '[ADDR]10: b0    inet 172.16.0.1 peer 172.17.0.1/32 scope 0 b0\\       valid_lft forever preferred_lft forever',
      ),
      {
        kind: 'address',
        deleted: false,
        dev: 'b0',
        address: { local: '172.16.0.1', peer: '172.17.0.1', prefixlen: 32, scope: 0 },
      },
    );
    assert.deepEqual(
      parseMonitorLine(
        '[ADDR]Deleted 3: eth1    inet 192.168.40.2/24 brd 192.168.40.255 scope 0 eth1\\       valid_lft forever',
      ),
      { kind: 'address', deleted: true, dev: 'eth1', address: { local: '192.168.40.2', prefixlen: 24, scope: 0 } },
    );
    assert.deepEqual(
      parseMonitorLine(
        '[ADDR]10: b0    inet6 fe80::5efe:c0a8:2802/64 scope 253 \\       valid_lft forever preferred_lft forever',
      ),
      { kind: 'elsewhere' },
    );
  });

  test('routes of the main table with their next hop; other tables and IPv6 are elsewhere', () => {
    assert.deepEqual(parseMonitorLine('[ROUTE]1 10.100.0.0/24 via 172.17.0.1 dev b0 table 254 proto 203 scope 0 '), {
      kind: 'route',
      deleted: false,
      route: { dst: '10.100.0.0/24', dev: 'b0', gateway: '172.17.0.1', protocol: 203, metric: 0, scope: 0, type: 1 },
    });
    assert.deepEqual(
      parseMonitorLine('[ROUTE]1 172.20.0.1 via 10.210.0.1 dev m0 table 254 proto 203 scope 0 onlink '),
      {
        kind: 'route',
        deleted: false,
        route: {
          dst: '172.20.0.1/32',
          dev: 'm0',
          gateway: '10.210.0.1',
          onlink: true,
          protocol: 203,
          metric: 0,
          scope: 0,
          type: 1,
        },
      },
    );
    const deleted = parseMonitorLine(
      '[ROUTE]Deleted 1 default via 192.168.40.1 dev eth1 table 254 proto 4 scope 0 metric 500 ',
    );
    assert.deepEqual(deleted.kind === 'route' && [deleted.deleted, deleted.route.dst, deleted.route.metric], [
      true,
      '0.0.0.0/0',
      500,
    ]);
    assert.deepEqual(parseMonitorLine('[ROUTE]2 172.16.0.1 dev b0 table 255 proto 2 scope 254 src 172.16.0.1 '), {
      kind: 'elsewhere',
    });
    assert.deepEqual(parseMonitorLine('[ROUTE]1 fe80::/64 dev b0 table 254 proto 2 scope 0 metric 256 pref medium'), {
      kind: 'elsewhere',
    });
  });

  test('a line it cannot read is never guessed at', () => {
    for (const line of ['Timestamp: Mon Nov 30 23:50:01 2026 123456 usec', '[LINK]garbage', '[ADDR]??', '[ROUTE]']) {
      assert.deepEqual(parseMonitorLine(line), { kind: 'unreadable' }, line);
    }
  });
});

describe('the view: the last read and the events since', () => {
  const tunnels = [exampleTunnel()];
  const planOn = (kernel: KernelState) =>
    plan(resolve({ nodeName: 'node-a', tunnels, kernel, nodeAddresses: new Map() }), kernel).actions;
  const programmed = () => applyModel(bareKernel(), planOn(bareKernel()));

  test("a pass's writes, as their events report them, leave a view with nothing to do", () => {
    const before = bareKernel();
    const after = programmed();
    const view = new KernelView(before);
    assert.ok(planOn(view.state()).length > 0);
    const link = after.links.find((l) => l.name === 'ipiptun')!;
    const { addresses, stats: _stats, ...bare } = link;
    view.apply({ kind: 'link', deleted: false, link: { ...bare, up: false } });
    for (const address of addresses) view.apply({ kind: 'address', deleted: false, dev: link.name, address });
    view.apply({ kind: 'link', deleted: false, link: bare });
    for (const route of after.routes.filter((r) => !before.routes.some((b) => b.dst === r.dst))) {
      view.apply({ kind: 'route', deleted: false, route });
    }
    assert.deepEqual(planOn(view.state()), []);
    assert.equal(view.trusted(), true);
  });

  test('a link set down loses its routes, as the kernel drops them without an event; the plan puts both back', () => {
    const view = new KernelView(programmed());
    const link = view.state().links.find((l) => l.name === 'ipiptun')!;
    const { addresses: _a, stats: _s, ...bare } = link;
    view.apply({ kind: 'link', deleted: false, link: { ...bare, up: false } });
    assert.ok(!view.state().routes.some((r) => r.dev === 'ipiptun'));
    assert.deepEqual(
      planOn(view.state()).map((a) => `${a.kind} ${a.verb}`),
      ['link update', 'route create'],
    );
  });

  test('a rename keeps the routes on the link; a name back under a new index and a deletion drop what the kernel drops', () => {
    const view = new KernelView(programmed());
    const link = view.state().links.find((l) => l.name === 'ipiptun')!;
    const { addresses: _a, stats: _s, ...bare } = link;
    const routesOn = (dev: string) =>
      view
        .state()
        .routes.filter((r) => r.dev === dev)
        .map((r) => r.dst)
        .sort();
    const routed = routesOn('ipiptun');
    assert.ok(routed.length > 0);
    view.apply({ kind: 'link', deleted: false, link: { ...bare, name: 'renamed' } });
    assert.deepEqual(routesOn('renamed'), routed);
    assert.deepEqual(routesOn('ipiptun'), []);
    // The old name again, under another index: the view missed a deletion and a re-creation.
    view.apply({ kind: 'link', deleted: false, link: { ...bare, index: bare.index + 100, name: 'renamed' } });
    assert.deepEqual(
      view
        .state()
        .links.filter((l) => l.name === 'renamed')
        .map((l) => l.index),
      [bare.index + 100],
    );
    assert.deepEqual(routesOn('renamed'), []);
    view.apply({
      kind: 'route',
      deleted: false,
      route: { dst: '10.9.0.0/24', dev: 'renamed', protocol: 203, metric: 0, scope: 253, type: 1 },
    });
    assert.deepEqual(routesOn('renamed'), ['10.9.0.0/24']);
    view.apply({ kind: 'link', deleted: true, link: { ...bare, index: bare.index + 100, name: 'renamed' } });
    assert.deepEqual(routesOn('renamed'), []);
    assert.ok(!view.state().links.some((l) => l.name === 'renamed'));
    assert.equal(view.trusted(), true);
  });

  test('an unreadable line, an address on an unknown link, or another process changing our table: not to be trusted', () => {
    const unreadable = new KernelView(bareKernel());
    unreadable.apply({ kind: 'unreadable' });
    assert.match(String(unreadable.trusted()), /could not read/);
    const address = new KernelView(bareKernel());
    address.apply({
      kind: 'address',
      deleted: false,
      dev: 'nope',
      address: { local: '10.1.1.1', prefixlen: 32, scope: 0 },
    });
    assert.match(String(address.trusted()), /nope/);
    const nft = new KernelView(bareKernel());
    nft.apply({ kind: 'nft', own: true });
    assert.equal(nft.trusted(), true);
    nft.apply({ kind: 'nft', own: false });
    assert.match(String(nft.trusted()), /another process/);
  });
});
