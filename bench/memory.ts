// Memory and start-up of the agent (issue 14):  node bench/memory.ts [flags]
//
// For the standalone agent and the cluster agent, with 0, 100 and 1,000 tunnels on node-a
// (bench/tunnels.ts): the RSS and the JS heap once the agent has settled, and the time from
// spawning the process to the end of its first reconcile. Each number is a fresh process
// (the median of --runs). What it runs:
//   - the agent's own code as the CLI wires it: standalone, runStandalone on a manifest file
//     of the N tunnels; in a cluster, runClusterAgent with the real KubeClient, informers,
//     Lease, IpipNode and aggregate writes, AgentMetrics and the /metrics server, against a
//     fake API server in this (the parent) process that keeps the objects in memory, serves
//     the N tunnels and N+1 small Node objects, and answers every write;
//   - the kernel is the recording dataplane of test/harness (the kernel model), not `ip`:
//     what is measured is the JS side. The driver modules (process.ts and the rest) are loaded as
//     the CLI loads them, but no `ip` or `nft` process runs, so the output of `ip -json` for
//     N links is not read and the monitors' processes (their own RSS) do not exist. The real
//     kernel's numbers come from the UML benchmarks.
// "settled": standalone, 1 s after the first reconcile; in a cluster, 2 s after the last
// API write (the IpipNode and every aggregate written). RSS is read then, and again after a
// full GC (--expose-gc), with the heap used then.
//
// The code runs the way it ships (--variants, default both when esbuild is installed):
//   tsc      src/ compiled by tsc, node_modules as they are (`npm run build`)
//   bundle   one ESM bundle by esbuild, as the image ships it (`npm run bundle`: not minified; the cluster path a
//            chunk of its own), node_modules not loaded
//   ts       the .ts files run by Node's type stripping (quick, not how it ships)
// Flags: --counts 0,100,1000  --runs 3  --variants tsc,bundle  --modes import,standalone,cluster  --snapshots DIR (a heap
// snapshot of each settled child: DIR/VARIANT-MODE-N.heapsnapshot). Environment:
// NODE_OPTIONS reaches the children too (e.g. --max-semi-space-size=2); BENCH_VERBOSE=1
// prints each row's API requests (and TCP connections) and V8 heap spaces; BENCH_LOG=FILE
// keeps the children's logs; BENCH_TRACE=1 adds RSS and heap every 100 ms to those logs;
// BENCH_PEAK_SNAPSHOT=FILE writes one heap snapshot when a child's heap first passes BENCH_PEAK_MIB (150) MiB;
// BENCH_NODE_FLAGS adds Node or V8 flags to the children (e.g. --optimize-for-size); BENCH_LOG_LEVEL is the
// children's log level (info); BENCH_SETTLE_MS waits that much longer before measuring; BENCH_ALLOC_PROFILE=FILE writes each child's allocations (garbage
// included; V8's sampling heap profiler) to FILE.PID, the format of a .heapprofile.

import { fork } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import type { IpipTunnel } from '../src/api/types.ts';
import type { Dataplane } from '../src/dataplane/dataplane.ts';
import type { KernelState } from '../src/model/kernel.ts';
import { manyTunnels } from './tunnels.ts';

type Mode = 'standalone' | 'cluster' | 'import';
type Variant = 'ts' | 'tsc' | 'bundle';

/** What a child reports once settled. */
interface Sample {
  /** From spawn (parent's clock) to the end of the first reconcile; undefined for 'import'. */
  startupMs?: number;
  /** The child's minor page faults until then. */
  startupFaults?: number;
  rssMiB: number;
  rssAfterGcMiB: number;
  /** Of that, what is not file-backed (RssAnon: not the node binary's pages, which are shared and reclaimable). */
  rssAnonMiB: number;
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
  /** API requests the fake server answered, by kind (cluster mode). */
  requests?: Record<string, number>;
  /** Each V8 heap space: used / physical MiB, after the GC. */
  spaces?: Record<string, string>;
}

const NODE = 'node-a';
const MiB = 2 ** 20;
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;
const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

// ---------------------------------------------------------------------------------------
// The child: one agent, measured when the parent says it has settled.

/** node-a before the agent: lo and eth1 (192.168.40.2/24), as test/unit/builders.ts has it. */
function bareKernel(): KernelState {
  return {
    links: [
      {
        index: 1,
        name: 'lo',
        group: 0,
        up: true,
        mtu: 65536,
        addresses: [{ local: '127.0.0.1', prefixlen: 8, scope: 254 }],
      },
      {
        index: 3,
        name: 'eth1',
        kind: 'veth',
        group: 0,
        up: true,
        mtu: 1500,
        addresses: [{ local: '192.168.40.2', prefixlen: 24, scope: 0 }],
      },
    ],
    routes: [{ dst: '192.168.40.0/24', dev: 'eth1', protocol: 2, metric: 0, scope: 253, type: 1 }],
    ipv4Forwarding: true,
  };
}

/** The recording dataplane, telling the parent when the first reconcile has applied its plan. */
async function recordingDataplane(): Promise<Dataplane> {
  const { RecordingDataplane } = await import('../test/harness/recording-dataplane.ts');
  const dataplane = new RecordingDataplane(bareKernel());
  const apply = dataplane.apply.bind(dataplane);
  let first = true;
  dataplane.apply = async (actions) => {
    const results = await apply(actions);
    if (first) {
      first = false;
      // Its page faults so far: on a slow kernel (UML: about 100 µs each) they are most of start-up.
      process.send?.({ reconciled: process.resourceUsage().minorPageFault });
    }
    // Keep no history: a real dataplane does not (the recording one keeps every line for tests).
    dataplane.applied.length = 0;
    return results;
  };
  return dataplane;
}

/** RssAnon of /proc/self/status, in bytes (0 where there is none). */
function rssAnon(): number {
  try {
    const kb = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * 1024;
  } catch {
    return 0;
  }
}

/** Starts V8's sampling heap profiler on this process; the returned function stops it and gives its profile (JSON). */
async function allocationProfile(): Promise<() => Promise<string>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', {
    samplingInterval: 16 * 1024,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return async () => JSON.stringify((await session.post('HeapProfiler.stopSampling')).profile);
}

async function child(mode: Mode, target: string): Promise<void> {
  // The modules each mode's CLI path loads (main.ts loads the cluster path only in a cluster).
  const { createLogger } = await import('../src/report/log.ts');
  // Logs go to the child's stderr, which the parent sends to /dev/null (1,000 tunnels log
  // 5,000 kernel changes at info, as the agent would).
  const log = createLogger({ format: 'json', level: (process.env.BENCH_LOG_LEVEL ?? 'info') as 'info' });
  const stops: (() => Promise<void>)[] = [];
  // BENCH_ALLOC_PROFILE=FILE: where the child allocates, garbage included (V8's sampling heap
  // profiler keeping the samples of collected objects), from here until it is measured.
  const allocations = process.env.BENCH_ALLOC_PROFILE === undefined ? undefined : await allocationProfile();
  if (process.env.BENCH_TRACE !== undefined) {
    // Every 100 ms, to stderr (BENCH_LOG): RSS and heap, to see which phase grows them.
    const trace = setInterval(() => {
      const u = process.memoryUsage();
      process.stderr.write(
        `trace ${Math.round(performance.now())} ms rss ${mib(u.rss)} heapUsed ${mib(u.heapUsed)} heapTotal ${mib(u.heapTotal)} external ${mib(u.external)}\n`,
      );
      if (
        process.env.BENCH_PEAK_SNAPSHOT !== undefined &&
        u.heapUsed > Number(process.env.BENCH_PEAK_MIB ?? 150) * MiB
      ) {
        process.stderr.write(`trace snapshot ${v8.writeHeapSnapshot(process.env.BENCH_PEAK_SNAPSHOT)}\n`);
        delete process.env.BENCH_PEAK_SNAPSHOT;
      }
    }, 100);
    trace.unref();
  }
  if (mode === 'import') {
    await import('../src/cli/cluster-agent.ts');
    process.send?.({ reconciled: process.resourceUsage().minorPageFault });
  } else if (mode === 'standalone') {
    await import('../src/dataplane/node.ts');
    const { runStandalone } = await import('../src/controller/standalone.ts');
    const agent = runStandalone({
      manifestPath: target,
      nodeName: NODE,
      dataplane: await recordingDataplane(),
      log,
      resyncMs: 60_000,
      debounceMs: 200,
    });
    stops.push(() => agent.stop());
  } else {
    await import('../src/cli/cluster-agent.ts');
    await import('../src/dataplane/node.ts');
    const { runClusterAgent } = await import('../src/controller/cluster.ts');
    const { LEASE_NAME } = await import('../src/controller/lease.ts');
    const { KubeClient } = await import('../src/kube/client.ts');
    const { AgentMetrics } = await import('../src/report/metrics.ts');
    const { startHttpServer } = await import('../src/report/http.ts');
    // As runClusterCommand (src/cli/cluster-agent.ts) wires it, with the recording dataplane.
    const metrics = new AgentMetrics();
    const client = new KubeClient({ kubeconfig: target, onRequest: metrics.recordApiRequest });
    const agent = runClusterAgent({
      nodeName: NODE,
      client,
      dataplane: await recordingDataplane(),
      log,
      metrics,
      resyncMs: 60_000,
      debounceMs: 200,
      lease: { namespace: 'ipip-operator', name: LEASE_NAME },
    });
    const server = await startHttpServer({
      address: '127.0.0.1:0',
      metrics,
      log,
      isReady: agent.ready,
      isHealthy: agent.healthy,
    });
    stops.push(
      () => server.close(),
      () => agent.stop(),
    );
  }
  process.on('message', async (message: { measure?: string }) => {
    if (message.measure === undefined) return;
    if (allocations !== undefined)
      writeFileSync(`${process.env.BENCH_ALLOC_PROFILE}.${process.pid}`, await allocations());
    const rss = process.memoryUsage.rss();
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) throw new Error('the child needs --expose-gc');
    gc();
    await sleep(100);
    gc();
    const usage = process.memoryUsage();
    if (message.measure !== '') v8.writeHeapSnapshot(message.measure);
    process.send?.({
      sample: {
        rssMiB: mib(rss),
        rssAfterGcMiB: mib(usage.rss),
        rssAnonMiB: mib(rssAnon()),
        heapUsedMiB: mib(usage.heapUsed),
        heapTotalMiB: mib(usage.heapTotal),
        externalMiB: mib(usage.external),
        spaces: Object.fromEntries(
          v8
            .getHeapSpaceStatistics()
            .map((x) => [x.space_name, `${mib(x.space_used_size)}/${mib(x.physical_space_size)}`]),
        ),
      },
    });
    for (const stop of stops) await stop();
    process.disconnect();
  });
}

// ---------------------------------------------------------------------------------------
// The fake API server: objects in memory, every write answered as the real one would.

interface FakeApi {
  kubeconfig: string;
  /** Milliseconds since the last write (IpipNode, aggregate, Event, Lease). */
  quietMs(): number;
  requests: Record<string, number>;
  close(): Promise<void>;
}

function nodeObject(name: string, address: string, i: number): Record<string, unknown> {
  // Small Nodes: what the agent keeps of one is its name, uid and InternalIP either way.
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      uid: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      resourceVersion: '1',
      labels: { 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' },
    },
    status: {
      addresses: [
        { type: 'InternalIP', address },
        { type: 'Hostname', address: name },
      ],
    },
  };
}

async function fakeApiServer(tunnels: IpipTunnel[], dir: string): Promise<FakeApi> {
  let revision = 100;
  const rv = () => String(++revision);
  let lastWrite = Date.now();
  const requests: Record<string, number> = {};
  const stored = new Map<string, Record<string, unknown>>();
  for (const t of tunnels)
    stored.set(t.metadata.name, {
      ...t,
      metadata: { ...t.metadata, uid: t.metadata.name, generation: 1, resourceVersion: rv() },
    });
  const ipipNodes = new Map<string, Record<string, unknown>>();
  const nodes = [
    nodeObject(NODE, '192.168.40.2', 0),
    ...tunnels.map((t, i) =>
      nodeObject(t.spec.endpoints[1]!.nodeName, t.spec.endpoints[1]!.underlay?.address ?? '10.200.0.1', i + 1),
    ),
  ];
  const leases = new Map<string, Record<string, unknown>>();
  const watches = new Set<ServerResponse>();
  const sockets = new Set<Socket>();

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  const notFound = (res: ServerResponse, what: string) =>
    send(res, 404, {
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'NotFound',
      code: 404,
      message: `${what} not found`,
    });
  const list = (res: ServerResponse, kind: string, items: unknown[]) =>
    send(res, 200, { apiVersion: 'v1', kind, metadata: { resourceVersion: String(revision) }, items });
  const body = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  };
  const count = (what: string) => {
    requests[what] = (requests[what] ?? 0) + 1;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://api');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && url.searchParams.get('watch') === 'true') {
      // Held open with nothing to say: the agent's watches stay quiet once listed.
      count('watch');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      res.flushHeaders();
      watches.add(res);
      res.on('close', () => watches.delete(res));
      return;
    }
    const ours =
      /^\/apis\/tunnel\.ipip-operator\.dev\/v1alpha1\/(ipiptunnels|ipipnodes)(?:\/([^/]+))?(\/status)?$/.exec(path);
    const lease = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/.exec(path);
    if (method === 'GET' && path === '/api/v1/nodes') {
      count('list nodes');
      list(res, 'NodeList', nodes);
    } else if (method === 'GET' && ours !== null && ours[2] === undefined) {
      count(`list ${ours[1]}`);
      list(res, 'List', [...(ours[1] === 'ipiptunnels' ? stored : ipipNodes).values()]);
    } else if (method === 'PATCH' && ours !== null && ours[2] !== undefined) {
      const name = decodeURIComponent(ours[2]);
      const patch = await body(req);
      lastWrite = Date.now();
      if (ours[1] === 'ipipnodes') {
        count('apply ipipnode');
        const metadata = { ...(patch.metadata as object), uid: `ipipnode-${name}`, resourceVersion: rv() };
        const object = { ...patch, metadata };
        ipipNodes.set(name, object);
        send(res, 200, object);
      } else {
        count('apply tunnel status');
        const tunnel = stored.get(name);
        if (tunnel === undefined) return notFound(res, `ipiptunnels ${name}`);
        const object = {
          ...tunnel,
          status: patch.status,
          metadata: { ...(tunnel.metadata as object), resourceVersion: rv() },
        };
        stored.set(name, object);
        send(res, 200, object);
      }
    } else if (lease !== null) {
      const key = `${lease[1]}/${lease[2] ?? ''}`;
      if (method === 'GET') {
        count('get lease');
        const got = leases.get(key);
        if (got === undefined) notFound(res, `leases ${key}`);
        else send(res, 200, got);
      } else {
        count(method === 'POST' ? 'create lease' : 'update lease');
        lastWrite = Date.now();
        const object = await body(req);
        const metadata = { ...(object.metadata as object), resourceVersion: rv() };
        const name = (object.metadata as { name: string }).name;
        leases.set(`${lease[1]}/${name}`, { ...object, metadata });
        send(res, method === 'POST' ? 201 : 200, { ...object, metadata });
      }
    } else if (
      /^\/api\/v1\/namespaces\/[^/]+\/events(\/[^/]+)?$/.test(path) &&
      (method === 'POST' || method === 'PATCH')
    ) {
      count(method === 'POST' ? 'create event' : 'patch event');
      lastWrite = Date.now();
      const object = await body(req);
      send(res, method === 'POST' ? 201 : 200, {
        ...object,
        metadata: { ...(object.metadata as object), resourceVersion: rv() },
      });
    } else {
      count(`unexpected ${method} ${path}`);
      notFound(res, path);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => send(res, 500, { kind: 'Status', code: 500, message: String(error) }));
  });
  server.on('connection', (socket) => {
    count('connections');
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    [
      'apiVersion: v1',
      'kind: Config',
      `clusters: [{name: fake, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]`,
      'users: [{name: agent, user: {token: bench}}]',
      'contexts: [{name: fake, context: {cluster: fake, user: agent}}]',
      'current-context: fake',
      '',
    ].join('\n'),
  );
  return {
    kubeconfig,
    quietMs: () => Date.now() - lastWrite,
    requests,
    close: async () => {
      for (const w of watches) w.end();
      for (const s of sockets) s.destroy();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

// ---------------------------------------------------------------------------------------
// The parent: builds each variant, runs the children, prints the table.

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

/** The entry of this file as the variant runs it, built into dir. */
async function buildVariant(variant: Variant, dir: string): Promise<string> {
  if (variant === 'ts') return SELF;
  const out = join(dir, variant);
  mkdirSync(out, { recursive: true });
  // The emitted files are ESM by package.json's "type" and find node_modules beside them.
  copyFileSync(join(REPO, 'package.json'), join(out, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(out, 'node_modules'));
  if (variant === 'tsc') {
    // What tsconfig.json covers (src, test, bench), emitted as the build emits src/. A type
    // error elsewhere in a tree being worked on does not stop the emit (noEmitOnError is off).
    const { spawnSync } = await import('node:child_process');
    const args = ['-p', join(REPO, 'tsconfig.json'), '--noEmit', 'false', '--sourceMap', 'false', '--outDir', out];
    spawnSync(join(REPO, 'node_modules/.bin/tsc'), args, { stdio: 'ignore' });
    const entry = join(out, relative(REPO, SELF).replace(/\.ts$/, '.js'));
    if (!existsSync(entry)) throw new Error(`tsc ${args.join(' ')} emitted no ${entry}`);
    return entry;
  }
  const esbuild = await import('esbuild' as string).catch(() => undefined);
  if (esbuild === undefined) throw new Error('the bundle variant needs esbuild (npm install)');
  await (esbuild as typeof import('esbuild')).build({
    entryPoints: [SELF],
    outdir: out,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    // Not the parent's build tool itself (it is imported only to build).
    external: ['esbuild'],
    logLevel: 'warning',
    // Some CommonJS dependencies require Node's modules; an ESM bundle has no require of its own.
    banner: {
      js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
    },
  });
  return join(out, 'memory.js');
}

async function esbuildInstalled(): Promise<boolean> {
  return (await import('esbuild' as string).then(() => true).catch(() => false)) as boolean;
}

interface RunOptions {
  entry: string;
  mode: Mode;
  n: number;
  dir: string;
  snapshot?: string;
}

async function runOnce(o: RunOptions): Promise<Sample> {
  const tunnels = manyTunnels(o.n);
  let target = '';
  let api: FakeApi | undefined;
  if (o.mode === 'standalone') {
    const { stringify } = await import('yaml');
    target = join(o.dir, `tunnels-${o.n}.yaml`);
    writeFileSync(target, tunnels.length === 0 ? '' : tunnels.map((t) => stringify(t)).join('---\n'));
  } else if (o.mode === 'cluster') {
    api = await fakeApiServer(tunnels, o.dir);
    target = api.kubeconfig;
  }
  const started = performance.now();
  // BENCH_LOG=FILE keeps the children's logs (appended), else they go nowhere.
  const logFd = process.env.BENCH_LOG === undefined ? 'ignore' : openSync(process.env.BENCH_LOG, 'a');
  const proc = fork(o.entry, ['--child', o.mode, target], {
    execArgv: ['--expose-gc', ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
    stdio: ['ignore', logFd, logFd, 'ipc'],
  });
  if (typeof logFd === 'number') closeSync(logFd);
  try {
    const reply = <T>(key: string, timeoutMs: number) =>
      new Promise<T>((done, fail) => {
        const timer = setTimeout(() => fail(new Error(`${o.mode} ${o.n}: no ${key} in ${timeoutMs} ms`)), timeoutMs);
        const onMessage = (m: Record<string, unknown>) => {
          if (!(key in m)) return;
          clearTimeout(timer);
          proc.off('message', onMessage);
          done(m[key] as T);
        };
        proc.on('message', onMessage);
        proc.once('exit', (code) => fail(new Error(`${o.mode} ${o.n}: the child exited (${code}) before ${key}`)));
      });
    const startupFaults = await reply<number>('reconciled', 120_000);
    const startupMs = performance.now() - started;
    if (o.mode === 'cluster') {
      // Settled: every write done (the IpipNode, the aggregates), nothing for 2 s.
      await sleep(2000);
      while (api!.quietMs() < 2000) await sleep(200);
    } else await sleep(1000);
    // BENCH_SETTLE_MS: longer (e.g. past the 60 s resync), to see what the heap does later.
    await sleep(Number(process.env.BENCH_SETTLE_MS ?? 0));
    const sample = reply<Sample>('sample', 120_000);
    proc.send({ measure: o.snapshot ?? '' });
    const got = await sample;
    return {
      ...got,
      ...(o.mode === 'import' ? {} : { startupMs: Math.round(startupMs), startupFaults }),
      ...(api === undefined ? {} : { requests: { ...api.requests } }),
    };
  } finally {
    if (proc.exitCode === null) {
      proc.kill('SIGKILL');
      await new Promise((done) => proc.once('exit', done));
    }
    await api?.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function parent(): Promise<void> {
  const { values } = parseArgs({
    options: {
      counts: { type: 'string', default: '0,100,1000' },
      runs: { type: 'string', default: '3' },
      variants: { type: 'string' },
      snapshots: { type: 'string' },
      modes: { type: 'string', default: 'import,standalone,cluster' },
    },
  });
  const modes = new Set(values.modes.split(',') as Mode[]);
  const counts = values.counts.split(',').map(Number);
  const runs = Number(values.runs);
  const variants = (values.variants?.split(',') ??
    ((await esbuildInstalled()) ? ['tsc', 'bundle'] : ['tsc'])) as Variant[];
  const dir = mkdtempSync(join(tmpdir(), 'ipip-memory-'));
  try {
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say(
      `Node ${process.version}, ${runs} run(s) each, median. Kernel: the recording dataplane (test/harness), not ip: the JS side only.`,
    );
    say('Cluster: a fake API server in the parent (the tunnels, N+1 small Nodes, every write answered).');
    say('');
    say(
      '| code | mode | tunnels | start-up to first reconcile (ms) | its page faults | RSS settled (MiB) | RSS after GC (MiB) ' +
        '| of it anon (MiB) | heap used (MiB) | heap total (MiB) | external (MiB) |',
    );
    say('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const variant of variants) {
      const entry = await buildVariant(variant, dir);
      const rows = (
        [['import', 0], ...counts.map((n) => ['standalone', n]), ...counts.map((n) => ['cluster', n])] as [
          Mode,
          number,
        ][]
      ).filter(([mode]) => modes.has(mode));
      for (const [mode, n] of rows) {
        const samples: Sample[] = [];
        for (let i = 0; i < runs; i++) {
          const snapshot =
            values.snapshots !== undefined && i === 0
              ? join(values.snapshots, `${variant}-${mode}-${n}.heapsnapshot`)
              : undefined;
          if (snapshot !== undefined) mkdirSync(values.snapshots!, { recursive: true });
          samples.push(await runOnce({ entry, mode, n, dir, ...(snapshot === undefined ? {} : { snapshot }) }));
        }
        const m = (pick: (s: Sample) => number | undefined) => {
          const got = samples.map(pick).filter((v) => v !== undefined);
          return got.length === 0 ? '' : String(median(got));
        };
        const what = mode === 'import' ? 'import of the cluster path only (cli/cluster-agent)' : mode;
        say(
          `| ${[
            variant,
            what,
            mode === 'import' ? '' : n,
            m((s) => s.startupMs),
            m((s) => s.startupFaults),
            m((s) => s.rssMiB),
            m((s) => s.rssAfterGcMiB),
            m((s) => s.rssAnonMiB),
            m((s) => s.heapUsedMiB),
            m((s) => s.heapTotalMiB),
            m((s) => s.externalMiB),
          ].join(' | ')} |`,
        );
        if (process.env.BENCH_VERBOSE)
          say(`  ${JSON.stringify({ requests: samples[0]!.requests, spaces: samples[0]!.spaces })}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const childAt = process.argv.indexOf('--child');
if (childAt !== -1) await child(process.argv[childAt + 1] as Mode, process.argv[childAt + 2] ?? '');
else await parent();
