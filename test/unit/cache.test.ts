// What an agent keeps of the objects it reads from the API server. Every agent caches
// every IpipTunnel and Node of the cluster, so what is dropped here is memory on every
// node; what is kept must be all that resolve, status and Events read.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { nodeAddressesOf, tunnelOf } from '../../src/kube/client.ts';

/** An IpipTunnel as the API server sends it after kubectl apply and two agents' status writes. */
function asServed(): IpipTunnel {
  const spec = {
    linkName: 'ipiptun',
    mode: 'ipip' as const,
    ttl: 64,
    routes: ['172.0.0.0/24'],
    endpoints: [
      { nodeName: 'node-a', underlay: { interface: 'eth1' }, overlayAddress: '172.0.0.2' },
      { nodeName: 'node-b', underlay: { interface: 'eth1' }, overlayAddress: '172.0.0.3' },
    ],
  };
  const status = {
    observedGeneration: 2,
    readySummary: '2/2',
    endpoints: [{ nodeName: 'node-a', ready: true, underlayAddress: '192.168.40.2' }],
  };
  const managed = (manager: string, subresource?: string) => ({
    manager,
    operation: 'Apply',
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    time: '2026-11-30T22:00:00Z',
    fieldsType: 'FieldsV1',
    ...(subresource === undefined ? {} : { subresource }),
    fieldsV1: {
      'f:status': {
        'f:endpoints': {
          'k:{"nodeName":"node-a"}': { '.': {}, 'f:nodeName': {}, 'f:ready': {}, 'f:underlayAddress': {} },
        },
      },
    },
  });
  return {
    apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
    kind: 'IpipTunnel',
    metadata: {
      name: 'lab',
      uid: '6b1f0c4e-0000-4000-8000-000000000001',
      generation: 2,
      resourceVersion: '4711',
      creationTimestamp: '2026-11-30T21:59:00Z',
      labels: { team: 'net' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }) },
      managedFields: [
        managed('kubectl-client-side-apply'),
        managed('ipip-operator-node/node-a', 'status'),
        managed('ipip-operator-node/node-b', 'status'),
        managed('ipip-operator-aggregate', 'status'),
      ],
    } as IpipTunnel['metadata'],
    spec,
    status,
  };
}

describe('what the cache keeps', () => {
  test('an IpipTunnel keeps spec, status and the metadata the agent reads; managedFields and annotations are dropped', () => {
    const served = asServed();
    const kept = tunnelOf(served);
    assert.deepEqual(kept, {
      apiVersion: served.apiVersion,
      kind: served.kind,
      metadata: {
        name: 'lab',
        uid: served.metadata.uid,
        generation: 2,
        resourceVersion: '4711',
        creationTimestamp: '2026-11-30T21:59:00Z',
      },
      spec: served.spec,
      status: served.status,
    });
    assert.ok(
      JSON.stringify(kept).length < JSON.stringify(served).length / 2,
      `kept ${JSON.stringify(kept).length} of ${JSON.stringify(served).length} bytes`,
    );
  });

  test('an IpipTunnel being deleted keeps its deletionTimestamp; one without status stays without', () => {
    const served = asServed();
    served.metadata.deletionTimestamp = '2026-11-30T23:00:00Z';
    delete served.status;
    const kept = tunnelOf(served);
    assert.equal(kept.metadata.deletionTimestamp, '2026-11-30T23:00:00Z');
    assert.equal('status' in kept, false);
  });

  test('a Node keeps its name and its IPv4 InternalIP only', () => {
    assert.deepEqual(
      nodeAddressesOf({
        metadata: { name: 'node-a', labels: { 'kubernetes.io/hostname': 'node-a' } },
        status: {
          addresses: [
            { type: 'Hostname', address: 'node-a' },
            { type: 'InternalIP', address: 'fd00::2' },
            { type: 'InternalIP', address: '192.168.40.2' },
          ],
        },
      }),
      { name: 'node-a', internalIP: '192.168.40.2' },
    );
    assert.deepEqual(
      nodeAddressesOf({
        metadata: { name: 'node-b' },
        status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.9' }] },
      }),
      { name: 'node-b' },
    );
  });
});
