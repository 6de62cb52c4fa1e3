// What tests read from a node, the way a user would look: its links, routes and ping with
// ip and ping, IPIP packets on its underlay with tcpdump, and its agent's /readyz and
// /metrics with curl. A node is a Shell: a cluster lab's guest, or a host namespace of the
// two-host lab (two-hosts.ts).

import { execa } from 'execa';
import { IP_READ_ARGS } from '../../src/dataplane/ip/driver.ts';
import { eventually, GiveUp } from './support.ts';
import { shOk } from './uml.ts';
import type { CommandResult, Shell } from './uml.ts';

/** The whole command line of the ip driver's reader process, as a `pgrep -f` pattern. */
export const IP_READER_PATTERN = `^ip ${IP_READ_ARGS.join(' ')}$`;

/** The pids of the ip reader processes where this runs (in a guest script, beside the agent's driver). */
export async function ipReaderPids(): Promise<string[]> {
  const r = await execa('pgrep', ['-f', '--', IP_READER_PATTERN], { reject: false });
  return r.stdout.split('\n').filter((pid) => pid !== '');
}

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

/** What to capture: the interface, a tcpdump filter, how many packets end it and when it gives up. */
export interface CaptureOptions {
  iface: string;
  filter: string;
  /** tcpdump -c: the capture ends after this many packets (default 2). */
  count?: number;
  /** It ends after this many seconds at most (default 10). */
  seconds?: number;
  /** tcpdump -v: print the outer header too. */
  verbose?: boolean;
}

/**
 * Starts `tcpdump -n -c COUNT -i IFACE FILTER` on a node and resolves once it is
 * listening; `done` ends after COUNT packets or SECONDS with what it printed. The running
 * capture is wrapped in an object: an async function returning the bare promise would
 * resolve only when the capture ends.
 */
export async function startCapture(node: Shell, o: CaptureOptions): Promise<{ done: Promise<CommandResult> }> {
  captures += 1;
  const out = `/run/lab/capture-${process.pid}-${captures}.out`;
  await shOk(node, `mkdir -p /run/lab && rm -f ${out}`);
  let ended: CommandResult | undefined;
  const flags = `-l -n${o.verbose === true ? ' -v' : ''} -c ${o.count ?? 2} -i ${o.iface}`;
  const seconds = o.seconds ?? 10;
  const done = node
    .sh(`timeout ${seconds} tcpdump ${flags} ${o.filter} > ${out} 2>&1; cat ${out}`, (seconds + 20) * 1000)
    .then((r) => {
      ended = r;
      return r;
    });
  await eventually(
    `tcpdump listening on ${o.iface}`,
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

/**
 * Captures 2 IPIP packets (`ip proto 4`) on a node's underlay, with -v, which prints the
 * outer header: tcpdump 4.99 says "proto IPIP (4)" (older versions "ipip-proto-4").
 */
export function startIpipCapture(node: Shell, iface = 'eth1'): Promise<{ done: Promise<CommandResult> }> {
  return startCapture(node, { iface, filter: 'ip proto 4', verbose: true });
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

/** A rule of an nftables table as `nft -j` reads it back: its chain, comment, expression as nft prints it, counter. */
export interface NftRule {
  chain: string;
  comment: string | undefined;
  /** The expression in nft's own words, counter values left out: `ip saddr != @peers-mesh counter drop`. */
  text: string;
  counter: { packets: number; bytes: number } | undefined;
}

/** An nftables table as `nft -j list table` reads it back. */
export interface NftTable {
  /** Each set's elements, sorted: an address, or a prefix as ADDRESS/LEN (a /32 as the bare address, as nft prints it). */
  sets: Record<string, string[]>;
  /** Each chain as "TYPE hook HOOK priority PRIO policy POLICY" (a base chain) or "regular". */
  chains: Record<string, string>;
  rules: NftRule[];
}

type NftJson = Record<string, any>;

/** A set element or a match's right side as nft prints it. */
function nftValue(v: unknown, quote: boolean): string {
  if (typeof v === 'string') return quote ? `"${v}"` : v;
  if (typeof v === 'number') return String(v);
  const o = v as NftJson;
  if (o?.prefix !== undefined) return o.prefix.len === 32 ? o.prefix.addr : `${o.prefix.addr}/${o.prefix.len}`;
  if (o?.range !== undefined) return `${o.range[0]}-${o.range[1]}`;
  if (o?.set !== undefined) return `{ ${(o.set as unknown[]).map((x) => nftValue(x, quote)).join(', ')} }`;
  return JSON.stringify(v);
}

/** One statement of a rule as nft prints it; what this reader does not know, as its JSON. */
function nftStatement(e: NftJson): string {
  if (e.counter !== undefined) return 'counter';
  for (const verdict of ['drop', 'accept', 'masquerade', 'return']) if (e[verdict] === null) return verdict;
  if (e.match !== undefined) {
    const { op, left, right } = e.match as { op: string; left: NftJson; right: unknown };
    let l: string;
    let r = nftValue(right, left.meta !== undefined && typeof right === 'string');
    if (left.payload !== undefined) {
      l = `${left.payload.protocol} ${left.payload.field}`;
      // nft names protocol 4 after /etc/protocols; the rule was written as 4.
      if (left.payload.field === 'protocol' && r === 'ipencap') r = '4';
    } else if (left.meta !== undefined) l = left.meta.key;
    else return JSON.stringify(e);
    return op === '==' ? `${l} ${r}` : `${l} ${op} ${r}`;
  }
  return JSON.stringify(e);
}

/** `nft -j list table FAMILY NAME` on a node, read back; undefined when there is no such table. */
export async function nftTable(node: Shell, family: string, name: string): Promise<NftTable | undefined> {
  const r = await node.sh(`nft -j list table ${family} ${name}`);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr)) return undefined;
    throw new Error(`nft -j list table ${family} ${name} exited ${r.code}: ${r.stderr}`);
  }
  const objects = (JSON.parse(r.stdout) as { nftables: NftJson[] }).nftables;
  const table: NftTable = { sets: {}, chains: {}, rules: [] };
  for (const o of objects) {
    if (o.set !== undefined)
      table.sets[o.set.name] = ((o.set.elem ?? []) as unknown[]).map((x) => nftValue(x, false)).sort();
    if (o.chain !== undefined) {
      const c = o.chain;
      table.chains[c.name] =
        c.hook === undefined ? 'regular' : `${c.type} hook ${c.hook} priority ${c.prio} policy ${c.policy}`;
    }
    if (o.rule !== undefined) {
      const expr = o.rule.expr as NftJson[];
      const counter = expr.find((e) => e.counter !== undefined)?.counter as NftRule['counter'];
      table.rules.push({
        chain: o.rule.chain,
        comment: o.rule.comment,
        text: expr.map(nftStatement).join(' '),
        counter,
      });
    }
  }
  return table;
}

/** The tables of a node, as "FAMILY NAME" (`nft -j list tables`), sorted. */
export async function nftTables(node: Shell): Promise<string[]> {
  const objects = (JSON.parse(await shOk(node, 'nft -j list tables')) as { nftables: NftJson[] }).nftables;
  return objects.flatMap((o) => (o.table === undefined ? [] : [`${o.table.family} ${o.table.name}`])).sort();
}
