// Runs inside the UML guest, in host-a's namespace: the real dataplane (one `ip -batch` to
// read, one to write) with N tunnels. Prints one JSON line of timings.

import { nodeDataplane } from '../src/dataplane/node.ts';
import { plan } from '../src/plan/engine.ts';
import { resolve } from '../src/resolve/resolve.ts';
import { manyTunnels } from './tunnels.ts';

const n = Number(process.argv[2]);
const tunnels = manyTunnels(n);
let ipProcesses = 0;
const dp = nodeDataplane({
  onCommand: () => {
    ipProcesses += 1;
  },
});
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

async function reconcileTimed() {
  const t0 = process.hrtime.bigint();
  const observed = await dp.observe();
  const t1 = process.hrtime.bigint();
  const { actions } = plan(
    resolve({ nodeName: 'node-a', tunnels, kernel: observed, nodeAddresses: new Map() }),
    observed,
  );
  const t2 = process.hrtime.bigint();
  const results = await dp.apply(actions);
  const failed = results.filter((r) => r.error !== undefined);
  if (failed.length > 0) throw new Error(`apply failed: ${failed[0]!.error}`);
  return {
    observeMs: Number(t1 - t0) / 1e6,
    planMs: Number(t2 - t1) / 1e6,
    applyMs: ms(t2),
    actions: actions.length,
    commands: actions.reduce((s, a) => s + (a.tool === 'ip' ? a.ops.length : 1), 0),
  };
}

ipProcesses = 0;
const create = { ...(await reconcileTimed()), ipProcesses };
ipProcesses = 0;
const noop = { ...(await reconcileTimed()), ipProcesses };
const remove = await (async () => {
  const t0 = process.hrtime.bigint();
  const observed = await dp.observe();
  const { actions } = plan(
    resolve({ nodeName: 'node-a', tunnels: [], kernel: observed, nodeAddresses: new Map() }),
    observed,
  );
  await dp.apply(actions);
  return { totalMs: ms(t0), actions: actions.length };
})();
process.stdout.write(
  `${JSON.stringify({ n, create, noop, remove, rssMB: Math.round(process.memoryUsage().rss / 1e6) })}\n`,
);
