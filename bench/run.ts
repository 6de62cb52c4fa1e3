// Benchmarks, reported in bench/RESULTS.md:  node bench/run.ts
// 1. The pure core (resolve + plan) on one node with N tunnels, no-op and from empty.
// 2. The real dataplane in a User-Mode Linux kernel with N tunnels: observe, plan and
//    apply times and the number of `ip` processes (create all, no-op, remove all).
// 3. The standalone agent's resident memory, idle, with the example tunnel.
// UML timings are a guest kernel's, slower than bare metal: compare runs, not machines.

import type { KernelState } from '../src/model/kernel.ts';
import { plan } from '../src/plan/engine.ts';
import { resolve } from '../src/resolve/resolve.ts';
import { applyModel } from '../test/harness/kernel-model.ts';
import { bareKernel } from '../test/unit/builders.ts';
import { Guest } from '../test/harness/uml.ts';
import { setUpTwoHosts, startBackgroundAgent } from '../test/harness/two-hosts.ts';
import { manyTunnels } from './tunnels.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function pure(n: number) {
  const tunnels = manyTunnels(n);
  const empty = bareKernel();
  const once = (k: KernelState) =>
    plan(resolve({ nodeName: 'node-a', tunnels, kernel: k, nodeAddresses: new Map() }), k);
  const programmed = applyModel(empty, once(empty).actions);
  const time = (k: KernelState) => {
    const samples: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = process.hrtime.bigint();
      once(k);
      samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    return median(samples);
  };
  return { n, fromEmptyMs: time(empty), noopMs: time(programmed), noopActions: once(programmed).actions.length };
}

const lines: string[] = [];
const say = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

say('| tunnels | resolve+plan from empty (ms, median of 30) | resolve+plan no-op (ms) | no-op actions |');
say('|---:|---:|---:|---:|');
for (const n of [1, 10, 100, 1000]) {
  const r = pure(n);
  say(`| ${n} | ${r.fromEmptyMs.toFixed(3)} | ${r.noopMs.toFixed(3)} | ${r.noopActions} |`);
}

const guest = await Guest.boot({ memMB: 1024 });
try {
  await setUpTwoHosts(guest);
  say('');
  say(
    '| tunnels | create: observe / plan / apply (ms) | commands in 1 batch | ip processes | no-op: ' +
      'observe / plan / apply (ms) | no-op ip processes | remove all (ms) |',
  );
  say('|---:|---|---:|---:|---|---:|---:|');
  for (const n of [1, 10, 100, 300]) {
    const out = await guest.ok(`ip netns exec host-a node bench/dataplane-guest.ts ${n}`, 300_000);
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as {
      create: Record<string, number>;
      noop: Record<string, number>;
      remove: Record<string, number>;
    };
    const f = (x: Record<string, number>) =>
      `${x.observeMs!.toFixed(1)} / ${x.planMs!.toFixed(1)} / ${x.applyMs!.toFixed(1)}`;
    say(
      `| ${n} | ${f(r.create)} | ${r.create.commands} | ${r.create.ipProcesses} | ${f(r.noop)} | ${r.noop.ipProcesses} | ${r.remove.totalMs!.toFixed(1)} |`,
    );
  }
  await guest.ok('cp examples/tunnel.yaml /run/lab/tunnel.yaml');
  await startBackgroundAgent(guest, 'node-a', '--manifest /run/lab/tunnel.yaml --log-level warn');
  // What is measured: the RSS 8 s after the start (not a wait for something to happen).
  await new Promise((r) => setTimeout(r, 8000));
  const rss = await guest.ok('ps -o rss= -p $(pgrep -f "src/cli/main.ts agent" | head -1)');
  say('');
  say(`Standalone agent (example tunnel, idle 8 s after start): RSS ${Math.round(Number(rss.trim()) / 1024)} MiB.`);
} finally {
  await guest.stop();
}
