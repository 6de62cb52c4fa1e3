// What route churn of others costs an agent, reported in bench/RESULTS.md:
//   node bench/route-churn.ts [BURSTS]
// The full lab (test/harness/full-lab.ts: the chart, an agent per node, the example tunnel
// Ready 2/2). On node-a, a BGP daemon's behaviour: BURSTS bursts of 100 host routes
// (protocol 186, via node-b on eth1) added, then withdrawn 0.5 s later. Reported from
// node-a's /metrics: reconciles (each one reads the whole routing table), observe
// processes and the agent's CPU time, against a quiet window of the same length. The
// lab's agents resync every 5 s, so a quiet window has reconciles too.

import { readFileSync } from 'node:fs';
import { startFullLab } from '../test/harness/full-lab.ts';
import { agentMetrics, metricSum } from '../test/harness/probes.ts';
import { EXAMPLE } from '../test/harness/repo.ts';
import { eventually } from '../test/harness/support.ts';

const bursts = Number(process.argv[2] ?? 20);
const lab = await startFullLab((line) => process.stderr.write(`${line}\n`));
try {
  await lab.kubectl(['apply', '-f', '-'], readFileSync(EXAMPLE, 'utf8'));
  await lab.cluster.waitTunnelReady('lab');
  const guest = lab.cluster.guest('node-a');
  const reading = async () => {
    const text = await agentMetrics(guest);
    return {
      at: Date.now(),
      reconciles: metricSum(text, 'ipip_operator_reconcile_total'),
      observes: metricSum(text, 'ipip_operator_ip_commands_total', { purpose: 'observe' }),
      cpu: metricSum(text, 'process_cpu_seconds_total'),
      ignored: metricSum(text, 'ipip_operator_kernel_events_total', { outcome: 'ignored' }),
    };
  };
  type Reading = Awaited<ReturnType<typeof reading>>;
  const row = (what: string, a: Reading, b: Reading) =>
    `| ${what} | ${((b.at - a.at) / 1000).toFixed(1)} | ${b.ignored - a.ignored} | ${b.reconciles - a.reconciles} ` +
    `| ${b.observes - a.observes} | ${(b.cpu - a.cpu).toFixed(2)} |`;

  const churnStart = await reading();
  for (let burst = 1; burst <= bursts; burst++) {
    const routes = (verb: string) =>
      `for i in $(seq 1 100); do echo "route ${verb} 10.250.${burst}.$i/32 via 192.168.40.3 dev eth1 proto 186"; done | ip -batch -`;
    await guest.ok(`${routes('add')}; sleep 0.5; ${routes('del')}`);
  }
  // The window ends once the monitor has seen every route event of the churn.
  const churnEnd = await eventually(
    `the monitor to see all ${bursts * 200} route events`,
    async () => {
      const r = await reading();
      return r.ignored - churnStart.ignored >= bursts * 200 ? r : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  const quietStart = await reading();
  await new Promise((done) => setTimeout(done, churnEnd.at - churnStart.at));
  const quietEnd = await reading();

  process.stdout.write(
    `| window on node-a | seconds | route events ignored | reconciles | observe processes | agent CPU (s) |\n|---|---:|---:|---:|---:|---:|\n`,
  );
  process.stdout.write(
    `${row('quiet', quietStart, quietEnd)}\n${row(`${bursts * 200} route events of others`, churnStart, churnEnd)}\n`,
  );
} finally {
  await lab.stop();
}
