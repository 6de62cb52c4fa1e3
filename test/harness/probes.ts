// What tests read from a node, the way a user would look: its links, routes and ping with
// ip and ping, IPIP packets on its underlay with tcpdump, and its agent's /readyz and
// /metrics with curl. A node is a Shell: a cluster lab's guest, or a host namespace of the
// two-host lab (two-hosts.ts).

import { eventually, GiveUp } from './support.ts';
import { shOk } from './uml.ts';
import type { CommandResult, Shell } from './uml.ts';

/** The agents' HTTP port: /metrics, /healthz and /readyz. */
export const AGENT_METRICS_PORT = 9477;

/** `ip -j -s -d link show dev NAME` (details and counters), or undefined when there is no such link. */
export async function link(node: Shell, name: string): Promise<Record<string, any> | undefined> {
  const r = await node.sh(`ip -j -s -d link show dev ${name}`);
  return r.code === 0 ? (JSON.parse(r.stdout) as Array<Record<string, any>>)[0] : undefined;
}

/** Whether `count` pings (0.2 s apart, 2 s to answer each) are answered. */
export async function ping(from: Shell, to: string, count = 1): Promise<boolean> {
  return (await from.sh(`ping -c ${count} -i 0.2 -W 2 ${to}`)).code === 0;
}

/** `ip route show SELECTOR` as text. */
export async function routes(node: Shell, selector = ''): Promise<string> {
  return shOk(node, `ip route show ${selector}`);
}

/** The prefixes routed into a link, sorted; not the kernel's own route to a peer address. */
export async function routesVia(node: Shell, dev: string): Promise<string[]> {
  return (JSON.parse(await shOk(node, 'ip -j route show')) as Array<{ dst: string; dev: string; protocol?: string }>)
    .filter((x) => x.dev === dev && x.protocol !== 'kernel')
    .map((x) => x.dst)
    .sort();
}

let captures = 0;

/**
 * Starts `tcpdump -n -v -c 2 -i IFACE ip proto 4` (IPIP packets) on a node and resolves
 * once it is listening; `done` ends after 2 packets or 10 s with what it printed. -v prints
 * the outer header: tcpdump 4.99 says "proto IPIP (4)" (older versions "ipip-proto-4").
 * The running capture is wrapped in an object: an async function returning the bare
 * promise would resolve only when the capture ends.
 */
export async function startIpipCapture(node: Shell, iface = 'eth1'): Promise<{ done: Promise<CommandResult> }> {
  captures += 1;
  const out = `/run/lab/capture-${process.pid}-${captures}.out`;
  await shOk(node, `mkdir -p /run/lab && rm -f ${out}`);
  let ended: CommandResult | undefined;
  const done = node
    .sh(`timeout 10 tcpdump -l -n -v -c 2 -i ${iface} ip proto 4 > ${out} 2>&1; cat ${out}`, 30_000)
    .then((r) => {
      ended = r;
      return r;
    });
  await eventually(
    `tcpdump listening on ${iface}`,
    async () => {
      if (ended !== undefined)
        throw new GiveUp(new Error(`tcpdump ended before it listened: ${ended.stdout}${ended.stderr}`));
      return (await node.sh(`grep -q "listening on" ${out}`)).code === 0;
    },
    {
      timeoutMs: 15_000,
      intervalMs: 200,
      context: async () => `tcpdump so far: ${(await node.sh(`cat ${out}`)).stdout}`,
    },
  );
  return { done };
}

/** The agent's GET /readyz on the node (127.0.0.1:9477) answers 200. */
export async function agentReady(node: Shell): Promise<boolean> {
  const r = await node.sh(
    `curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:${AGENT_METRICS_PORT}/readyz`,
  );
  return r.stdout.trim() === '200';
}

/** The agent's /metrics on the node (127.0.0.1:9477), or an error. */
export async function agentMetrics(node: Shell): Promise<string> {
  return shOk(node, `curl -sS --fail-with-body --max-time 10 http://127.0.0.1:${AGENT_METRICS_PORT}/metrics`);
}

export interface Sample {
  line: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of metric `name` in a Prometheus text exposition that carry all of `labels`. */
export function samples(exposition: string, name: string, labels: Record<string, string> = {}): Sample[] {
  const found: Sample[] = [];
  for (const line of exposition.split('\n')) {
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const own = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]),
    );
    if (Object.entries(labels).every(([k, v]) => own[k] === v)) found.push({ line, labels: own, value: Number(m[3]) });
  }
  return found;
}

/** The sum of those samples; 0 when there are none. */
export function metricSum(exposition: string, name: string, labels: Record<string, string> = {}): number {
  return samples(exposition, name, labels).reduce((sum, s) => sum + s.value, 0);
}

/** The one sample of a series; an error when the exposition has none. */
export function metricValue(exposition: string, name: string, labels: Record<string, string> = {}): number {
  const [first] = samples(exposition, name, labels);
  if (first === undefined) throw new Error(`no ${name}${JSON.stringify(labels)} in the exposition`);
  return first.value;
}
