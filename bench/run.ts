// The benchmark suite, reported in bench/RESULTS.md:  npm run bench  (= node bench/run.ts)
//   node bench/run.ts [section ...]   sections: pure floor memory startup pods cluster mesh (default: all, in that order)
// - pure: the pure core (resolve + plan) on one node with N tunnels, no-op and from empty.
// - floor: the agent against the kernel's own floor on the lab kernel, one guest per size
//   (bench/floor.ts): converge, no-op, repairs, one edit, idle; floor, agent and ratio side by side.
// - memory: RSS, heap and start-up of the agent, standalone and in a cluster (bench/memory.ts).
// - startup: what loading the bundled agent costs in a lab guest, next to Node alone (bench/startup.ts).
// - pods: the agent as the chart runs it in the full lab's pods, 1,000 tunnels: its cgroup's
//   memory, RSS and start-up (bench/lab-pods.ts).
// - cluster: 1,000 IpipTunnels applied at once across the lab's nodes (bench/cluster-scale.ts).
// - mesh: a mesh of 50, 100 and 200 endpoints, bytes received per agent (bench/mesh.ts).
// UML timings are a guest kernel's, slower than bare metal: compare ratios measured in
// the same run, not absolute times across machines.

import { spawnSync } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import type { KernelState } from '../src/model/kernel.ts';
import { plan } from '../src/plan/engine.ts';
import { resolve } from '../src/resolve/resolve.ts';
import { applyModel } from '../test/harness/kernel-model.ts';
import { bareKernel } from '../test/unit/builders.ts';
import { FLOOR_HEADER, floorRows, measureFloor, SIZES } from './floor.ts';
import { manyTunnels } from './tunnels.ts';

const SECTIONS = ['pure', 'floor', 'memory', 'startup', 'pods', 'cluster', 'mesh'] as const;
type Section = (typeof SECTIONS)[number];

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

const say = (s = '') => process.stdout.write(`${s}\n`);

/** Another benchmark of the suite, as its own process (each boots what it needs and cleans up); its tables pass through. */
function script(file: string, args: string[]): void {
  const r = spawnSync(process.execPath, [file, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench: ${file} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
}

const asked = process.argv.slice(2);
for (const a of asked) {
  if (!(SECTIONS as readonly string[]).includes(a)) {
    process.stderr.write(`bench: unknown section "${a}"; sections: ${SECTIONS.join(' ')}\n`);
    process.exit(2);
  }
}
const sections: readonly Section[] = asked.length === 0 ? SECTIONS : (asked as Section[]);

say(
  `# ipip-operator benchmarks, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
    `${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB`,
);
for (const section of sections) {
  say();
  switch (section) {
    case 'pure': {
      say('## The pure core: resolve + plan for one node');
      say();
      say('| tunnels | resolve+plan from empty (ms, median of 30) | resolve+plan no-op (ms) | no-op actions |');
      say('|---:|---:|---:|---:|');
      for (const n of [1, 10, 100, 1000]) {
        const r = pure(n);
        say(`| ${n} | ${r.fromEmptyMs.toFixed(3)} | ${r.noopMs.toFixed(3)} | ${r.noopActions} |`);
      }
      break;
    }
    case 'floor': {
      say('## The agent against the kernel floor (lab kernel, a guest per size)');
      say();
      for (const line of FLOOR_HEADER) say(line);
      for (const size of SIZES) for (const row of floorRows(await measureFloor(size))) say(row);
      break;
    }
    case 'memory':
      say('## Memory and start-up');
      say();
      script('bench/memory.ts', []);
      break;
    case 'startup':
      say('## Loading the agent in a lab guest');
      say();
      script('bench/startup.ts', ['7']);
      break;
    case 'pods':
      say("## The agent in the lab's pods");
      say();
      script('bench/lab-pods.ts', ['1000']);
      break;
    case 'cluster':
      say('## 1,000 IpipTunnels in the cluster lab');
      say();
      script('bench/cluster-scale.ts', ['1000']);
      break;
    case 'mesh':
      say('## A mesh of N endpoints: what each agent receives');
      say();
      script('bench/mesh.ts', ['50', '100', '200']);
      break;
  }
}
