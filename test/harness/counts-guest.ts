// Runs inside a UML guest, in host-a's namespace (test/kernel/counts.test.ts starts it):
// the agent's loop with the real dataplane on 10 point-to-point tunnels from a manifest,
// counting the commands its drivers run (a write is a process, ip's read a request to its
// reader process), the lines written, and the reader processes there are, at each step.
// Prints one JSON line: { step: { "ip observe": n, "ip apply": n, ..., lines: [...], readers: [pid] } }.

import { rename, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { manyTunnels } from '../../bench/tunnels.ts';
import type { IpipTunnel } from '../../src/api/types.ts';
import { DEBOUNCE_MS, NO_SINK, runAgentLoop } from '../../src/controller/loop.ts';
import { manifestSource } from '../../src/controller/standalone.ts';
import type { Dataplane } from '../../src/dataplane/dataplane.ts';
import { nodeDataplane } from '../../src/dataplane/node.ts';
import { renderPlan } from '../../src/dataplane/render.ts';
import { createLogger } from '../../src/report/log.ts';
import { ipReaderPids } from './probes.ts';

const manifest = '/run/lab/counts.yaml';
const log = createLogger({ format: 'json', level: 'error', sink: () => {} });
const text = (list: readonly IpipTunnel[]) => list.map((t) => stringify(t)).join('---\n');

const processes = new Map<string, number>();
const lines: string[] = [];
const kernel = nodeDataplane({
  onCommand: (tool, purpose) => {
    if (purpose !== 'monitor') processes.set(`${tool} ${purpose}`, (processes.get(`${tool} ${purpose}`) ?? 0) + 1);
  },
});
let wrote: () => void = () => {};
const dataplane: Dataplane = {
  observe: (hint) => kernel.observe(hint),
  apply: async (actions) => {
    const results = await kernel.apply(actions);
    if (actions.length > 0) {
      lines.push(...renderPlan(actions));
      wrote();
    }
    return results;
  },
  watch: (onEvent, interest) => kernel.watch(onEvent, interest),
};

/** Waits for the loop's next write; then for every echo to be in and decided (a window as long as the source's debounce, five times). */
async function step(change: () => Promise<void>): Promise<Record<string, unknown>> {
  processes.clear();
  lines.length = 0;
  const written = new Promise<void>((done) => {
    wrote = done;
  });
  await change();
  await written;
  await new Promise((r) => setTimeout(r, DEBOUNCE_MS * 5));
  return { ...Object.fromEntries([...processes].sort()), lines: [...lines], readers: await ipReaderPids() };
}

const tunnels = manyTunnels(10);
await writeFile(manifest, text(tunnels));
const result: Record<string, unknown> = {};
let loop: ReturnType<typeof runAgentLoop> | undefined;
result.converge = await step(async () => {
  loop = runAgentLoop({
    nodeName: 'node-a',
    dataplane,
    source: manifestSource(manifest, log),
    sink: NO_SINK,
    log,
    resyncMs: 3_600_000,
    debounceMs: DEBOUNCE_MS,
  });
});
result.linkDown = await step(async () => {
  await execa('ip', ['link', 'set', 'dev', 'bench5', 'down']);
});
result.ttlEdited = await step(async () => {
  const edited = tunnels.map((t, i) => (i === 5 ? { ...t, spec: { ...t.spec, ttl: 32 } } : t));
  await writeFile(`${manifest}.new`, text(edited));
  await rename(`${manifest}.new`, manifest);
});
result.removed = await step(async () => {
  await writeFile(`${manifest}.new`, text([]));
  await rename(`${manifest}.new`, manifest);
});
await loop?.stop();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
