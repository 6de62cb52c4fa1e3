// What `kubectl get ipt` and `kubectl get ipipnodes -o yaml` show: each node's entry per
// tunnel, the aggregate READY and the conditions, and when they count as changed (status
// is only written when it changes, so agents do not wake each other in a loop).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel, NodeTunnelStatus } from '../../src/api/types.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import {
  aggregateStatus,
  nodeFieldManager,
  readySummaryOf,
  sameAggregate,
  sameEntries,
  sameEntry,
  tunnelEntry,
} from '../../src/report/status.ts';
import type { NodeReportOf } from '../../src/report/status.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

const T0 = new Date('2026-11-25T10:00:00.123Z');
const T1 = new Date('2026-11-25T10:05:00Z');

/** A node's entry for the example tunnel, as its IpipNode has it. */
type Entry = Omit<NodeTunnelStatus, 'name'> & { nodeName: string };

/** The example tunnel at a generation, and the IpipNodes' entries for it. */
function withEntries(generation: number, entries: Entry[]): { tunnel: IpipTunnel; reportOf: NodeReportOf } {
  const tunnel = exampleTunnel((t) => {
    t.metadata.generation = generation;
  });
  const reportOf: NodeReportOf = (node, name) => {
    const found = entries.find((e) => e.nodeName === node);
    if (found === undefined || name !== tunnel.metadata.name) return undefined;
    const { nodeName: _node, ...rest } = found;
    return { name, ...rest };
  };
  return { tunnel, reportOf };
}

const agg = (w: ReturnType<typeof withEntries>, now: Date) => aggregateStatus(w.tunnel, w.reportOf, now);

const readyEntry = (nodeName: string, observedGeneration = 1): Entry => ({
  nodeName,
  ready: true,
  reason: 'Programmed',
  message: 'up',
  observedGeneration,
  linkName: 'ipiptun',
});

function resolutionFor(t: IpipTunnel, node = 'node-a') {
  const r = resolve({ nodeName: node, tunnels: [t], kernel: bareKernel(), nodeAddresses: new Map() })[0]!;
  assert.notEqual(r.outcome, 'absent');
  return r as Exclude<typeof r, { outcome: 'absent' }>;
}

describe("a node's entry for a tunnel", () => {
  test('a programmed endpoint is ready, names its link and underlay, at the tunnel generation', () => {
    const t = exampleTunnel((x) => {
      x.metadata.generation = 3;
    });
    const entry = tunnelEntry(t, resolutionFor(t), undefined);
    assert.deepEqual(entry, {
      name: 'lab',
      linkName: 'ipiptun',
      ready: true,
      reason: 'Programmed',
      message: 'link ipiptun up, 192.168.40.2 -> 192.168.40.3',
      observedGeneration: 3,
      underlayAddress: '192.168.40.2',
    });
  });

  test('a node waiting for its peer still publishes its own underlay address (the peer may wait for it)', () => {
    const t = exampleTunnel((x) => {
      x.metadata.generation = 1;
      x.spec.endpoints[0]!.underlay = { interface: 'eth1' };
      x.spec.endpoints[1]!.underlay = { interface: 'eth1' };
    });
    const entry = tunnelEntry(t, resolutionFor(t), undefined);
    assert.equal(entry.ready, false);
    assert.equal(entry.reason, 'RemoteUnderlayUnknown');
    assert.equal(entry.underlayAddress, '192.168.40.2');
  });

  test('a kernel error or conflict makes a resolved endpoint not ready, with that reason', () => {
    const t = exampleTunnel();
    const entry = tunnelEntry(t, resolutionFor(t), {
      tunnel: 'lab',
      reason: 'LinkNameTaken',
      message: 'ipiptun is not ours',
    });
    assert.equal(entry.ready, false);
    assert.equal(entry.reason, 'LinkNameTaken');
    assert.equal(entry.message, 'ipiptun is not ours');
  });

  test('an entry equals itself with missing fields as undefined, and differs in any written field', () => {
    const { nodeName: _n, ...rest } = readyEntry('node-a');
    const a: NodeTunnelStatus = { name: 'lab', ...rest };
    assert.ok(sameEntry(a, { ...a }));
    assert.ok(
      sameEntry(
        { name: 'n', ready: false },
        JSON.parse('{"name":"n","ready":false,"underlayAddress":null}') as NodeTunnelStatus,
      ),
      'null from the server',
    );
    assert.ok(!sameEntry(a, { ...a, observedGeneration: 2 }));
    assert.ok(!sameEntry(a, { ...a, message: 'other' }));
    assert.ok(!sameEntry(a, undefined));
  });

  test("a node's entries compare as a set by tunnel name; the summary counts the ready ones", () => {
    const a: NodeTunnelStatus = { name: 'a', ready: true };
    const b: NodeTunnelStatus = { name: 'b', ready: false, reason: 'RemoteUnderlayUnknown' };
    assert.ok(sameEntries([a, b], [b, a]));
    assert.ok(!sameEntries([a, b], [a]));
    assert.ok(!sameEntries([a], [{ ...a, ready: false }]));
    assert.equal(readySummaryOf([a, b]), '1/2');
    assert.equal(readySummaryOf([]), '0/0');
  });

  test('a mesh says how many endpoints it joins, not how many routes it has now', () => {
    const t = exampleTunnel((x) => {
      x.spec.routes = [];
      x.spec.endpoints.push({ nodeName: 'node-c', underlay: { address: '192.168.40.4' }, overlayAddress: '172.0.0.4' });
    });
    assert.equal(
      tunnelEntry(t, resolutionFor(t), undefined).message,
      'link ipiptun up, 192.168.40.2 -> any (a mesh of 3)',
    );
  });

  test('field managers: one per node, never longer than the 128 the API server allows', () => {
    assert.equal(nodeFieldManager('node-a'), 'ipip-operator-node/node-a');
    const long = `${'a'.repeat(200)}.example`;
    const other = `${'a'.repeat(200)}.example2`;
    assert.ok(nodeFieldManager(long).length <= 128);
    assert.notEqual(nodeFieldManager(long), nodeFieldManager(other));
  });
});

describe('aggregate status', () => {
  test('both endpoints ready at the current generation: READY 2/2, Ready True, Degraded False', () => {
    const s = agg(withEntries(1, [readyEntry('node-a'), readyEntry('node-b')]), T0);
    assert.equal(s.readySummary, '2/2');
    assert.equal(s.readyEndpoints, 2);
    assert.equal(s.totalEndpoints, 2);
    assert.equal(s.observedGeneration, 1);
    const ready = s.conditions.find((c) => c.type === 'Ready')!;
    assert.deepEqual(ready, {
      type: 'Ready',
      status: 'True',
      reason: 'AllEndpointsReady',
      message: '2/2 endpoints ready',
      observedGeneration: 1,
      lastTransitionTime: '2026-11-25T10:00:00Z',
    });
    assert.equal(s.conditions.find((c) => c.type === 'Degraded')!.status, 'False');
  });

  test('a spec change is not Ready until every endpoint reports the new generation', () => {
    const s = agg(withEntries(2, [readyEntry('node-a', 2), readyEntry('node-b', 1)]), T0);
    assert.equal(s.readySummary, '1/2');
    const ready = s.conditions.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.match(ready.message, /node-b: has not seen generation 2 yet/);
    assert.equal(ready.observedGeneration, 2);
  });

  test('a missing report and a waiting endpoint are not Ready but not Degraded; an error is Degraded with its reason', () => {
    const waiting = agg(
      withEntries(1, [
        {
          nodeName: 'node-a',
          ready: false,
          reason: 'RemoteUnderlayUnknown',
          message: 'waiting',
          observedGeneration: 1,
        },
      ]),
      T0,
    );
    assert.equal(waiting.readySummary, '0/2');
    assert.match(waiting.conditions[0]!.message, /node-b: no report from its agent yet/);
    assert.equal(waiting.conditions.find((c) => c.type === 'Degraded')!.status, 'False');

    const broken = agg(
      withEntries(1, [
        readyEntry('node-a'),
        {
          nodeName: 'node-b',
          ready: false,
          reason: 'UnderlayInterfaceNotFound',
          message: 'interface eth9 does not exist on node node-b',
          observedGeneration: 1,
        },
      ]),
      T0,
    );
    const degraded = broken.conditions.find((c) => c.type === 'Degraded')!;
    assert.equal(degraded.status, 'True');
    assert.equal(degraded.reason, 'UnderlayInterfaceNotFound');
    assert.equal(degraded.message, 'node-b: UnderlayInterfaceNotFound: interface eth9 does not exist on node node-b');
  });

  test('entries of nodes no longer in the spec do not count', () => {
    const s = agg(withEntries(1, [readyEntry('node-a'), readyEntry('node-b'), readyEntry('node-gone')]), T0);
    assert.equal(s.readySummary, '2/2');
  });

  test('lastTransitionTime changes only when the condition status changes; an unchanged status is not rewritten', () => {
    const t = withEntries(1, [readyEntry('node-a'), readyEntry('node-b')]);
    const first = agg(t, T0);
    t.tunnel.status = { ...t.tunnel.status, ...first };
    const again = agg(t, T1);
    assert.deepEqual(again, first, 'same inputs later: same status, same times');
    assert.ok(sameAggregate(t.tunnel.status, again), 'nothing to write');

    t.tunnel.metadata.generation = 2; // a spec change: not Ready until both report generation 2
    const changed = agg(t, T1);
    assert.ok(!sameAggregate(t.tunnel.status, changed));
    assert.equal(changed.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime, '2026-11-25T10:05:00Z');
    assert.equal(
      changed.conditions.find((c) => c.type === 'Degraded')!.lastTransitionTime,
      '2026-11-25T10:00:00Z',
      'Degraded stayed False',
    );
  });
});
