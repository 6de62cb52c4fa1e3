// Events as `kubectl describe ipt` shows them: one Event object per distinct event, its
// count raised on repeats (as client-go's correlator does), a new object after the series
// window or when the old one is gone, and a failed write that never throws.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApiError } from '../../src/kube/client.ts';
import type { KubeEvent } from '../../src/kube/client.ts';
import { EVENT_NAMESPACE, EventRecorder } from '../../src/report/events.ts';
import { createLogger } from '../../src/report/log.ts';
import { exampleTunnel } from './builders.ts';

function recordingClient() {
  const created: KubeEvent[] = [];
  const patched: Array<{ name: string; count: number }> = [];
  let failPatchWith: ApiError | undefined;
  return {
    created,
    patched,
    failNextPatch(e: ApiError) {
      failPatchWith = e;
    },
    client: {
      createEvent: async (e: KubeEvent) => {
        created.push(e);
        return e;
      },
      patchEventSeries: async (_ns: string, name: string, count: number) => {
        if (failPatchWith !== undefined) {
          const e = failPatchWith;
          failPatchWith = undefined;
          throw e;
        }
        patched.push({ name, count });
      },
    },
  };
}

const log = createLogger({ format: 'json', level: 'error' });
const tunnel = exampleTunnel((t) => {
  t.metadata.uid = 'uid-1';
});

describe('EventRecorder', () => {
  test('an event names the tunnel, the node and the reason, in namespace default', async () => {
    const rec = recordingClient();
    const events = new EventRecorder(rec.client, 'node-a', log, () => new Date('2026-11-25T10:00:00Z'));
    await events.record({
      tunnel,
      type: 'Warning',
      reason: 'UnderlayInterfaceNotFound',
      message: 'node node-a: interface eth9 does not exist',
    });
    const e = rec.created[0]!;
    assert.equal(e.metadata.namespace, EVENT_NAMESPACE);
    assert.deepEqual(e.involvedObject, {
      apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
      kind: 'IpipTunnel',
      name: 'lab',
      uid: 'uid-1',
    });
    assert.equal(e.type, 'Warning');
    assert.equal(e.reason, 'UnderlayInterfaceNotFound');
    assert.deepEqual(e.source, { component: 'ipip-operator', host: 'node-a' });
    assert.equal(e.count, 1);
  });

  test('the same event again raises the count of the first; a different message is a new event', async () => {
    const rec = recordingClient();
    const events = new EventRecorder(rec.client, 'node-a', log);
    const e = {
      tunnel,
      type: 'Normal' as const,
      reason: 'DriftCorrected',
      message: 'node node-a: create route 172.0.0.0/24',
    };
    await events.record(e);
    await events.record(e);
    await events.record(e);
    await events.record({ ...e, message: 'node node-a: update link ipiptun up' });
    assert.equal(rec.created.length, 2);
    assert.deepEqual(rec.patched, [
      { name: rec.created[0]!.metadata.name, count: 2 },
      { name: rec.created[0]!.metadata.name, count: 3 },
    ]);
  });

  test('a repeat after the series window, or of an Event that is gone, starts a new Event', async () => {
    const rec = recordingClient();
    let now = new Date('2026-11-25T10:00:00Z');
    const events = new EventRecorder(rec.client, 'node-a', log, () => now);
    const e = { tunnel, type: 'Normal' as const, reason: 'Programmed', message: 'x' };
    await events.record(e);
    now = new Date('2026-11-25T10:11:00Z');
    await events.record(e);
    assert.equal(rec.created.length, 2, 'eleven minutes later');
    rec.failNextPatch(new ApiError(404, 'not found'));
    await events.record(e);
    assert.equal(rec.created.length, 3, 'the Event had expired on the server');
  });

  test('a failed write is logged, not thrown: Events never fail a reconcile', async () => {
    const events = new EventRecorder(
      {
        createEvent: async () => {
          throw new ApiError(403, 'forbidden');
        },
        patchEventSeries: async () => {},
      },
      'node-a',
      log,
    );
    await events.record({ tunnel, type: 'Normal', reason: 'Programmed', message: 'x' });
  });
});
