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

  test('a repair that takes two passes, the first refused by the kernel, is still counted as drift', async () => {
    // As in the lab: a route deleted and the link set down by hand, the agent's read in between,
    // so its route is refused ("Device for nexthop is not up") and the next pass repairs both.
    const dp = new RecordingDataplane(bareKernel());
    const drift = new DriftTracker();
    const tunnel = exampleTunnel();
    await pass(dp, drift, [tunnel]);
    dp.state.routes = dp.state.routes.filter((r) => r.dst !== '172.0.0.0/24');
    dp.failWhen((a) => a.kind === 'route', 'Error: Device for nexthop is not up.', 1);
    assert.deepEqual(await pass(dp, drift, [tunnel]), { changes: 1, drift: {} }, 'refused: nothing changed');
    assert.deepEqual(await pass(dp, drift, [tunnel]), { changes: 1, drift: { lab: 1 } }, 'the repair');
  });

  test('a spec change while the tunnel fails is not drift once it succeeds', async () => {
    const dp = new RecordingDataplane(bareKernel());
    const drift = new DriftTracker();
    await pass(dp, drift, [exampleTunnel()]);
    const newTtl = exampleTunnel((t) => {
      t.spec.ttl = 32;
    });
    dp.failWhen((a) => a.kind === 'link', 'Error: refused.', 1);
    assert.deepEqual(await pass(dp, drift, [newTtl]), { changes: 1, drift: {} });
    assert.deepEqual(await pass(dp, drift, [newTtl]), { changes: 1, drift: {} }, 'the new spec, programmed at last');
  });
});
