// The lab CLI, behind ./scripts/lab.sh:
//
//   node test/harness/lab-cli.ts up [--exit-after-demo] [--nodes N]   the whole lab, the example tunnel, a tour
//   node test/harness/lab-cli.ts down                                  tears down a lab left running by `up`
//   node test/harness/lab-cli.ts sh NODE [COMMAND]                     a shell (one command per line) in a node
//
// `--nodes N` (2 to 8, default 2) boots node-a, node-b, node-c, ...: two nodes get
// examples/tunnel.yaml (point to point), three examples/mesh.yaml (a full mesh, the LAN
// 10.30.0.0/24 behind node-c), more the same mesh with the further nodes added to it.
//
// The nodes are User-Mode Linux processes, children of `up` that die with it, so `up`
// stays in the foreground after the tour: the lab runs until Ctrl-C or `down`. `up`
// writes its pid and paths to /run/ipip-operator-lab/state.json; `down` signals it, waits
// until its namespace and processes are gone, and also removes what a SIGKILLed `up` left.
// The nodes' consoles belong to `up`, so `sh` sends its commands to `up` over a unix
// socket next to the state file, and `up` runs them in the guest.

import { createServer, request } from 'node:http';
import type { Server } from 'node:http';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { IpipTunnel } from '../../src/api/types.ts';
import { BRIDGE_ADDRESS, listNamespaces, nodeAddress, removeNamespace, staleLabNamespaces } from './cluster-lab.ts';
import { allOf, MAX_LAB_NODES, MESH_LAN, RELEASE, startFullLab } from './full-lab.ts';
import type { FullLab } from './full-lab.ts';
import { AGENT_METRICS_PORT, startIpipCapture } from './probes.ts';
import { isAlive, onProcessExit } from './process-guard.ts';
import { EXAMPLE, exampleTunnel as example, MESH_EXAMPLE, meshExample } from './repo.ts';
import { eventually } from './support.ts';

export const STATE_FILE = '/run/ipip-operator-lab/state.json';
export const CONTROL_SOCKET = '/run/ipip-operator-lab/control.sock';

interface LabState {
  pid: number;
  netns: string;
  kubeconfig: string;
  apiDir: string;
  prometheus: string;
  startedAt: string;
}

function step(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') || text === '' ? text : `${text}\n`);
}

function readState(): LabState | undefined {
  try {
    return JSON.parse(readFileSync(STATE_FILE, 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** Waits until a process is gone; false if it is still there after timeoutMs. */
function exited(pid: number, timeoutMs: number): Promise<boolean> {
  return eventually(`pid ${pid} to exit`, async () => !isAlive(pid), { timeoutMs, intervalMs: 200 }).catch(() => false);
}

/** Stops the lab of the state file and sweeps lab namespaces whose owner is dead. */
export async function down(quiet = false): Promise<void> {
  const state = readState();
  const had = state !== undefined || staleLabNamespaces().length > 0;
  if (state !== undefined && state.pid !== process.pid && isAlive(state.pid)) {
    print(`stopping the lab (pid ${state.pid}, namespace ${state.netns})`);
    process.kill(state.pid, 'SIGTERM');
    if (!(await exited(state.pid, 30_000))) {
      print(`pid ${state.pid} is still there after 30 s: SIGKILL`);
      process.kill(state.pid, 'SIGKILL');
      if (!(await exited(state.pid, 10_000))) throw new Error(`pid ${state.pid} is still there 10 s after SIGKILL`);
    }
  }
  // Namespaces of labs whose process is gone (e.g. `up` was SIGKILLed), with anything in them.
  for (const ns of staleLabNamespaces()) {
    print(`removing ${ns} and the processes in it`);
    await removeNamespace(ns);
  }
  if (state !== undefined && existsSync(state.apiDir) && !isAlive(state.pid))
    rmSync(state.apiDir, { recursive: true, force: true });
  if (state === undefined || !isAlive(state.pid)) {
    rmSync(STATE_FILE, { force: true });
    rmSync(CONTROL_SOCKET, { force: true });
  }
  const left = staleLabNamespaces();
  if (left.length > 0) throw new Error(`still there: ${left.join(', ')}`);
  if (state !== undefined && listNamespaces().includes(state.netns))
    throw new Error(`namespace ${state.netns} is still there`);
  if (!quiet || had) print(had ? 'the lab is down: no lab namespace, process or link is left' : 'no lab is running');
}

async function sh(lab: FullLab, node: string, cmd: string): Promise<string> {
  const r = await lab.cluster.guest(node).sh(cmd);
  return r.stdout + r.stderr;
}

/** The arguments of `up`. */
export interface UpOptions {
  exitAfterDemo: boolean;
  /** node-a, node-b, ...: 2 (the default) to MAX_LAB_NODES. */
  nodes: number;
}

/** Bad arguments: the CLI prints the message and the usage, and exits 2. */
export class UsageError extends Error {}

/** The value of --nodes: a whole number from 2 to MAX_LAB_NODES, or a UsageError saying so. */
export function parseNodeCount(value: string | undefined): number {
  const range = `from 2 to ${MAX_LAB_NODES}`;
  if (value === undefined || value === '') throw new UsageError(`--nodes needs a number of nodes, ${range}`);
  if (!/^[0-9]{1,3}$/.test(value) || Number(value) < 2 || Number(value) > MAX_LAB_NODES)
    throw new UsageError(
      `--nodes ${JSON.stringify(value)}: a lab has ${range} nodes (node-a, node-b, ...); give a whole number in that range`,
    );
  return Number(value);
}

/** `up [--exit-after-demo] [--nodes N | --nodes=N]`. */
export function parseUpArgs(args: readonly string[]): UpOptions {
  const options: UpOptions = { exitAfterDemo: false, nodes: 2 };
  let nodesGiven = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--exit-after-demo') {
      options.exitAfterDemo = true;
    } else if (arg === '--nodes' || arg.startsWith('--nodes=')) {
      if (nodesGiven) throw new UsageError('--nodes is given twice');
      nodesGiven = true;
      options.nodes = parseNodeCount(arg === '--nodes' ? args[++i] : arg.slice('--nodes='.length));
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    }
  }
  return options;
}

/** What `up` applies: the point-to-point example for two nodes, the mesh for more. */
interface LabTunnel {
  /** The command as the tour prints it. */
  shown: string;
  args: string[];
  input?: string;
  tunnel: IpipTunnel;
}

/** examples/mesh.yaml with the nodes after node-c added the way node-b is (underlay on eth1, overlay 172.0.1.N). */
function labTunnel(nodes: readonly string[]): LabTunnel {
  if (nodes.length === 2) return { shown: 'examples/tunnel.yaml', args: ['apply', '-f', EXAMPLE], tunnel: example() };
  if (nodes.length === 3)
    return { shown: 'examples/mesh.yaml', args: ['apply', '-f', MESH_EXAMPLE], tunnel: meshExample() };
  const tunnel = meshExample((t) => {
    for (const [i, node] of nodes.entries()) {
      if (i < 3) continue;
      t.spec.endpoints.push({
        nodeName: node,
        underlay: { address: nodeAddress(i), interface: 'eth1' },
        overlayAddress: `172.0.1.${2 + i}`,
      });
    }
  });
  return {
    shown: `- (examples/mesh.yaml with ${andList(nodes.slice(3))} added as node-b is: overlay 172.0.1.${2 + 3} and on)`,
    args: ['apply', '-f', '-'],
    input: JSON.stringify(tunnel),
    tunnel,
  };
}

/** "a and b", "a, b and c". */
function andList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)!}`;
}

/** One line of the ping table: how many of `count` pings were answered, and the average round trip. */
async function pingLine(lab: FullLab, from: string, to: string, address: string, count: number): Promise<boolean> {
  const r = await lab.cluster.guest(from).sh(`ping -c ${count} -i 0.2 -W 2 ${address}`);
  const received = /(\d+) received/.exec(r.stdout)?.[1] ?? '0';
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
  const answered = r.code === 0;
  print(
    `   ${from} -> ${to} (${address}): ${received}/${count} answered${rtt === undefined ? '' : `, rtt avg ${rtt} ms`}` +
      (answered ? '' : '   <- NO ANSWER'),
  );
  return answered;
}

export async function up(options: UpOptions): Promise<void> {
  const { exitAfterDemo } = options;
  const previous = readState();
  if (previous !== undefined && isAlive(previous.pid) && previous.pid !== process.pid) {
    step(`a lab from an earlier \`up\` (pid ${previous.pid}) is running: tearing it down first`);
  }
  await down(true);
  const started = Date.now();
  step('bringing up the lab');
  const lab = await startFullLab((line) => print(`   ${line}`), { nodes: options.nodes });
  const ns = lab.cluster.netns;
  const n = lab.nodes.length;
  const mesh = n > 2;
  let failed = false;
  let control: Server | undefined;
  try {
    const state: LabState = {
      pid: process.pid,
      netns: ns,
      kubeconfig: lab.cluster.api.kubeconfig,
      apiDir: lab.cluster.api.dir,
      prometheus: lab.prometheus.url,
      startedAt: new Date().toISOString(),
    };
    mkdirSync(dirname(STATE_FILE), { recursive: true });
    writeFileSync(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
    onProcessExit(() => {
      if (readState()?.pid === process.pid) rmSync(STATE_FILE, { force: true });
      rmSync(CONTROL_SOCKET, { force: true });
    });
    control = await serveControl(lab);
    print(`   up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    step('kubectl get nodes -o wide (each registered by its own kubelet)');
    print(await lab.kubectl(['get', 'nodes', '-o', 'wide']));
    step(`kubectl -n ${RELEASE.namespace} get pods -o wide (the DaemonSet's agents, one per node)`);
    print(await lab.kubectl(['-n', RELEASE.namespace, 'get', 'pods', '-o', 'wide']));

    const applied = labTunnel(lab.nodes);
    const name = applied.tunnel.metadata.name;
    const linkName = applied.tunnel.spec.linkName!;
    step(`kubectl apply -f ${applied.shown}`);
    print(await lab.kubectl(applied.args, applied.input));
    step(`waiting for ${allOf(n)} agents to program their kernels and report (READY ${n}/${n})`);
    const t0 = Date.now();
    await lab.cluster.waitTunnelReady(name, {
      onChange: (s) => print(`   ${((Date.now() - t0) / 1000).toFixed(1)} s: ${s}`),
    });

    step('kubectl get ipt');
    print(await lab.kubectl(['get', 'ipt']));
    for (const node of lab.nodes) {
      step(`${node}: ip -d link show ${linkName}; ip route show dev ${linkName}`);
      print(await sh(lab, node, `ip -d link show ${linkName}; ip route show dev ${linkName}`));
    }
    if (!mesh) {
      step(
        "node-a: ping -c 3 172.0.0.3 (node-b through the tunnel; strict rp_filter on both nodes), capturing on node-b's eth1",
      );
      const capture = await startIpipCapture(lab.cluster.guest('node-b'));
      print(await sh(lab, 'node-a', 'ping -c 3 -i 0.3 172.0.0.3'));
      step(
        'node-b: tcpdump -n -v -c 2 -i eth1 ip proto 4 (tcpdump 4.99 prints "proto IPIP (4)" where older versions said "ipip-proto-4")',
      );
      print((await capture.done).stdout);
    } else {
      const overlay = new Map(applied.tunnel.spec.endpoints.map((e) => [e.nodeName, e.overlayAddress]));
      step(
        `every pair over the overlay: ping -c 2 from each node to each peer (strict rp_filter on ${allOf(n)} nodes)`,
      );
      const unanswered: string[] = [];
      for (const from of lab.nodes) {
        for (const to of lab.nodes) {
          if (to !== from && !(await pingLine(lab, from, to, overlay.get(to)!, 2))) unanswered.push(`${from} -> ${to}`);
        }
      }
      const { node: router, host, network, netns } = MESH_LAN;
      step(
        `node-a: ping -c 3 ${host} (a host on ${network}, the LAN behind ${router}, which forwards), capturing on ${router}'s eth1`,
      );
      const capture = await startIpipCapture(lab.cluster.guest(router));
      const lan = await lab.cluster.guest('node-a').sh(`ping -c 3 -i 0.3 -W 2 ${host}`);
      print(lan.stdout + lan.stderr);
      if (lan.code !== 0) unanswered.push(`node-a -> ${host} (${network} behind ${router})`);
      step(
        `${router}: tcpdump -n -v -c 2 -i eth1 ip proto 4 (the outer header node-a -> ${router}, the inner one to the LAN host)`,
      );
      print((await capture.done).stdout);
      step(`${router}: ip netns exec ${netns} ip route (the LAN host: its default route is ${router})`);
      print(await sh(lab, router, `ip netns exec ${netns} ip -4 addr show dev eth0; ip netns exec ${netns} ip route`));
      if (unanswered.length > 0) throw new Error(`no answer over the overlay: ${unanswered.join(', ')}`);
    }

    step('how to reach the lab');
    const kc = lab.cluster.api.kubeconfig;
    const metrics = Object.values(lab.cluster.nodes).map((a) => `http://${a}:${AGENT_METRICS_PORT}/metrics`);
    print(
      [
        `The API server listens on the lab bridge inside the network namespace ${ns}, so run clients there`,
        // The full path of the kubectl built with the server: the machine's, if any, is older
        // (Debian's is 1.20) and PATH would have to be set inside "ip netns exec" to reach it.
        `(kubectl as built with the server by scripts/cluster-tools.sh, in ${lab.cluster.api.binDir}):`,
        `  ip netns exec ${ns} ${join(lab.cluster.api.binDir, 'kubectl')} --kubeconfig ${kc} get ipt`,
        `Prometheus (scraping ${allOf(n)} agents every 2 s): ${lab.prometheus.url}`,
        `  ip netns exec ${ns} curl -s '${lab.prometheus.url}/api/v1/query?query=ipip_operator_tunnel_up'`,
        `Agents' metrics: ${andList(metrics)} (same namespace)`,
        'A shell in a node (one command per line, run with sh in the guest, cwd the checkout; Ctrl-D ends it):',
        ...lab.nodes.map(
          (node) => `  ./scripts/lab.sh sh ${node}        or one command: ./scripts/lab.sh sh ${node} ip route`,
        ),
        ...(mesh
          ? [
              `The LAN host behind ${MESH_LAN.node} (${MESH_LAN.host}) is the namespace ${MESH_LAN.netns} there:`,
              `  ./scripts/lab.sh sh ${MESH_LAN.node} ip netns exec ${MESH_LAN.netns} ping -c 1 172.0.1.2`,
            ]
          : []),
        `The bridge ${BRIDGE_ADDRESS} and the nodes' eth1 are in that namespace too: ip netns exec ${ns} ping 192.168.40.2`,
        exitAfterDemo
          ? `This demo tears the lab down now; to keep it running, start it with ./scripts/lab.sh up${mesh ? ` --nodes ${n}` : ''} ` +
            '(Ctrl-C or ./scripts/lab.sh down ends it).'
          : 'Tear it down: Ctrl-C here, or ./scripts/lab.sh down from another terminal',
        `State: ${STATE_FILE}`,
      ].join('\n'),
    );
    if (exitAfterDemo) {
      step(
        `tearing the lab down (./scripts/lab.sh up${mesh ? ` --nodes ${n}` : ''} keeps it running; ./scripts/lab.sh down stops it)`,
      );
    } else {
      step(`the lab runs until Ctrl-C or \`./scripts/lab.sh down\` (pid ${process.pid})`);
      await new Promise<void>((resolve) => {
        const keepAlive = setInterval(() => {}, 60_000);
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
          process.prependOnceListener(sig, () => {
            clearInterval(keepAlive);
            resolve();
          });
        }
      });
    }
  } catch (error) {
    failed = true;
    process.stderr.write(`lab failed: ${(error as Error).stack ?? String(error)}\n`);
  } finally {
    control?.close();
    rmSync(CONTROL_SOCKET, { force: true });
    await lab.stop();
    const state = readState();
    if (state?.pid === process.pid) rmSync(STATE_FILE, { force: true });
  }
  if (failed) process.exitCode = 1;
  else print(`done in ${((Date.now() - started) / 1000).toFixed(1)} s; nothing is left of the lab`);
}

/** `up` runs the commands of `sh` in the guests: POST /sh/NODE with the command as the body. */
function serveControl(lab: FullLab): Promise<Server> {
  rmSync(CONTROL_SOCKET, { force: true });
  const server = createServer((req, res) => {
    const node = decodeURIComponent((req.url ?? '').replace(/^\/sh\//, ''));
    let body = '';
    req
      .setEncoding('utf8')
      .on('data', (c: string) => (body += c))
      .on('end', () => {
        if (!lab.nodes.includes(node)) {
          res
            .writeHead(404)
            .end(
              JSON.stringify({ code: 127, stdout: '', stderr: `no node ${node} (nodes: ${lab.nodes.join(', ')})\n` }),
            );
          return;
        }
        lab.cluster
          .guest(node)
          .sh(body, 600_000)
          .then(
            (r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r)),
            (e: unknown) => res.writeHead(500).end(JSON.stringify({ code: 1, stdout: '', stderr: `${String(e)}\n` })),
          );
      });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(CONTROL_SOCKET, () => {
      server.unref();
      resolve(server);
    });
  });
}

function remoteSh(node: string, cmd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: CONTROL_SOCKET, path: `/sh/${encodeURIComponent(node)}`, method: 'POST' },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (c: string) => (body += c))
          .on('end', () => resolve(JSON.parse(body) as { code: number; stdout: string; stderr: string }));
      },
    );
    req.on('error', (e) =>
      reject(new Error(`no running lab to talk to (${e.message}); start one with ./scripts/lab.sh up`)),
    );
    req.end(cmd);
  });
}

async function shell(node: string, words: string[]): Promise<number> {
  if (words.length > 0) {
    const r = await remoteSh(node, words.join(' '));
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.code;
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: `${node}# ` });
  let closed = false;
  rl.once('close', () => {
    closed = true;
  });
  rl.prompt();
  let code = 0;
  for await (const line of rl) {
    if (line.trim() !== '') {
      const r = await remoteSh(node, line);
      process.stdout.write(r.stdout);
      process.stderr.write(r.stderr);
      code = r.code;
    }
    if (!closed) rl.prompt();
  }
  process.stdout.write('\n');
  return code;
}

const USAGE = `usage: node test/harness/lab-cli.ts up [--exit-after-demo] [--nodes N (2 to ${MAX_LAB_NODES}, default 2)] | down | sh NODE [COMMAND...]\n`;

function usage(problem?: string): never {
  process.stderr.write(`${problem === undefined ? '' : `lab: ${problem}\n`}${USAGE}`);
  process.exit(2);
}

if (import.meta.main) {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'up') {
    let options: UpOptions;
    try {
      options = parseUpArgs(rest);
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      usage(error.message);
    }
    await up(options);
  } else if (command === 'down') {
    if (rest.length > 0) usage();
    await down().catch((error: unknown) => {
      process.stderr.write(`lab down: ${(error as Error).message}\n`);
      process.exitCode = 1;
    });
  } else if (command === 'sh' && rest[0] !== undefined) {
    process.exitCode = await shell(rest[0], rest.slice(1)).catch((error: unknown) => {
      process.stderr.write(`lab sh: ${(error as Error).message}\n`);
      return 1;
    });
  } else {
    usage();
  }
}
