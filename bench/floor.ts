// The agent against the kernel's own floor, on the project's lab kernel: one UML guest per
// size (bench/floor-guest.ts measures both sides in it, in one run), printed as one table
// with the floor, the agent and their ratio side by side, and the target of each row.
//   node bench/floor.ts              every size: 10, 100, 1000 point-to-point, a 1000-peer mesh
//   node bench/floor.ts p2p:100      one of them
//   FLOOR_NODE_FLAGS=--single-threaded-gc node bench/floor.ts ...   the guest's process with those flags
// Ratios are what to compare: absolute times in UML are several times a real kernel's.

import { Guest } from '../test/harness/uml.ts';
import { setUpTwoHosts } from '../test/harness/two-hosts.ts';
import { meshLocal, meshTunnels } from './tunnels.ts';

export interface FloorResult {
  scenario: 'p2p' | 'mesh';
  n: number;
  rounds: number;
  commands: number;
  converge: { floor: number; agent: number; processes: Record<string, number>; breakdown?: Record<string, number> };
  noop: {
    floor: number;
    agent: number;
    processes: Record<string, number>;
    writes: number;
    breakdown?: Record<string, number>;
  };
  repairs: Record<
    string,
    { floor: number; agent: number; passes: number; writes: number; breakdown: Record<string, number> }
  >;
  idle?: { ms: number; passes: number; writes: number; cpuMs: number; resyncCpuMs: number };
  rssMiB: number;
}

export const SIZES = ['p2p:10', 'p2p:100', 'p2p:1000', 'mesh:1000'] as const;

/** The targets of issue 14, as ratios to the floor. */
const TARGET = { converge: 1.2, noop: 1.5, repair: 1.5 };

/** One size in a guest of its own. The idle minute is measured at the largest point-to-point size. */
export async function measureFloor(size: string): Promise<FloorResult> {
  const [scenario, count] = size.split(':') as ['p2p' | 'mesh', string];
  const n = Number(count);
  const guest = await Guest.boot({ memMB: 1024 });
  try {
    await setUpTwoHosts(guest);
    if (scenario === 'mesh') {
      const meshes = meshTunnels(n).length;
      const adds = Array.from({ length: meshes }, (_, k) => `ip -n host-a addr add ${meshLocal(k)}/24 dev eth1`);
      await guest.ok(adds.join(' && '));
    }
    const idleMs = scenario === 'p2p' && n >= 1000 ? 60_000 : 0;
    // FLOOR_PROFILE=1: the guest profiles its idle minute and says where the CPU went.
    const env = process.env.FLOOR_PROFILE === '1' ? 'env FLOOR_PROFILE=1 ' : '';
    // FLOOR_NODE_FLAGS: V8/Node flags for the guest's process, both sides (e.g. --single-threaded-gc).
    const flags = (process.env.FLOOR_NODE_FLAGS ?? '')
      .split(/\s+/)
      .filter((f) => /^--[a-z0-9-]+(=[a-z0-9]+)?$/.test(f));
    const out = await guest.ok(
      `ip netns exec host-a ${env}node ${flags.map((f) => `${f} `).join('')}bench/floor-guest.ts ${scenario} ${n} ${idleMs}`,
      1_800_000,
    );
    return JSON.parse(out.trim().split('\n').at(-1)!) as FloorResult;
  } finally {
    await guest.stop();
  }
}

const f1 = (x: number) => x.toFixed(1);
const ratio = (agent: number, floor: number) => (agent / floor).toFixed(2);
const procs = (p: Record<string, number>) =>
  Object.entries(p)
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');

/** A row's breakdown, in ms: "; ms: read 12, write 30". */
const phases = (breakdown: Record<string, number> | undefined) =>
  breakdown === undefined
    ? ''
    : `; ms: ${Object.entries(breakdown)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`;

/** The table's rows for one size. */
export function floorRows(r: FloorResult): string[] {
  const what = r.scenario === 'mesh' ? `${r.n}-peer mesh` : `${r.n} p2p`;
  const rows = [
    `| ${what} | converge from empty (${r.commands} commands) | ${f1(r.converge.floor)} | ${f1(r.converge.agent)} | ` +
      `${ratio(r.converge.agent, r.converge.floor)} | ${TARGET.converge} | ${procs(r.converge.processes)}${phases(r.converge.breakdown)} |`,
    `| ${what} | no-op pass vs one read | ${f1(r.noop.floor)} | ${f1(r.noop.agent)} | ${ratio(r.noop.agent, r.noop.floor)} | ` +
      `${TARGET.noop} | ${procs(r.noop.processes)}; ${r.noop.writes} writes${phases(r.noop.breakdown)} |`,
  ];
  for (const [name, x] of Object.entries(r.repairs)) {
    rows.push(
      `| ${what} | ${name}: repaired vs read + write | ${f1(x.floor)} | ${f1(x.agent)} | ${ratio(x.agent, x.floor)} | ` +
        `${TARGET.repair} | ${x.passes} passes, ${x.writes} writes${phases(x.breakdown)} |`,
    );
  }
  if (r.idle !== undefined) {
    rows.push(
      `| ${what} | idle ${r.idle.ms / 1000} s (resync 60 s): agent CPU (ms) vs one no-op pass's | ` +
        `${f1(r.idle.resyncCpuMs)} | ${f1(r.idle.cpuMs)} | ${ratio(r.idle.cpuMs, r.idle.resyncCpuMs)} | 1.0 | ` +
        `${r.idle.passes} passes, ${r.idle.writes} writes |`,
    );
  }
  return rows;
}

export const FLOOR_HEADER = [
  '| size | path | floor (ms) | agent (ms) | agent / floor | target | counts |',
  '|---|---|---:|---:|---:|---:|---|',
];

if (import.meta.main) {
  const sizes = process.argv.length > 2 ? process.argv.slice(2) : [...SIZES];
  const rows: string[] = [];
  for (const size of sizes) {
    const r = await measureFloor(size);
    rows.push(...floorRows(r));
    process.stderr.write(`${JSON.stringify(r)}\n`);
  }
  process.stdout.write(`${[...FLOOR_HEADER, ...rows].join('\n')}\n`);
}
