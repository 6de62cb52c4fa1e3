// The agent's control loop (controller/loop.ts), fast: the recording dataplane over the
// kernel model, mocked timers, and the real sources (the cluster's informers fed by
// scripted lists; a fixed list standing in for the manifest). What the kernel does with
// the same loop is proven in test/kernel and test/e2e.

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import type { IpipNode, IpipTunnel, NodeTunnelStatus } from '../../src/api/types.ts';
import { informerSource } from '../../src/controller/cluster.ts';
import { KERNEL_DEBOUNCE_MS, runAgentLoop } from '../../src/controller/loop.ts';
import type { AgentLoop, ReportSink, TunnelSource } from '../../src/controller/loop.ts';
import type { ReflectorSource } from '../../src/controller/reflector.ts';
import type { ListPage, NodeAddresses, WatchHandlers } from '../../src/kube/client.ts';
import { createLogger } from '../../src/report/log.ts';
import type { Logger } from '../../src/report/log.ts';
import { AgentMetrics } from '../../src/report/metrics.ts';
import type { NodeReport } from '../../src/report/report.ts';
import { metricValue } from '../harness/probes.ts';
import { RecordingDataplane } from '../harness/recording-dataplane.ts';
import { meshExample } from '../harness/repo.ts';
import { bareKernel, exampleTunnel, programmedKernel } from './builders.ts';

const log = createLogger({ format: 'json', level: 'error' });
const DEBOUNCE_MS = 200;
const RESYNC_MS = 60_000;

/** Lets every promise chain that is ready run (the loop's work is all in memory here). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((done) => setImmediate(done));
}

/** Lets pending work finish, then moves the mocked clock forward in steps, letting the work each step starts finish. */
async function advance(ms: number, stepMs = 100): Promise<void> {
  await settle();
  let done = 0;
  do {
    const step = Math.min(stepMs, ms - done);
    mock.timers.tick(step);
    done += step;
    await settle();
  } while (done < ms);
}

/**
 * A fixed list of tunnels, as a manifest that does not change; counts how often it is
 * read. `published`: this node's IpipNode entries, as a recordingSink writes them.
 */
function fixedSource(
  tunnels: IpipTunnel[],
  published?: Map<string, NodeTunnelStatus>,
): TunnelSource & { reads: number } {
  const source = {
    reads: 0,
    start: () => {},
    current: async () => {
      source.reads += 1;
      return {
        tunnels,
        nodeAddresses: new Map<string, string>(),
        ...(published === undefined ? {} : { reported: published }),
      };
    },
    ready: () => true as const,
    stop: async () => {},
  };
  return source;
}

/** Keeps every report, and writes this node's entries into `published` as the API server and the watch would. */
function recordingSink(published = new Map<string, NodeTunnelStatus>()): ReportSink & { reports: NodeReport[] } {
  const reports: NodeReport[] = [];
  return {
    reports,
    deliver: async (report) => {
      reports.push(report);
      if (report.nodeStatus !== undefined) {
        published.clear();
        for (const e of report.nodeStatus) published.set(e.name, e);
      }
      return true;
    },
  };
}

function secondTunnel(): IpipTunnel {
  return exampleTunnel((t) => {
    t.metadata.name = 'lab2';
    t.spec.linkName = 'ipiptun2';
    t.spec.endpoints[1]!.underlay!.address = '192.168.40.4';
    t.spec.endpoints[0]!.overlayAddress = '172.0.1.2';
    t.spec.endpoints[1]!.overlayAddress = '172.0.1.3';
    t.spec.routes = ['172.0.1.0/24'];
  });
}

describe('the agent loop', () => {
  let loop: AgentLoop | undefined;
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 0 }));
  afterEach(async () => {
    const stopping = loop?.stop();
    loop = undefined;
    await advance(DEBOUNCE_MS);
    await stopping;
    mock.timers.reset();
  });

  function start(
    dataplane: RecordingDataplane,
    source: TunnelSource,
    sink: ReportSink = recordingSink(),
    metrics?: AgentMetrics,
    logger: Logger = log,
  ): AgentLoop {
    loop = runAgentLoop({
      nodeName: 'node-a',
      dataplane,
      source,
      sink,
      log: logger,
      ...(metrics === undefined ? {} : { metrics }),
      resyncMs: RESYNC_MS,
      debounceMs: DEBOUNCE_MS,
    });
    return loop;
  }

  test('a failed action stays dirty and is retried with backoff (1 s, 2 s, 4 s) while the others are done at once', async () => {
    const dp = new RecordingDataplane(bareKernel());
    dp.failWhen((a) => a.tunnel === 'lab2' && a.kind === 'route', 'RTNETLINK answers: Network is unreachable');
    const sink = recordingSink();
    start(dp, fixedSource([exampleTunnel(), secondTunnel()]), sink);
    await advance(0);
    assert.equal(dp.applied.length, 1, 'the first pass ran at once');
    assert.ok(
      dp.state.routes.some((r) => r.dst === '172.0.0.0/24' && r.dev === 'ipiptun'),
      'lab is programmed whole',
    );
    assert.ok(
      dp.state.links.some((l) => l.name === 'ipiptun2'),
      "lab2's link is there",
    );
    assert.ok(!dp.state.routes.some((r) => r.dst === '172.0.1.0/24'), "lab2's route failed");
    assert.equal(sink.reports[0]!.result, 'error');

    const retryOnly = ['ip route replace 172.0.1.0/24 dev ipiptun2 proto 203'];
    for (const backoff of [1000, 2000, 4000]) {
      const passes = dp.observes;
      await advance(backoff - 100);
      assert.equal(dp.observes, passes, `no pass before the ${backoff} ms backoff is up`);
      await advance(100);
      assert.equal(dp.observes, passes + 1, `a pass after ${backoff} ms`);
      assert.deepEqual(dp.applied.at(-1), retryOnly, 'only what failed is tried again');
      if (backoff === 2000) dp.clearFailures(); // the kernel accepts it from the 4 s retry on
    }
    assert.ok(dp.state.routes.some((r) => r.dst === '172.0.1.0/24' && r.dev === 'ipiptun2'));
    assert.equal(sink.reports.at(-1)!.result, 'success');
    const passes = dp.observes;
    await advance(RESYNC_MS - Date.now() - 1);
    assert.equal(dp.observes, passes, 'converged: no retry is left before the resync');
    await advance(1); // the resync's timer, at RESYNC_MS exactly
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, passes + 1, 'the resync (after the debounce)');
  });

  test('a refused tunnel is not retried in a loop: the next look is the resync (or a change)', async () => {
    const k = bareKernel();
    k.links.push({ index: 20, name: 'ipiptun', kind: 'veth', group: 0, up: true, mtu: 1500, addresses: [] });
    const dp = new RecordingDataplane(k);
    const sink = recordingSink();
    start(dp, fixedSource([exampleTunnel()]), sink);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 1, 'the first pass ran');
    assert.equal(sink.reports[0]!.result, 'requeue', 'refused: LinkNameTaken, not an error pass');
    assert.deepEqual(
      sink.reports[0]!.events.map((e) => e.reason),
      ['LinkNameTaken'],
    );
    await advance(RESYNC_MS - Date.now() - 1);
    assert.equal(dp.observes, 1, 'no backoff retries before the resync');
    await advance(1);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 2, 'the resync looks again');
    assert.deepEqual(dp.applied, [], 'and still changes nothing');
  });

  test('an agent that starts on a kernel it programmed before adopts it and changes nothing', async () => {
    const dp = new RecordingDataplane(programmedKernel());
    const sink = recordingSink();
    const l = start(dp, fixedSource([exampleTunnel()]), sink);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 1, 'the first pass read the kernel');
    assert.equal(l.ready(), true);
    assert.deepEqual(dp.applied, [], 'and wrote nothing');
    assert.equal(sink.reports[0]!.result, 'success');
    assert.deepEqual(sink.reports[0]!.changes, []);
    assert.deepEqual(sink.reports[0]!.events, [], 'no Event: nothing changed');
  });

  test('a resync reads the kernel and writes nothing: no kernel change, no status write, no Event', async () => {
    const dp = new RecordingDataplane(bareKernel());
    const published = new Map<string, NodeTunnelStatus>();
    const sink = recordingSink(published);
    start(dp, fixedSource([exampleTunnel()], published), sink);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.applied.length, 1);
    assert.equal(sink.reports[0]!.nodeStatus?.length, 1, 'the first pass wrote its entry');
    assert.deepEqual(
      sink.reports[0]!.events.map((e) => e.reason),
      ['Programmed'],
    );

    await advance(RESYNC_MS);
    assert.equal(dp.observes, 2, 'the resync ran a pass');
    assert.equal(dp.applied.length, 1, 'no kernel write');
    assert.equal(sink.reports[1]!.nodeStatus, undefined, 'no status write');
    assert.deepEqual(sink.reports[1]!.events, [], 'no Event');
  });

  test('a kernel event about our route wakes a pass that repairs it; route churn of others does not', async () => {
    const dp = new RecordingDataplane(bareKernel());
    start(dp, fixedSource([exampleTunnel()]));
    await advance(DEBOUNCE_MS);
    const passes = dp.observes;
    for (let i = 0; i < 50; i++) dp.edit(() => {}, `[ROUTE]10.250.0.${i} via 192.168.40.3 dev eth1 proto 186 `);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, passes, 'routes of others woke nothing');
    dp.edit((k) => {
      k.routes = k.routes.filter((r) => r.dst !== '172.0.0.0/24');
    }, '[ROUTE]Deleted 172.0.0.0/24 dev ipiptun proto 203 scope 253 ');
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, passes + 1, 'our route deleted woke one pass');
    assert.deepEqual(dp.applied.at(-1), ['ip route replace 172.0.0.0/24 dev ipiptun proto 203']);
  });

  // Counts that must hold exactly (issue 14's regression guard; times are in bench/RESULTS.md).
  test('converging from empty is one read and one write; the echoes of that write wake no second pass', async () => {
    const dp = new RecordingDataplane(bareKernel());
    const metrics = new AgentMetrics();
    start(dp, fixedSource([exampleTunnel(), secondTunnel()]), recordingSink(), metrics);
    await advance(0);
    assert.equal(dp.observes, 1);
    assert.equal(dp.applied.length, 1);
    await advance(DEBOUNCE_MS * 5);
    assert.equal(dp.observes, 1, 'no second read');
    assert.equal(dp.applied.length, 1, 'no second write');
    const text = await metrics.metrics();
    assert.ok(metricValue(text, 'ipip_operator_kernel_events_total', { outcome: 'reconcile' }) > 0, 'the echoes came');
    assert.equal(metricValue(text, 'ipip_operator_kernel_event_checks_total', { result: 'in_sync' }), 1);
    assert.equal(metricValue(text, 'ipip_operator_kernel_event_checks_total', { result: 'reconcile' }), 0);
  });

  test('a link set down by hand: one read after the kernel debounce, one write, and nothing after', async () => {
    const dp = new RecordingDataplane(programmedKernel());
    const metrics = new AgentMetrics();
    start(dp, fixedSource([exampleTunnel()]), recordingSink(), metrics);
    await advance(DEBOUNCE_MS);
    const [reads, writes] = [dp.observes, dp.applied.length];
    const link = dp.state.links.find((l) => l.name === 'ipiptun')!;
    dp.edit(
      (k) => {
        k.links.find((l) => l.name === 'ipiptun')!.up = false;
        k.routes = k.routes.filter((r) => r.dev !== 'ipiptun');
      },
      `[LINK]${link.index}: ipiptun@eth1: <POINTOPOINT,NOARP> mtu 1480 qdisc noqueue state DOWN group 203 \\    ` +
        'link/[768] 192.168.40.2 peer 192.168.40.3 \\    ipip any remote 192.168.40.3 local 192.168.40.2 dev eth1 ttl 64 pmtudisc ' +
        '\\    alias ipip-operator/lab',
    );
    await advance(KERNEL_DEBOUNCE_MS - 1, 1);
    assert.equal(dp.observes, reads, 'not before the debounce of kernel events');
    await advance(1);
    assert.equal(dp.observes, reads + 1, 'one read');
    assert.deepEqual(dp.applied.slice(writes), [
      ['ip link set dev ipiptun up', 'ip route replace 172.0.0.0/24 dev ipiptun proto 203'],
    ]);
    await advance(DEBOUNCE_MS * 5);
    assert.equal(dp.observes, reads + 1, 'the echoes of the repair woke no pass');
    // The view showed the link down: a full pass (the check's answer), then the repair's echoes in sync.
    const text = await metrics.metrics();
    assert.equal(metricValue(text, 'ipip_operator_kernel_event_checks_total', { result: 'reconcile' }), 1);
    assert.equal(metricValue(text, 'ipip_operator_kernel_event_checks_total', { result: 'in_sync' }), 1);
  });

  test("one tunnel's ttl edited: one read and one command", async () => {
    const dp = new RecordingDataplane(bareKernel());
    let tunnels = [exampleTunnel(), secondTunnel()];
    let changed = () => {};
    const source: TunnelSource = {
      start: (onChange) => {
        changed = onChange;
      },
      current: async () => ({ tunnels, nodeAddresses: new Map<string, string>() }),
      ready: () => true as const,
      stop: async () => {},
    };
    start(dp, source);
    await advance(DEBOUNCE_MS);
    const [reads, writes] = [dp.observes, dp.applied.length];
    tunnels = [tunnels[0]!, { ...tunnels[1]!, spec: { ...tunnels[1]!.spec, ttl: 32 } }];
    changed();
    await advance(DEBOUNCE_MS * 5);
    assert.equal(dp.observes, reads + 1);
    assert.deepEqual(dp.applied.slice(writes), [
      ['ip link set dev ipiptun2 type ipip local 192.168.40.2 remote 192.168.40.4 ttl 32 dev eth1'],
    ]);
  });

  test("a tunnel removed: one read and one write, and the removal's own echoes wake no second pass", async () => {
    const dp = new RecordingDataplane(programmedKernel());
    let tunnels = [exampleTunnel()];
    let changed = () => {};
    start(dp, {
      start: (onChange) => {
        changed = onChange;
      },
      current: async () => ({ tunnels, nodeAddresses: new Map<string, string>() }),
      ready: () => true as const,
      stop: async () => {},
    });
    await advance(DEBOUNCE_MS);
    const [reads, writes] = [dp.observes, dp.applied.length];
    tunnels = [];
    changed();
    await advance(DEBOUNCE_MS * 5);
    assert.equal(dp.observes, reads + 1);
    assert.deepEqual(dp.applied.slice(writes), [['ip link del dev ipiptun']]);
  });

  test('the first reconcile says how long start-up took, once', async () => {
    const entries: Record<string, unknown>[] = [];
    const logger = createLogger({
      format: 'json',
      level: 'info',
      sink: (text) =>
        entries.push(
          ...text
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as Record<string, unknown>),
        ),
    });
    const dp = new RecordingDataplane(bareKernel());
    start(dp, fixedSource([exampleTunnel()]), recordingSink(), undefined, logger);
    await advance(DEBOUNCE_MS);
    await advance(RESYNC_MS);
    assert.equal(dp.observes, 2, 'two passes ran');
    const first = entries.filter((e) => e.message === 'first reconcile done');
    assert.equal(first.length, 1);
    assert.equal(first[0]!.tunnels, 1);
    assert.ok(typeof first[0]!.sinceProcessStartMs === 'number' && first[0]!.sinceProcessStartMs > 0);
    // The pass's own part of it.
    const reconcileMs = first[0]!.reconcileMs;
    assert.ok(typeof reconcileMs === 'number' && reconcileMs >= 0 && reconcileMs <= first[0]!.sinceProcessStartMs);
  });

  test('an idle minute: the resync alone, one read and no write', async () => {
    const dp = new RecordingDataplane(programmedKernel());
    start(dp, fixedSource([exampleTunnel()]));
    await advance(DEBOUNCE_MS);
    const [reads, writes] = [dp.observes, dp.applied.length];
    await advance(RESYNC_MS);
    assert.equal(dp.observes, reads + 1);
    assert.equal(dp.applied.length, writes);
  });

  test('a tunnel removed while the agent was away is swept only once the first full list has come', async () => {
    const dp = new RecordingDataplane(programmedKernel());
    let answerList: (page: ListPage<IpipTunnel>) => void = () => {};
    let tunnelLists = 0;
    const watchForever = async () => () => {};
    const tunnels: ReflectorSource<IpipTunnel> = {
      what: 'ipiptunnels',
      list: () => {
        tunnelLists += 1;
        return new Promise((done) => {
          answerList = done;
        });
      },
      watch: watchForever,
      fromWatch: (o) => o as unknown as IpipTunnel,
      key: (t) => t.metadata.name,
      same: (a, b) => a.metadata.resourceVersion === b.metadata.resourceVersion,
      resourceVersion: (t) => t.metadata.resourceVersion,
    };
    const nodes: ReflectorSource<NodeAddresses> = {
      what: 'nodes',
      list: async () => ({ items: [], resourceVersion: '1' }),
      watch: watchForever,
      fromWatch: (o) => ({ name: String((o.metadata as { name: string }).name) }),
      key: (n) => n.name,
      same: (a, b) => a.internalIP === b.internalIP,
      resourceVersion: () => undefined,
    };
    const ipipNodes: ReflectorSource<IpipNode> = {
      what: 'ipipnodes',
      list: async () => ({ items: [], resourceVersion: '1' }),
      watch: watchForever,
      fromWatch: (o) => o as unknown as IpipNode,
      key: (n) => n.metadata.name,
      same: (a, b) => a.metadata.resourceVersion === b.metadata.resourceVersion,
      resourceVersion: (n) => n.metadata.resourceVersion,
    };
    const source = informerSource({ tunnels, ipipNodes, nodes }, { nodeName: 'node-a', log });
    const reads = { n: 0 };
    const counted: TunnelSource = {
      ...source,
      current: () => {
        reads.n += 1;
        return source.current();
      },
    };
    const l = start(dp, counted);

    // Passes are asked for (at start, by the node list, by a kernel event about our link),
    // but with the tunnel list outstanding none touches the kernel.
    await advance(DEBOUNCE_MS);
    dp.edit((k) => {
      k.links.find((x) => x.name === 'ipiptun')!.up = false;
    }, '[LINK]9: ipiptun@eth1: <POINTOPOINT,NOARP> mtu 1480 state DOWN');
    await advance(RESYNC_MS);
    assert.equal(tunnelLists, 1, 'the tunnel list was asked for');
    assert.ok(reads.n >= 3, `passes ran and found nothing to trust yet (${reads.n})`);
    assert.equal(dp.observes, 0, 'the kernel was not even read');
    assert.deepEqual(dp.applied, []);
    assert.equal(l.ready(), 'ipiptunnels not listed yet');

    answerList({ items: [], resourceVersion: '5' });
    await advance(DEBOUNCE_MS);
    assert.deepEqual(dp.applied, [['ip link del dev ipiptun']], 'after the list: the tunnel that is gone is swept');
    assert.equal(l.ready(), true);
  });

  test("in a mesh, only what changes resolve's answer wakes a pass: a spec change, a peer's published address; not an aggregate write", async () => {
    // Scripted informers: each watch hands its handlers to the test, which plays events.
    const emit = new Map<string, WatchHandlers>();
    function scripted<T>(
      what: string,
      items: T[],
      key: (t: T) => string,
      rv: (t: T) => string | undefined,
    ): ReflectorSource<T> {
      return {
        what,
        list: async () => ({ items, resourceVersion: '10' }),
        watch: async (_rv, handlers) => {
          emit.set(what, handlers);
          return () => {};
        },
        fromWatch: (o) => o as unknown as T,
        key,
        same: (a, b) => rv(a) === rv(b),
        resourceVersion: rv,
      };
    }
    const meshOf = (generation: number, readySummary?: string): IpipTunnel =>
      meshExample((t) => {
        t.metadata = {
          name: 'mesh',
          generation,
          resourceVersion: String(100 + generation * 10 + (readySummary ? 1 : 0)),
        };
        t.spec.endpoints[1]!.underlay = { interface: 'eth1' };
        if (readySummary !== undefined) t.status = { readySummary };
      });
    const ipipNodeOf = (name: string, rv: string, underlayAddress?: string): IpipNode => ({
      apiVersion: 'tunnel.ipip-operator.dev/v1alpha1',
      kind: 'IpipNode',
      metadata: { name, resourceVersion: rv },
      tunnels: [{ name: 'mesh', ...(underlayAddress === undefined ? {} : { underlayAddress }) }],
    });
    const source = informerSource(
      {
        tunnels: scripted(
          'ipiptunnels',
          [meshOf(1)],
          (t) => t.metadata.name,
          (t) => t.metadata.resourceVersion,
        ),
        ipipNodes: scripted<IpipNode>(
          'ipipnodes',
          [],
          (n) => n.metadata.name,
          (n) => n.metadata.resourceVersion,
        ),
        nodes: scripted<NodeAddresses>(
          'nodes',
          [],
          (n) => n.name,
          () => undefined,
        ),
      },
      { nodeName: 'node-a', log },
    );
    const dp = new RecordingDataplane(bareKernel());
    start(dp, source);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 1, 'the first pass ran');
    assert.deepEqual(
      dp.state.routes.filter((r) => r.dev === 'ipipmesh').map((r) => r.dst),
      ['10.30.0.0/24', '172.0.1.4/32'],
      'node-b waits for its address; node-c is routed',
    );

    emit.get('ipiptunnels')!.onEvent('MODIFIED', meshOf(1, '0/3') as unknown as Record<string, unknown>);
    emit
      .get('ipipnodes')!
      .onEvent('ADDED', ipipNodeOf('node-c', '20', '192.168.40.4') as unknown as Record<string, unknown>);
    await advance(DEBOUNCE_MS * 2);
    assert.equal(source.tunnels.get('mesh')?.status?.readySummary, '0/3', 'the aggregate write reached the cache');
    assert.equal(
      dp.observes,
      1,
      'neither an aggregate write nor a report that publishes nothing new to node-a woke a pass',
    );

    emit
      .get('ipipnodes')!
      .onEvent('ADDED', ipipNodeOf('node-b', '21', '192.168.40.3') as unknown as Record<string, unknown>);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 2, "node-b's published address woke one pass");
    // Its route, and the peer filter rewritten to let its IPIP in (the table is written whole).
    const applied = dp.applied.at(-1)!;
    assert.deepEqual(applied.slice(-1), [
      'ip route replace 172.0.1.3/32 via 192.168.40.3 dev ipipmesh onlink proto 203',
    ]);
    assert.ok(
      applied.includes('\t\telements = { 192.168.40.3, 192.168.40.4 }'),
      `the filter allows node-b and node-c:\n${applied.join('\n')}`,
    );

    emit.get('ipiptunnels')!.onEvent('MODIFIED', meshOf(2, '0/3') as unknown as Record<string, unknown>);
    await advance(DEBOUNCE_MS);
    assert.equal(dp.observes, 3, 'a spec change (a new generation) woke one pass');
  });
});
