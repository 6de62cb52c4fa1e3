// Parsing what a real kernel printed, and mapping `ip -force -batch` failures back to actions.
// The fixture is the observe batch (`ip -json -details -N -s -batch -`: `address show`,
// `route show table main`) run in host-a of the two-host lab (test/harness/two-hosts.ts) on UML
// 6.1 with iproute2 6.1, after: ipiptun (alias ipip-operator/lab, 172.0.0.2 peer 172.0.0.3,
// route 172.0.0.0/24 proto 203) with its mirror in host-b; foreign0 (ipip, down, no alias);
// a route 10.9.0.0/16 via 192.168.40.1 proto boot metric 100; `ping -c 3 172.0.0.3`; and
// `ping -c 2 172.0.0.9`, which leaves host-a through the tunnel and never comes back
// (host-b does not forward), so transmit and receive counters differ.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseBatchErrors, resultsFromBatch } from '../../src/dataplane/ip/driver.ts';
import { parseLinks, parseRoutes } from '../../src/dataplane/ip/parse.ts';
import type { Action, IpAction } from '../../src/model/action.ts';

const capture = readFileSync(new URL('./fixtures/ip-observe-uml-6.1.txt', import.meta.url), 'utf8');
const section = (name: string) => JSON.parse(capture.split(`=====${name}\n`)[1]!.split('\n=====')[0]!) as unknown;

describe('parse ip -json -details -N -s', () => {
  const links = parseLinks(section('ADDR'));
  const byName = new Map(links.map((l) => [l.name, l]));
  const link = (extra: object) => ({ ifindex: 9, ifname: 'x', flags: [], mtu: 1480, ...extra });

  test('an ipip link: kind, alias, underlay, endpoints, ttl, up, peer address, counters', () => {
    assert.deepEqual(byName.get('ipiptun'), {
      index: 4,
      name: 'ipiptun',
      kind: 'ipip',
      alias: 'ipip-operator/lab',
      group: 0,
      up: true,
      mtu: 1480,
      tunnel: { mode: 'ipip', local: '192.168.40.2', remote: '192.168.40.3', ttl: 64, underlayDevice: 'eth1' },
      addresses: [{ local: '172.0.0.2', peer: '172.0.0.3', prefixlen: 32, scope: 0 }],
      // 3 echo replies in, 3 requests + 2 unanswered out; 84 bytes each (the inner packet).
      stats: {
        rxBytes: 252,
        rxPackets: 3,
        rxErrors: 0,
        rxDropped: 0,
        txBytes: 420,
        txPackets: 5,
        txErrors: 0,
        txDropped: 0,
      },
    });
  });
  test('every link carries its counters: the underlay carried 5 outer packets and an ARP request', () => {
    assert.deepEqual(
      links.filter((l) => l.stats === undefined).map((l) => l.name),
      [],
    );
    assert.equal(byName.get('eth1')!.stats!.txPackets, 6);
  });
  test('each kernel counter lands in its own field; stats (kernels without stats64) as well as stats64', () => {
    const rx = { bytes: 1, packets: 2, errors: 3, dropped: 4, over_errors: 90, multicast: 91 };
    const tx = { bytes: 5, packets: 6, errors: 7, dropped: 8, carrier_errors: 92, collisions: 93 };
    const expected = {
      rxBytes: 1,
      rxPackets: 2,
      rxErrors: 3,
      rxDropped: 4,
      txBytes: 5,
      txPackets: 6,
      txErrors: 7,
      txDropped: 8,
    };
    assert.deepEqual(parseLinks([link({ stats64: { rx, tx } })])[0]!.stats, expected);
    assert.deepEqual(parseLinks([link({ stats: { rx, tx } })])[0]!.stats, expected);
  });
  test('no counters, or an incomplete set, is no stats rather than made-up zeros', () => {
    assert.equal(parseLinks([link({})])[0]!.stats, undefined);
    assert.equal(
      parseLinks([link({ stats64: { rx: { bytes: 1, packets: 2, errors: 0, dropped: 0 }, tx: { bytes: 1 } } })])[0]!
        .stats,
      undefined,
    );
  });
  test('tunl0 and a foreign ipip link have no alias; eth1 has its address', () => {
    assert.equal(byName.get('tunl0')!.alias, undefined);
    assert.equal(byName.get('tunl0')!.up, false);
    assert.equal(byName.get('foreign0')!.kind, 'ipip');
    assert.equal(byName.get('foreign0')!.alias, undefined);
    assert.deepEqual(byName.get('eth1')!.addresses, [{ local: '192.168.40.2', prefixlen: 24, scope: 0 }]);
  });
  test('routes: protocol numbers, host routes as /32, metrics, gateways', () => {
    assert.deepEqual(parseRoutes(section('ROUTE')), [
      { dst: '10.9.0.0/16', dev: 'eth1', gateway: '192.168.40.1', protocol: 3, metric: 100, scope: 0, type: 1 },
      { dst: '172.0.0.0/24', dev: 'ipiptun', protocol: 203, metric: 0, scope: 253, type: 1 },
      { dst: '172.0.0.3/32', dev: 'ipiptun', protocol: 2, metric: 0, scope: 253, type: 1 },
      { dst: '192.168.40.0/24', dev: 'eth1', protocol: 2, metric: 0, scope: 253, type: 1 },
    ]);
  });
});

describe('ip -force -batch results', () => {
  const action = (verb: Action['verb'], lines: number): IpAction => ({
    tool: 'ip',
    kind: 'link',
    verb,
    tunnel: 't',
    link: 'l',
    detail: '',
    ops: Array.from({ length: lines }, () => ({ op: 'link-set-up' as const, name: 'l' })),
  });
  test('a failed line is charged to the action it belongs to; the others succeed', () => {
    // What iproute2 6.1 printed for a 4-line batch whose lines 1, 3 and 4 failed.
    const stderr =
      'Cannot find device "nosuch"\nCommand failed -:1\nRTNETLINK answers: File exists\nCommand failed ' +
      '-:3\nRTNETLINK answers: Cannot assign requested address\nCommand failed -:4\n';
    const errors = parseBatchErrors(stderr);
    assert.deepEqual([...errors.keys()], [1, 3, 4]);
    const results = resultsFromBatch([action('update', 1), action('create', 2), action('update', 1)], errors);
    assert.match(results[0]!.error!, /Cannot find device/);
    assert.match(results[1]!.error!, /File exists/);
    assert.match(results[2]!.error!, /Cannot assign requested address/);
  });
  test('a delete of something already gone is success', () => {
    const results = resultsFromBatch(
      [action('delete', 1), action('update', 1)],
      parseBatchErrors('Cannot find device "x"\nCommand failed -:1\n'),
    );
    assert.deepEqual(
      results.map((r) => r.error),
      [undefined, undefined],
    );
  });
});
