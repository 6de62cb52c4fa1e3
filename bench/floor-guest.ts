// Runs inside a UML guest, in host-a's namespace (bench/floor.ts starts it): the agent's
// paths against the kernel's own floor, both measured here, in the same guest and run.
// - converge from empty: the agent's pass (manifest read, observe, resolve, plan, apply)
//   against one `ip -force -batch` (and one `nft -f` when the tunnels have rules) of the
//   same end state;
// - no-op: a pass on a programmed kernel against one read of the kernel (the observe's
//   `ip` read, and the `nft` list when the table exists, in parallel as the agent runs them);
// - in a running agent loop: a link set down, a route deleted, the table flushed (mesh), and
//   one tunnel's ttl changed in the manifest, each against one read plus the one write
//   that repairs it; and, at the largest size, an idle minute.
// Prints one JSON line. Timings are wall-clock in this process; the floor's processes are
// started the way the agent's are (execa, argument arrays), so spawn costs are alike.

import { rename, writeFile } from 'node:fs/promises';
import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import { execa } from 'execa';
import { stringify } from 'yaml';
import type { IpipTunnel } from '../src/api/types.ts';
import { DEBOUNCE_MS, NO_SINK, runAgentLoop } from '../src/controller/loop.ts';
import type { AgentLoop } from '../src/controller/loop.ts';
import { reconcile } from '../src/controller/reconcile.ts';
import { manifestSource } from '../src/controller/standalone.ts';
import type { Dataplane, ObserveHint } from '../src/dataplane/dataplane.ts';
import { IP_READ_ARGS, IP_READ_COMMANDS } from '../src/dataplane/ip/driver.ts';
import { ipLines } from '../src/dataplane/ip/render.ts';
import { nodeDataplane } from '../src/dataplane/node.ts';
import { nftScript } from '../src/dataplane/nft/render.ts';
import type { Action, ActionResult } from '../src/model/action.ts';
import type { KernelEvent, KernelInterest, KernelState } from '../src/model/kernel.ts';
import { NFT_FAMILY, NFT_TABLE } from '../src/model/ownership.ts';
import { plan } from '../src/plan/engine.ts';
import { createLogger } from '../src/report/log.ts';
import { AgentMetrics } from '../src/report/metrics.ts';
import { resolve } from '../src/resolve/resolve.ts';
import { manyTunnels, meshTunnels } from './tunnels.ts';

const [scenario, countArg, idleArg] = process.argv.slice(2);
const n = Number(countArg);
const idleMs = Number(idleArg ?? '0');
const NODE = 'node-a';
const DIR = '/run/lab';
const manifest = `${DIR}/bench-tunnels.yaml`;

const tunnels: IpipTunnel[] = scenario === 'mesh' ? meshTunnels(n) : manyTunnels(n);
const rounds = n >= 1000 ? 3 : 5;

// The agent's logs at its default level (info), formatted as the CLI does (JSON, the
// CLI's own logger) and written to a sink: their cost counts, a terminal's does not.
const log = createLogger({ format: 'json', level: 'info', sink: () => {} });

const ms = (t0: bigint, t1 = process.hrtime.bigint()) => Number(t1 - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function manifestText(list: readonly IpipTunnel[]): string {
  return list.map((t) => stringify(t)).join('---\n');
}

/** Processes started by the agent's drivers, by tool and purpose ("ip observe": 1). */
const processes = new Map<string, number>();
const kernel = nodeDataplane({
  onCommand: (tool, purpose) => {
    if (purpose === 'monitor') return;
    const key = `${tool} ${purpose}`;
    processes.set(key, (processes.get(key) ?? 0) + 1);
  },
});
const counted = () => Object.fromEntries([...processes].sort());

/** The agent's dataplane with every pass's reads and writes seen (for the loop rows). */
class Seen implements Dataplane {
  observes = 0;
  applies: { at: bigint; actions: readonly Action[] }[] = [];
  /** When things happened, for the repairs' breakdown: each event that concerned the agent, each read and write. */
  readonly times = { events: [] as bigint[], observeStart: 0n, observeEnd: 0n, applyStart: 0n, applyEnd: 0n };
  private waiters: { test: (a: readonly Action[]) => boolean; done: (at: bigint) => void }[] = [];
  private readonly inner: Dataplane;
  constructor(inner: Dataplane) {
    this.inner = inner;
  }
  async observe(hint?: ObserveHint): Promise<KernelState> {
    this.observes += 1;
    this.times.observeStart = process.hrtime.bigint();
    const state = await this.inner.observe(hint);
    this.times.observeEnd = process.hrtime.bigint();
    return state;
  }
  async apply(actions: readonly Action[]): Promise<ActionResult[]> {
    if (actions.length > 0) this.times.applyStart = process.hrtime.bigint();
    const results = await this.inner.apply(actions);
    if (actions.length > 0) {
      const at = process.hrtime.bigint();
      this.times.applyEnd = at;
      this.applies.push({ at, actions });
      this.waiters = this.waiters.filter((w) => {
        if (!w.test(actions)) return true;
        w.done(at);
        return false;
      });
    }
    return results;
  }
  watch(onEvent: (event: KernelEvent) => void, interest: () => KernelInterest): () => void {
    return this.inner.watch((event) => {
      if (event.concernsUs) this.times.events.push(process.hrtime.bigint());
      onEvent(event);
    }, interest);
  }
  /** Resolves with the time the first write after now that `test` accepts came back. */
  nextApply(test: (a: readonly Action[]) => boolean, what: string, timeoutMs = 60_000): Promise<bigint> {
    return new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no write for ${what} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        test,
        done: (at) => {
          clearTimeout(timer);
          done(at);
        },
      });
    });
  }
}

async function sh(args: string[]): Promise<void> {
  const [file, ...rest] = args;
  await execa(file!, rest, { stdin: 'ignore' });
}

/** What the agent would do now against the kernel as it is, for `list` (computed outside any timing). */
async function planFor(list: readonly IpipTunnel[]): Promise<Action[]> {
  const observed = await kernel.observe();
  return plan(resolve({ nodeName: NODE, tunnels: list, kernel: observed, nodeAddresses: new Map() }), observed).actions;
}

/** The floor's write: the actions as one `ip -force -batch FILE` and one `nft -f FILE`, the commands the agent renders. */
async function floorWrite(actions: readonly Action[]): Promise<number> {
  const ipText = actions.flatMap((a) => (a.tool === 'ip' ? ipLines(a) : []));
  const nft = actions.find((a) => a.tool === 'nft');
  await writeFile(`${DIR}/floor.ip`, `${ipText.join('\n')}\n`);
  if (nft !== undefined) await writeFile(`${DIR}/floor.nft`, `${nftScript(nft.table).join('\n')}\n`);
  const t0 = process.hrtime.bigint();
  // nft first, as the agent orders it (a mesh's filter before its link).
  if (nft !== undefined) await execa('nft', ['-f', `${DIR}/floor.nft`], { stdin: 'ignore' });
  if (ipText.length > 0) await execa('ip', ['-force', '-batch', `${DIR}/floor.ip`], { stdin: 'ignore' });
  return ms(t0);
}

/** The floor's read: the observe's `ip` read, and the table's list when there is one, in parallel. */
async function floorRead(withTable: boolean): Promise<number> {
  const t0 = process.hrtime.bigint();
  await Promise.all([
    execa('ip', IP_READ_ARGS, { input: `${IP_READ_COMMANDS.join('\n')}\n` }),
    withTable ? execa('nft', ['-j', '-p', 'list', 'table', NFT_FAMILY, NFT_TABLE], { stdin: 'ignore' }) : undefined,
  ]);
  return ms(t0);
}

async function mustBeNoop(list: readonly IpipTunnel[], after: string): Promise<void> {
  const left = await planFor(list);
  if (left.length > 0) throw new Error(`after ${after}, the agent still plans ${left.length} actions`);
}

const hasRules = (list: readonly IpipTunnel[]) =>
  list.some((t) => t.spec.endpoints.length > 2 && t.spec.dropForeignIpip !== false);

async function removeAll(): Promise<void> {
  const actions = await planFor([]);
  await floorWrite(actions);
  await mustBeNoop([], 'removing everything');
}

// --- converge from empty and no-op ---------------------------------------------------

await writeFile(manifest, manifestText(tunnels));
const source = manifestSource(manifest, log);
const agentPass = async (dataplane: Dataplane = kernel) => {
  const input = await source.current();
  if (input === undefined) throw new Error('the manifest did not load');
  const outcome = await reconcile(dataplane, { nodeName: NODE, ...input }, log);
  const failed = outcome.results.find((r) => r.error !== undefined);
  if (failed !== undefined) throw new Error(`apply failed: ${failed.error}`);
  if (outcome.problems.length > 0) throw new Error(`problems: ${JSON.stringify(outcome.problems[0])}`);
  return outcome;
};

// The nft probe (once per process) and the first read of the manifest are start-up, reported apart.
await agentPass();
await removeAll();

const converge = { floor: [] as number[], agent: [] as number[], processes: {} as Record<string, number> };
/** Where a converge pass's time goes: the manifest, the read, resolve + plan, the write, the logs after it. */
const convergePhases: Record<string, number[]> = { manifest: [], read: [], 'resolve+plan': [], write: [], logs: [] };
const convergeSeen = new Seen(kernel);
const noop = { floor: [] as number[], agent: [] as number[], processes: {} as Record<string, number>, writes: 0 };
/** Where a no-op pass's time goes: the manifest, the read, resolve + plan and the rest. */
const noopPhases: Record<string, number[]> = { manifest: [], read: [], 'resolve+plan': [] };
let commands = 0;
for (let round = 0; round < rounds; round++) {
  const actions = await planFor(tunnels);
  commands = actions.reduce((sum, a) => sum + (a.tool === 'ip' ? a.ops.length : 1), 0);
  converge.floor.push(await floorWrite(actions));
  await mustBeNoop(tunnels, 'the floor write');
  noop.floor.push(await floorRead(hasRules(tunnels)));
  await removeAll();

  processes.clear();
  let t0 = process.hrtime.bigint();
  await agentPass(convergeSeen);
  const t1 = process.hrtime.bigint();
  converge.agent.push(ms(t0, t1));
  const at = convergeSeen.times;
  convergePhases.manifest!.push(ms(t0, at.observeStart));
  convergePhases.read!.push(ms(at.observeStart, at.observeEnd));
  convergePhases['resolve+plan']!.push(ms(at.observeEnd, at.applyStart));
  convergePhases.write!.push(ms(at.applyStart, at.applyEnd));
  convergePhases.logs!.push(ms(at.applyEnd, t1));
  converge.processes = counted();
  await mustBeNoop(tunnels, "the agent's pass");

  processes.clear();
  t0 = process.hrtime.bigint();
  const outcome = await agentPass(convergeSeen);
  const t2 = process.hrtime.bigint();
  noop.agent.push(ms(t0, t2));
  noopPhases.manifest!.push(ms(t0, at.observeStart));
  noopPhases.read!.push(ms(at.observeStart, at.observeEnd));
  noopPhases['resolve+plan']!.push(ms(at.observeEnd, t2));
  noop.processes = counted();
  noop.writes += outcome.results.length;
  await removeAll();
}

// --- a running agent: repairs, one edit, idle -----------------------------------------

const middle = Math.floor(tunnels.length / 2);
const target = tunnels[middle]!;
const link = target.spec.linkName!;
const byLink = (actions: readonly Action[]) => actions.some((a) => a.link === link);

interface Change {
  name: string;
  /** Makes the change by hand (or to the manifest). */
  make: () => Promise<void>;
  /** Puts it back by hand, for the floor's next step. */
  undo?: () => Promise<void>;
  /** The tunnels the agent should then hold (the manifest's). */
  wanted: readonly IpipTunnel[];
  fixedBy: (actions: readonly Action[]) => boolean;
  /** Whether the floor needs the table's list too. */
  table: boolean;
}

const edited = tunnels.map((t, i) => (i === middle ? { ...t, spec: { ...t.spec, ttl: 32 } } : t));
const changes: Change[] = [
  {
    name: 'link set down',
    make: () => sh(['ip', 'link', 'set', 'dev', link, 'down']),
    wanted: tunnels,
    fixedBy: byLink,
    table: hasRules(tunnels),
  },
  ...(scenario === 'mesh'
    ? [
        {
          name: 'peer route deleted',
          make: () => sh(['ip', 'route', 'del', meshPeerOverlay(target), 'dev', link]),
          wanted: tunnels,
          fixedBy: byLink,
          table: true,
        },
        {
          name: 'table flushed',
          make: () => sh(['nft', 'flush', 'table', NFT_FAMILY, NFT_TABLE]),
          wanted: tunnels,
          fixedBy: (actions: readonly Action[]) => actions.some((a) => a.tool === 'nft'),
          table: true,
        },
      ]
    : [
        {
          name: 'route deleted',
          make: () => sh(['ip', 'route', 'del', target.spec.routes![0]!]),
          wanted: tunnels,
          fixedBy: byLink,
          table: false,
        },
      ]),
  {
    name: 'one ttl edited',
    make: () => replaceManifest(edited),
    undo: () => replaceManifest(tunnels),
    wanted: edited,
    fixedBy: byLink,
    table: hasRules(tunnels),
  },
];

/** The manifest replaced as editors and config tools do it: a new file renamed over the old, so a read sees one or the other. */
async function replaceManifest(list: readonly IpipTunnel[]): Promise<void> {
  await writeFile(`${manifest}.new`, manifestText(list));
  await rename(`${manifest}.new`, manifest);
}

function meshPeerOverlay(t: IpipTunnel): string {
  return `${t.spec.endpoints[1]!.overlayAddress}/32`;
}

// Each round: the floor by hand with no agent running (the change, then one read and the
// agent's own repair written as one batch), then the same change under a running agent;
// alternated, so that both sides of a ratio meet the same load of this shared machine.
await floorWrite(await planFor(tunnels));
const loopMetrics = new AgentMetrics();
const seen = new Seen(kernel);
async function startLoop(): Promise<AgentLoop> {
  const before = seen.observes;
  const started = runAgentLoop({
    nodeName: NODE,
    dataplane: seen,
    source: manifestSource(manifest, log),
    sink: NO_SINK,
    log,
    metrics: loopMetrics,
    resyncMs: 60_000,
    debounceMs: DEBOUNCE_MS,
  });
  // Its first pass (a no-op: the kernel is programmed), waited for by its read.
  while (seen.observes === before || started.ready() !== true) await new Promise((r) => setImmediate(r));
  return started;
}
const repairs: Record<
  string,
  { floor: number; agent: number; passes: number; writes: number; breakdown: Record<string, number> }
> = {};
// How long after a repair a second pass could still come (the agent's own writes'
// events, debounced): the window in which passes are counted.
const SETTLE_MS = 2000;
for (const c of changes) {
  const floorSamples: number[] = [];
  const samples: number[] = [];
  const phases: Record<string, number[]> = { event: [], read: [], reading: [], planning: [], writing: [] };
  let passes = 0;
  let writes = 0;
  for (let round = 0; round < rounds; round++) {
    await c.make();
    const repair = await planFor(c.wanted);
    const read = await floorRead(c.table);
    floorSamples.push(read + (await floorWrite(repair)));
    await mustBeNoop(c.wanted, `the floor of "${c.name}"`);
    if (c.undo !== undefined) {
      await c.undo();
      await floorWrite(await planFor(tunnels));
    }

    const loop = await startLoop();
    const observesBefore = seen.observes;
    const appliesBefore = seen.applies.length;
    const fixed = seen.nextApply(c.fixedBy, c.name);
    const tMake = process.hrtime.bigint();
    await c.make();
    const t0 = process.hrtime.bigint();
    const t5 = await fixed;
    samples.push(ms(t0, t5));
    // From the change: its first event that concerned the agent, the read's start (the debounce and the
    // pass's start), the read, resolve and plan, the write.
    const { events, observeStart, observeEnd, applyStart } = seen.times;
    // The change's first event may come before `ip` has exited: looked for from the start of the change,
    // and only before the read (an edit of the manifest has no kernel event: the source wakes the pass,
    // and the first event after it is the echo of the agent's own write).
    const t1 = events.find((t) => t >= tMake && t <= observeStart) ?? t0;
    phases.event!.push(ms(t0, t1));
    phases.read!.push(ms(t1, observeStart));
    phases.reading!.push(ms(observeStart, observeEnd));
    phases.planning!.push(ms(observeEnd, applyStart));
    phases.writing!.push(ms(applyStart, t5));
    events.length = 0;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    passes = Math.max(passes, seen.observes - observesBefore);
    writes = Math.max(writes, seen.applies.length - appliesBefore);
    if (c.undo !== undefined) {
      const back = seen.nextApply(c.fixedBy, `${c.name}, undone`);
      await c.undo();
      await back;
      await new Promise((r) => setTimeout(r, SETTLE_MS));
    }
    await loop.stop();
    await mustBeNoop(c.wanted === edited ? tunnels : c.wanted, `the agent's repair of "${c.name}", round ${round + 1}`);
  }
  repairs[c.name] = {
    floor: median(floorSamples),
    agent: median(samples),
    passes,
    writes,
    breakdown: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, Math.round(median(v))])),
  };
}

/** With FLOOR_PROFILE=1: where the idle window's CPU went, the top functions by self time (ms). */
let idleProfile: string[] | undefined;

function topFunctions(profile: Profiler.Profile): string[] {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  const deltas = profile.timeDeltas ?? [];
  (profile.samples ?? []).forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const key = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + (deltas[i] ?? 0) / 1000);
  });
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 20)
    .map(([k, v]) => `${v.toFixed(1)} ${k}`);
}

let idle: { ms: number; passes: number; writes: number; cpuMs: number; resyncCpuMs: number } | undefined;
if (idleMs > 0) {
  // A fresh loop with the default resync (60 s): its first pass (a no-op: the kernel is
  // programmed) is one resync's work, measured as the CPU of its first PASS_MS; the next
  // idleMs then hold exactly one resync and whatever else the agent does while idle.
  const PASS_MS = 5000;
  const idleSeen = new Seen(kernel);
  const c0 = process.cpuUsage();
  const idleLoop = runAgentLoop({
    nodeName: NODE,
    dataplane: idleSeen,
    source: manifestSource(manifest, log),
    sink: NO_SINK,
    log,
    resyncMs: 60_000,
    debounceMs: DEBOUNCE_MS,
  });
  await new Promise((r) => setTimeout(r, PASS_MS));
  const first = process.cpuUsage(c0);
  const [observesBefore, appliesBefore] = [idleSeen.observes, idleSeen.applies.length];
  const profiler = process.env.FLOOR_PROFILE === '1' ? new Session() : undefined;
  if (profiler !== undefined) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  const c1 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, idleMs));
  const window = process.cpuUsage(c1);
  if (profiler !== undefined) {
    const { profile } = await profiler.post('Profiler.stop');
    idleProfile = topFunctions(profile);
    profiler.disconnect();
  }
  await idleLoop.stop();
  idle = {
    ms: idleMs,
    passes: idleSeen.observes - observesBefore,
    writes: idleSeen.applies.length - appliesBefore,
    cpuMs: (window.user + window.system) / 1000,
    resyncCpuMs: (first.user + first.system) / 1000,
  };
}
await removeAll();

process.stdout.write(
  `${JSON.stringify({
    scenario,
    n,
    rounds,
    commands,
    converge: {
      floor: median(converge.floor),
      agent: median(converge.agent),
      processes: converge.processes,
      breakdown: Object.fromEntries(Object.entries(convergePhases).map(([k, v]) => [k, Math.round(median(v))])),
    },
    noop: {
      floor: median(noop.floor),
      agent: median(noop.agent),
      processes: noop.processes,
      writes: noop.writes,
      breakdown: Object.fromEntries(Object.entries(noopPhases).map(([k, v]) => [k, Math.round(median(v))])),
    },
    repairs,
    idle,
    rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    ...(idleProfile === undefined ? {} : { idleProfile }),
    // The running loop's own account of its wake-ups (all the rows above in one loop).
    loop: (await loopMetrics.metrics())
      .split('\n')
      .filter((l) => /^ipip_operator_(kernel_event_checks_total|kernel_events_total|reconcile_total)\{/.test(l))
      .map((l) => l.replace('ipip_operator_', '')),
  })}\n`,
);
process.exit(0);
