// What `kubectl get ipt` and `kubectl get ipt -o yaml` show: each node's endpoint entry,
// the aggregate READY and the conditions, and when they count as changed (status is only
// written when it changes, so agents do not wake each other in a loop).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { EndpointStatus, IpipTunnel } from '../../src/api/types.ts';
import { resolve } from '../../src/resolve/resolve.ts';
import { aggregateStatus, endpointEntry, nodeFieldManager, sameAggregate, sameEntry } from '../../src/report/status.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

const T0 = new Date('2026-11-25T10:00:00.123Z');
const T1 = new Date('2026-11-25T10:05:00Z');

function withEntries(generation: number, entries: EndpointStatus[]): IpipTunnel {
  return exampleTunnel((t) => {
    t.metadata.generation = generation;
    t.status = { endpoints: entries };
  });
}

const readyEntry = (nodeName: string, observedGeneration = 1): EndpointStatus => ({
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

describe('endpoint entry', () => {
  test('a programmed endpoint is ready, names its link and underlay, at the tunnel generation', () => {
    const t = exampleTunnel((x) => {
      x.metadata.generation = 3;
    });
    const entry = endpointEntry('node-a', t, resolutionFor(t), undefined);
    assert.deepEqual(entry, {
      nodeName: 'node-a',
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
    const entry = endpointEntry('node-a', t, resolutionFor(t), undefined);
    assert.equal(entry.ready, false);
    assert.equal(entry.reason, 'RemoteUnderlayUnknown');
    assert.equal(entry.underlayAddress, '192.168.40.2');
  });

  test('a kernel error or conflict makes a resolved endpoint not ready, with that reason', () => {
    const t = exampleTunnel();
    const entry = endpointEntry('node-a', t, resolutionFor(t), {
      tunnel: 'lab',
      reason: 'LinkNameTaken',
      message: 'ipiptun is not ours',
    });
    assert.equal(entry.ready, false);
    assert.equal(entry.reason, 'LinkNameTaken');
    assert.equal(entry.message, 'ipiptun is not ours');
  });

  test('an entry equals itself with missing fields as undefined, and differs in any written field', () => {
    const a = readyEntry('node-a');
    assert.ok(sameEntry(a, { ...a }));
    assert.ok(
      sameEntry(
        { nodeName: 'n', ready: false },
        JSON.parse('{"nodeName":"n","ready":false,"underlayAddress":null}') as EndpointStatus,
      ),
      'null from the server',
    );
    assert.ok(!sameEntry(a, { ...a, observedGeneration: 2 }));
    assert.ok(!sameEntry(a, { ...a, message: 'other' }));
    assert.ok(!sameEntry(a, undefined));
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
    const s = aggregateStatus(withEntries(1, [readyEntry('node-a'), readyEntry('node-b')]), T0);
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
    const s = aggregateStatus(withEntries(2, [readyEntry('node-a', 2), readyEntry('node-b', 1)]), T0);
    assert.equal(s.readySummary, '1/2');
    const ready = s.conditions.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.match(ready.message, /node-b: has not seen generation 2 yet/);
    assert.equal(ready.observedGeneration, 2);
  });

  test('a missing report and a waiting endpoint are not Ready but not Degraded; an error is Degraded with its reason', () => {
    const waiting = aggregateStatus(
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

    const broken = aggregateStatus(
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
    const s = aggregateStatus(
      withEntries(1, [readyEntry('node-a'), readyEntry('node-b'), readyEntry('node-gone')]),
      T0,
    );
    assert.equal(s.readySummary, '2/2');
  });

  test('lastTransitionTime changes only when the condition status changes; an unchanged status is not rewritten', () => {
    const t = withEntries(1, [readyEntry('node-a'), readyEntry('node-b')]);
    const first = aggregateStatus(t, T0);
    t.status = { ...t.status, ...first };
    const again = aggregateStatus(t, T1);
    assert.deepEqual(again, first, 'same inputs later: same status, same times');
    assert.ok(sameAggregate(t.status, again), 'nothing to write');

    t.metadata.generation = 2; // a spec change: not Ready until both report generation 2
    const changed = aggregateStatus(t, T1);
    assert.ok(!sameAggregate(t.status, changed));
    assert.equal(changed.conditions.find((c) => c.type === 'Ready')!.lastTransitionTime, '2026-11-25T10:05:00Z');
    assert.equal(
      changed.conditions.find((c) => c.type === 'Degraded')!.lastTransitionTime,
      '2026-11-25T10:00:00Z',
      'Degraded stayed False',
    );
  });
});
