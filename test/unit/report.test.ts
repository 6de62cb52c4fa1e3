// What one reconcile tells the world (report/report.ts, pure): the Events a person sees in
// `kubectl describe ipt`, this node's IpipNode entries written (only when they change), the metric
// samples and the pass's result, from the outcome of a real pass over the kernel model.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel, NodeTunnelStatus } from '../../src/api/types.ts';
import { DriftTracker, reconcile } from '../../src/controller/reconcile.ts';
import type { KernelState } from '../../src/model/kernel.ts';
import { createLogger } from '../../src/report/log.ts';
import { countChanges, reportReconcile } from '../../src/report/report.ts';
import { RecordingDataplane } from '../harness/recording-dataplane.ts';
import { bareKernel, exampleTunnel, programmedKernel } from './builders.ts';

const log = createLogger({ format: 'json', level: 'error' });

/** `published`: this node's IpipNode entries as the API server has them (none by default). */
async function reportOf(
  kernel: KernelState | RecordingDataplane,
  tunnels: IpipTunnel[],
  drift = new DriftTracker(),
  published: NodeTunnelStatus[] = [],
) {
  const dp = kernel instanceof RecordingDataplane ? kernel : new RecordingDataplane(kernel);
  const outcome = await reconcile(dp, { nodeName: 'node-a', tunnels, nodeAddresses: new Map() }, log);
  const byName = new Map(published.map((e) => [e.name, e]));
  return { dp, outcome, report: reportReconcile('node-a', tunnels, outcome, drift.update(outcome), byName) };
}

describe('the report of a reconcile', () => {
  test('programming a tunnel: one Normal Programmed Event listing the changes, its entry written ready, a metric sample, success', async () => {
    const { report } = await reportOf(bareKernel(), [exampleTunnel()]);
    assert.equal(report.result, 'success');
    assert.deepEqual(
      report.events.map((e) => [e.type, e.reason, e.message]),
      [
        [
          'Normal',
          'Programmed',
          'node node-a: create link ipip 192.168.40.2 -> 192.168.40.3 ttl 64 mtu 1480; create address 172.0.0.2 peer 172.0.0.3; create route 172.0.0.0/24',
        ],
      ],
    );
    assert.deepEqual(
      report.nodeStatus?.map((e) => [e.name, e.ready, e.reason, e.underlayAddress]),
      [['lab', true, 'Programmed', '192.168.40.2']],
    );
    assert.deepEqual(
      report.tunnels.map((t) => [t.tunnel, t.link, t.mode, t.local, t.remote, t.up]),
      [['lab', 'ipiptun', 'ipip', '192.168.40.2', '192.168.40.3', true]],
    );
    assert.deepEqual(countChanges(report.changes).link, { create: 1, update: 0, delete: 0 });
  });

  test('nothing changed and the entry already says so: no Event, no status write', async () => {
    const first = await reportOf(bareKernel(), [exampleTunnel()]);
    const { report, outcome } = await reportOf(first.dp, [exampleTunnel()], undefined, first.report.nodeStatus);
    assert.equal(outcome.resolutions.length, 1, 'the pass resolved the tunnel');
    assert.deepEqual([report.events, report.nodeStatus, report.changes], [[], undefined, []]);
    assert.equal(report.tunnels.length, 1, 'the metrics still show it');
  });

  test('a repair of a tunnel already programmed is DriftCorrected, and counted', async () => {
    const drift = new DriftTracker();
    const first = await reportOf(bareKernel(), [exampleTunnel()], drift);
    first.dp.state.routes = first.dp.state.routes.filter((r) => r.dst !== '172.0.0.0/24');
    const { report } = await reportOf(first.dp, [exampleTunnel()], drift);
    assert.deepEqual(
      report.events.map((e) => [e.reason, e.message]),
      [['DriftCorrected', 'node node-a: create route 172.0.0.0/24']],
    );
    assert.equal(report.driftCorrections, 1);
  });

  test('a node that is no longer an endpoint: EndpointRemoved, and its entry removed', async () => {
    const moved = exampleTunnel((t) => {
      t.spec.endpoints[0]!.nodeName = 'node-c';
    });
    const { report } = await reportOf(programmedKernel(), [moved], undefined, [{ name: 'lab', ready: true }]);
    assert.deepEqual(
      report.events.map((e) => [e.type, e.reason]),
      [['Normal', 'EndpointRemoved']],
    );
    assert.deepEqual(report.nodeStatus, []);
    assert.deepEqual(report.tunnels, [], 'no metric series for a tunnel this node does not carry');
  });

  test('a problem is a Warning with its reason once; the same problem again is not repeated', async () => {
    const bad = exampleTunnel((t) => {
      t.spec.endpoints[0]!.underlay!.interface = 'eth9';
    });
    const { report } = await reportOf(bareKernel(), [bad]);
    assert.equal(report.result, 'requeue');
    assert.deepEqual(
      report.events.map((e) => [e.type, e.reason, e.message]),
      [['Warning', 'UnderlayInterfaceNotFound', 'node node-a: interface eth9 does not exist on node node-a']],
    );
    assert.deepEqual(
      report.nodeStatus?.map((e) => [e.ready, e.reason]),
      [[false, 'UnderlayInterfaceNotFound']],
    );
    const again = await reportOf(bareKernel(), [bad], undefined, report.nodeStatus);
    assert.equal(again.report.result, 'requeue', 'the problem is still there');
    assert.deepEqual([again.report.events, again.report.nodeStatus], [[], undefined]);
  });

  test('waiting for a peer to publish its address is normal convergence: the entry says so, no Warning', async () => {
    const waiting = exampleTunnel((t) => {
      t.spec.endpoints[1]!.underlay = { interface: 'eth1' };
    });
    const { report } = await reportOf(bareKernel(), [waiting]);
    assert.deepEqual(
      report.nodeStatus?.map((e) => [e.ready, e.reason, e.underlayAddress]),
      [[false, 'RemoteUnderlayUnknown', '192.168.40.2']],
    );
    assert.deepEqual(report.events, [], 'no Event at all');
  });

  test('a command the kernel refused is a KernelError and an error pass; the rest of the tunnel is still reported', async () => {
    const dp = new RecordingDataplane(bareKernel());
    dp.failWhen((a) => a.kind === 'route', 'RTNETLINK answers: Network is unreachable');
    const { report } = await reportOf(dp, [exampleTunnel()]);
    assert.equal(report.result, 'error');
    assert.deepEqual(
      report.events.map((e) => [e.type, e.reason]),
      [
        ['Normal', 'Programmed'],
        ['Warning', 'KernelError'],
      ],
    );
    assert.match(
      report.events[1]!.message,
      /ip route replace 172\.0\.0\.0\/24 dev ipiptun proto 203: RTNETLINK answers: Network is unreachable/,
    );
    assert.deepEqual(
      countChanges(report.changes).route,
      { create: 0, update: 0, delete: 0 },
      'the failed change is not counted',
    );
  });

  test("an entry of a tunnel deleted while the agent was away is dropped; other tunnels' entries are kept as they are", async () => {
    const first = await reportOf(bareKernel(), [exampleTunnel()]);
    const published = [...first.report.nodeStatus!, { name: 'gone', ready: true, reason: 'Programmed' }];
    const { report } = await reportOf(first.dp, [exampleTunnel()], undefined, published);
    assert.deepEqual(report.nodeStatus, first.report.nodeStatus);
  });

  test('standalone (nothing published, nothing to compare with): no node status at all', async () => {
    const dp = new RecordingDataplane(bareKernel());
    const outcome = await reconcile(
      dp,
      { nodeName: 'node-a', tunnels: [exampleTunnel()], nodeAddresses: new Map() },
      log,
    );
    const report = reportReconcile('node-a', [exampleTunnel()], outcome, new Map(), undefined);
    assert.equal(outcome.results.length, 3, 'the pass programmed the tunnel (link, address, route)');
    assert.equal(report.nodeStatus, undefined);
  });
});
