// drift_corrections_total counts repairs of what changed under the agent, not spec changes
// and not what a fresh agent adopts. Driven through the real reconcile pass with a
// recording dataplane over the kernel model (the real kernel: test/kernel, test/cluster).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IpipTunnel } from '../../src/api/types.ts';
import { DriftTracker, reconcile } from '../../src/controller/reconcile.ts';
import { createLogger } from '../../src/report/log.ts';
import { RecordingDataplane } from '../harness/recording-dataplane.ts';
import { bareKernel, exampleTunnel } from './builders.ts';

const log = createLogger({ format: 'json', level: 'error' });

async function pass(dp: RecordingDataplane, drift: DriftTracker, tunnels: IpipTunnel[]) {
  const outcome = await reconcile(dp, { nodeName: 'node-a', tunnels, nodeAddresses: new Map() }, log);
  return { changes: outcome.results.length, drift: Object.fromEntries(drift.update(outcome)) };
}

describe('DriftTracker', () => {
  test('creating, a no-op pass and a spec change are not drift; repairing a deleted route is', async () => {
    const dp = new RecordingDataplane(bareKernel());
    const drift = new DriftTracker();
    const tunnel = exampleTunnel();
    assert.deepEqual(
      await pass(dp, drift, [tunnel]),
      { changes: 3, drift: {} },
      'first programming: link, address, route',
    );
    assert.deepEqual(await pass(dp, drift, [tunnel]), { changes: 0, drift: {} });

    dp.state.routes = dp.state.routes.filter((r) => r.dst !== '172.0.0.0/24'); // `ip route del` by hand
    assert.deepEqual(await pass(dp, drift, [tunnel]), { changes: 1, drift: { lab: 1 } });

    const newTtl = exampleTunnel((t) => {
      t.spec.ttl = 32;
    });
    assert.deepEqual(await pass(dp, drift, [newTtl]), { changes: 1, drift: {} }, 'a spec change is not drift');
  });

  test('a fresh tracker (a restarted agent) does not count what it finds to fix at start', async () => {
    const dp = new RecordingDataplane(bareKernel());
    await pass(dp, new DriftTracker(), [exampleTunnel()]);
    dp.state.routes = dp.state.routes.filter((r) => r.dst !== '172.0.0.0/24');
    assert.deepEqual(await pass(dp, new DriftTracker(), [exampleTunnel()]), { changes: 1, drift: {} });
  });
});
